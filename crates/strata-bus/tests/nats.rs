//! The bus contract, run against NATS JetStream (`TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`). Each test works in a namespace of its own and deletes its streams
//! afterwards, so tests run in parallel and can share the server with anything else.

use bytes::Bytes;
use strata_bus::contract::Harness;
use strata_bus::{Bus, BusError, BusOptions, NatsBus};
use strata_core::testkit::{NATS, require_service};

async fn setup() -> Option<Harness> {
    let url = require_service(NATS)?;
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    Some(Harness::nats(&url, &namespace).await)
}

strata_bus::contract_tests!(setup);

/// A cluster's servers may be listed: the client connects through any that answers, here the
/// second one (nothing listens on the first).
#[tokio::test]
async fn a_server_list_connects_through_a_live_server() {
    let Some(url) = require_service(NATS) else {
        return;
    };
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!("nats://{}", listener.local_addr().expect("its address"))
    };
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let list = format!("{dead}, {url}");
    let bus = NatsBus::connect(&list, &namespace)
        .await
        .expect("connects through the live server");
    bus.ping().await.expect("the connection works");
    bus.close().await.expect("close");

    let err = NatsBus::connect(&format!("{dead},not a url"), &namespace)
        .await
        .expect_err("a malformed list is refused");
    assert!(matches!(err, BusError::Connect { .. }), "{err}");
}

/// Streams are created with the configured number of copies: a single server cannot hold
/// three, so the first publish fails there, naming the cause, while one copy works.
#[tokio::test]
async fn streams_are_created_with_the_configured_replicas() {
    let Some(url) = require_service(NATS) else {
        return;
    };
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let three = NatsBus::connect_with(&url, &namespace, &BusOptions { replicas: 3 })
        .await
        .expect("connect");
    let err = three
        .publish("orders.placed", Bytes::from_static(b"{}"))
        .await
        .expect_err("one server cannot keep three copies");
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain = format!("{chain}: {cause}");
        source = cause.source();
    }
    let chain = chain.to_lowercase();
    assert!(
        chain.contains("create stream")
            && (chain.contains("replica") || chain.contains("resources")),
        "{chain}"
    );
    let _ = three.close().await;

    let one = NatsBus::connect_with(&url, &namespace, &BusOptions { replicas: 1 })
        .await
        .expect("connect");
    one.publish("orders.placed", Bytes::from_static(b"{}"))
        .await
        .expect("one copy fits one server");
    let info = one
        .stream_info("orders")
        .await
        .expect("stream info")
        .expect("the stream exists");
    assert_eq!(info.messages, 1);
    one.delete_namespace_streams().await.expect("cleanup");
    let _ = one.close().await;
}
