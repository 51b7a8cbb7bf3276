//! Several workers: each has its own `SO_REUSEPORT` listening socket, so the kernel spreads
//! client connections over them instead of one worker taking them all.

use std::time::Duration;

use crate::helpers::{Backend, config, raw_exchange, spawn_gateway_with};

#[tokio::test]
async fn with_two_workers_both_accept_and_serve_connections() {
    let backend = Backend::start("api-1").await;
    let config = config(&[("api", vec![backend.url()])]);
    let limits = strata_gateway::Limits {
        workers: 2,
        ..strata_gateway::Limits::from_config(&config)
    };
    let mut gateway = spawn_gateway_with(config, limits).await;
    // Port 0: both sockets share the port the first one got.
    assert_ne!(gateway.addr.port(), 0);
    // The kernel hashes each connection's addresses and ports to pick a socket: with 24 fresh
    // connections all landing on one worker has a chance of 2^-23.
    let connections = 24;
    for i in 0..connections {
        let request = format!("GET /n{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(gateway.addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("hello from api-1"), "{response}");
    }
    let accepted = gateway.handle.accepted_per_worker();
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted.iter().sum::<u64>(), connections);
    assert!(accepted.iter().all(|&n| n > 0), "{accepted:?}");
    assert_eq!(backend.count(), 24);

    // Both workers stop and drain on shutdown.
    gateway.shutdown.cancel();
    let task = gateway.task.take().unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
}

#[tokio::test]
async fn with_one_worker_there_is_one_socket() {
    let backend = Backend::start("api-1").await;
    let config = config(&[("api", vec![backend.url()])]);
    let limits = strata_gateway::Limits::from_config(&config);
    let gateway = spawn_gateway_with(config, limits).await;
    for _ in 0..3 {
        assert_eq!(gateway.get("/").await.status(), 200);
    }
    assert_eq!(gateway.handle.accepted_per_worker().len(), 1);
    assert!(gateway.handle.accepted_per_worker()[0] >= 1);
}
