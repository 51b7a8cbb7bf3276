//! W3C trace context through the gateway: an instance receives the client's trace id with the
//! gateway's own span as its parent, over HTTP/1.1, h2c and a WebSocket handshake alike; a
//! missing or malformed `traceparent` is replaced by a new trace, never refused.

use std::time::Duration;

use strata_core::http::TraceContext;
use strata_gateway::config::UpstreamProtocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, config, spawn_gateway};

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The one `traceparent` an instance received, parsed.
fn received(headers: &http::HeaderMap) -> TraceContext {
    let values: Vec<_> = headers.get_all("traceparent").iter().collect();
    assert_eq!(values.len(), 1, "{headers:?}");
    TraceContext::parse(values[0].as_bytes()).expect("a valid traceparent")
}

#[tokio::test]
async fn instances_receive_the_clients_trace_with_the_gateways_span_as_parent() {
    for protocol in [UpstreamProtocol::Http1, UpstreamProtocol::H2c] {
        let backend = Backend::start("api-1").await;
        let mut config = config(&[("api", vec![backend.url()])]);
        config.api.upstream_protocol = protocol;
        let gateway = spawn_gateway(config).await;

        let response = gateway
            .client
            .get(gateway.url("/traced"))
            .header("traceparent", CLIENT)
            .header("tracestate", "vendor=opaque")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen = &backend.seen()[0];
        let trace = received(&seen.headers);
        assert_eq!(trace.trace_id().to_string(), CLIENT_TRACE, "{protocol:?}");
        assert_ne!(
            trace.span_id(),
            "00f067aa0ba902b7",
            "{protocol:?}: a new parent id"
        );
        assert_eq!(seen.headers["tracestate"], "vendor=opaque", "{protocol:?}");

        // Each request gets a span of the gateway's own.
        gateway
            .client
            .get(gateway.url("/again"))
            .header("traceparent", CLIENT)
            .send()
            .await
            .unwrap();
        let again = received(&backend.seen()[1].headers);
        assert_eq!(again.trace_id(), trace.trace_id());
        assert_ne!(again.span_id(), trace.span_id());
    }
}

#[tokio::test]
async fn a_missing_or_malformed_traceparent_starts_a_new_trace() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let malformed = [
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "garbage",
    ];
    let none = gateway.get("/none").await;
    assert_eq!(none.status(), 200);
    for value in malformed {
        let response = gateway
            .client
            .get(gateway.url("/malformed"))
            .header("traceparent", value)
            .header("tracestate", "vendor=stale")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{value}");
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 1 + malformed.len());
    let mut traces = std::collections::HashSet::new();
    for request in &seen {
        let trace = received(&request.headers);
        assert_ne!(trace.trace_id().to_string(), CLIENT_TRACE);
        assert!(!request.headers.contains_key("tracestate"), "{request:?}");
        traces.insert(trace.trace_id());
    }
    assert_eq!(traces.len(), seen.len(), "a new trace each");
}

#[tokio::test]
async fn a_websocket_handshake_carries_the_trace_too() {
    // A plain instance answers the handshake with a 200 after recording what it received.
    let chat = Backend::start("chat-1").await;
    let gateway = spawn_gateway(config(&[
        ("api", vec![chat.url()]),
        ("chat", vec![chat.url()]),
    ]))
    .await;
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let request = format!(
        "GET /api/v1/chat/ws?room=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\ntraceparent: {CLIENT}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    let mut buf = [0u8; 4096];
    while !response.contains("hello from") {
        let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {response}");
        response.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let seen = &chat.seen()[0];
    assert_eq!(seen.headers["upgrade"], "websocket");
    let trace = received(&seen.headers);
    assert_eq!(trace.trace_id().to_string(), CLIENT_TRACE);
    assert_ne!(trace.span_id(), "00f067aa0ba902b7");
}
