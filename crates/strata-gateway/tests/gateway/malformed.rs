//! Requests the gateway refuses to forward, on raw sockets: a missing, repeated or invalid
//! `Host`, and framing an instance could read differently (request smuggling). Each gets 400
//! with the JSON error body, the connection closes, and nothing reaches an instance.

use crate::helpers::{Backend, TestGateway, config, raw_exchange, spawn_gateway};

async fn gateway() -> (Backend, TestGateway) {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    (backend, gateway)
}

/// Sends `request` on a fresh connection and checks the answer: 400, the JSON error body, the
/// connection closed (`raw_exchange` reads until it is), nothing forwarded.
async fn refused(gateway: &TestGateway, backend: &Backend, request: &str) {
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "{request:?} → {response}"
    );
    assert!(
        response.contains(r#""error":{"code":"#),
        "{request:?} → {response}"
    );
    assert_eq!(backend.count(), 0, "{request:?} reached the instance");
    // The gateway serves the next client.
    assert_eq!(gateway.get("/after").await.status(), 200);
    assert_eq!(backend.count(), 1);
    backend.forget();
}

#[tokio::test]
async fn a_request_without_host_is_refused() {
    let (backend, gateway) = gateway().await;
    refused(&gateway, &backend, "GET /api/v1/products HTTP/1.1\r\n\r\n").await;
    // HTTP/1.0 may omit it.
    let response = raw_exchange(gateway.addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
}

#[tokio::test]
async fn two_host_headers_are_refused() {
    let (backend, gateway) = gateway().await;
    refused(
        &gateway,
        &backend,
        "GET /x HTTP/1.1\r\nhost: shop\r\nhost: evil\r\n\r\n",
    )
    .await;
    refused(
        &gateway,
        &backend,
        "GET /x HTTP/1.1\r\nhost: shop\r\nhost: shop\r\n\r\n",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_host_is_refused() {
    let (backend, gateway) = gateway().await;
    for host in ["a b/c", "shop/x", "user@shop", "shop:http", "[::1"] {
        refused(
            &gateway,
            &backend,
            &format!("GET /x HTTP/1.1\r\nhost: {host}\r\n\r\n"),
        )
        .await;
    }
}

#[tokio::test]
async fn an_absolute_target_replaces_the_host() {
    let (backend, gateway) = gateway().await;
    let response = raw_exchange(
        gateway.addr,
        b"GET http://shop.example:81/x HTTP/1.1\r\nhost: a b/c\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let seen = backend.seen();
    assert_eq!(seen[0].headers.get_all("host").iter().count(), 1);
    assert_eq!(seen[0].headers["host"], "shop.example:81");
}
