//! Graceful shutdown.

use std::time::{Duration, Instant};

use crate::helpers::{Backend, config, eventually, spawn_gateway};

#[tokio::test]
async fn an_in_flight_request_completes_after_shutdown_is_requested() {
    let backend = Backend::start("api-1").await;
    let mut gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    // A warm idle keep-alive connection, which shutdown must close rather than wait for.
    assert_eq!(gateway.get("/warm").await.status(), 200);

    let slow = tokio::spawn({
        let (client, url) = (gateway.client.clone(), gateway.url("/slow"));
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    eventually("the slow request reached the instance", || async {
        backend.seen().iter().any(|seen| seen.path == "/slow")
    })
    .await;
    let started = Instant::now();
    gateway.shutdown.cancel();

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "slow hello from api-1");
    let task = gateway.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run did not return")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));

    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(gateway.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_with_nothing_in_flight_returns_promptly() {
    let backend = Backend::start("api-1").await;
    let mut gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    assert_eq!(gateway.get("/warm").await.status(), 200);
    let started = Instant::now();
    gateway.shutdown.cancel();
    let task = gateway.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("run did not return")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}
