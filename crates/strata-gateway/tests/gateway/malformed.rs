//! Requests the gateway refuses to forward, on raw sockets: a missing, repeated or invalid
//! `Host`, and framing an instance could read differently (request smuggling). Each gets 400
//! with the JSON error body, the connection closes, and nothing reaches an instance.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestGateway, config, raw_exchange, spawn_gateway};

async fn gateway() -> (Backend, TestGateway) {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    (backend, gateway)
}

/// Sends `request` on a fresh connection and checks the answer: 400, the JSON error body, the
/// connection closed (`raw_exchange` reads until it is), nothing forwarded.
async fn refused(gateway: &TestGateway, backend: &Backend, request: &str) {
    let response = refused_by(gateway, backend, request).await;
    assert!(
        response.contains(r#""error":{"code":"#),
        "{request:?} → {response}"
    );
}

/// As [`refused`], for what hyper's parser refuses before the gateway sees a request: its own
/// 400, without a body.
async fn refused_by_the_parser(gateway: &TestGateway, backend: &Backend, request: &str) {
    refused_by(gateway, backend, request).await;
}

async fn refused_by(gateway: &TestGateway, backend: &Backend, request: &str) -> String {
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "{request:?} → {response}"
    );
    assert_eq!(backend.count(), 0, "{request:?} reached the instance");
    // The gateway serves the next client.
    assert_eq!(gateway.get("/after").await.status(), 200);
    assert_eq!(backend.count(), 1);
    backend.forget();
    response
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

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let (backend, gateway) = gateway().await;
    for head in [
        "content-length: 6\r\ntransfer-encoding: chunked",
        "transfer-encoding: chunked\r\ncontent-length: 6",
    ] {
        // Behind the body, a request that a reader of the length would see.
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: shop\r\n{head}\r\n\r\n0\r\n\r\n\
             GET /smuggled HTTP/1.1\r\nhost: shop\r\n\r\n"
        );
        refused(&gateway, &backend, &request).await;
    }
}

#[tokio::test]
async fn conflicting_content_lengths_are_refused() {
    let (backend, gateway) = gateway().await;
    for lengths in [
        "content-length: 5\r\ncontent-length: 6",
        "content-length: 5, 6",
        "content-length: 5, 5",
        "content-length: +5",
        "content-length: -1",
    ] {
        let request = format!("POST /echo HTTP/1.1\r\nhost: shop\r\n{lengths}\r\n\r\nhello!");
        refused_by_the_parser(&gateway, &backend, &request).await;
    }
}

#[tokio::test]
async fn obs_fold_is_refused() {
    let (backend, gateway) = gateway().await;
    for request in [
        "GET /x HTTP/1.1\r\nhost: shop\r\nx-a: 1\r\n folded\r\n\r\n",
        "GET /x HTTP/1.1\r\nhost: shop\r\nx-a: 1\r\n\tfolded\r\n\r\n",
        "GET /x HTTP/1.1\r\n host: shop\r\n\r\n",
    ] {
        refused_by_the_parser(&gateway, &backend, request).await;
    }
}

#[tokio::test]
async fn bare_lf_line_endings_are_refused() {
    let (backend, gateway) = gateway().await;
    for request in [
        "GET /x HTTP/1.1\nhost: shop\n\n",
        "GET /x HTTP/1.1\r\nhost: shop\nx-a: 1\r\n\r\n",
        "GET /x HTTP/1.1\r\nhost: shop\r\n\n",
    ] {
        refused(&gateway, &backend, request).await;
    }
    // Behind a request the gateway forwards, on the same connection.
    let response = raw_exchange(
        gateway.addr,
        b"GET /first HTTP/1.1\r\nhost: shop\r\n\r\nGET /second HTTP/1.1\nhost: shop\n\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("HTTP/1.1 400"), "{response}");
    assert_eq!(backend.seen().len(), 1);
    assert_eq!(backend.seen()[0].path, "/first");
}

#[tokio::test]
async fn invalid_chunk_sizes_are_refused() {
    let (backend, gateway) = gateway().await;
    let long_extension = format!("5;{}=1", "e".repeat(20_000));
    for chunk in [
        "zz",
        "fffffffffffffffff1",
        "-1",
        "0x5",
        "5 x",
        long_extension.as_str(),
    ] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n\
             {chunk}\r\nhello\r\n0\r\n\r\n"
        );
        refused(&gateway, &backend, &request).await;
    }
}

#[tokio::test]
async fn transfer_encodings_other_than_chunked_are_refused() {
    let (backend, gateway) = gateway().await;
    for codings in [
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: chunked, chunked",
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
        "transfer-encoding: gzip\r\ntransfer-encoding: chunked",
    ] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: shop\r\n{codings}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        refused(&gateway, &backend, &request).await;
    }
    for codings in [
        "transfer-encoding: identity",
        "transfer-encoding: chunked, gzip",
    ] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: shop\r\n{codings}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        refused_by_the_parser(&gateway, &backend, &request).await;
    }
    // Exactly `chunked` (any case) is forwarded.
    let response = raw_exchange(
        gateway.addr,
        b"POST /echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: Chunked\r\nconnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("hello"), "{response}");
}

/// A chunk size that goes bad after the body has started to flow: the instance never gets a
/// complete body (the chunked stream it reads ends without its last chunk, so it cannot take
/// the part for the whole), the client gets 400 with the JSON error body and a closed
/// connection, and the instance is not blamed for the client's bytes.
#[tokio::test]
async fn a_chunk_size_that_goes_bad_midway_reaches_no_instance_whole() {
    let (backend, gateway) = gateway().await;
    for bad in ["zz", "-1", "5 x"] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n{bad}\r\nworld\r\n0\r\n\r\n"
        );
        let response = raw_exchange(gateway.addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{bad:?} → {response}");
        assert!(
            response.contains(r#""error":{"code":"#),
            "{bad:?} → {response}"
        );
        for seen in backend.seen() {
            assert!(
                seen.body.is_empty(),
                "{bad:?}: the instance read a body it took for whole: {:?}",
                seen.body
            );
        }
        backend.forget();
    }
    // Sent in two parts, so the first chunk is on its way to the instance before the bad
    // size arrives: the instance has the head and part of the body, never a whole one.
    let head = "POST /echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n\
                5\r\nhello\r\n";
    let mut stream = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let _ = stream.write_all(b"zz\r\nworld\r\n0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains(r#""error":{"code":"#), "{response}");
    let seen = backend.seen();
    assert_eq!(seen.len(), 1, "the head went on before the bad size came");
    assert!(seen[0].body.is_empty(), "a whole body: {:?}", seen[0].body);
    // The instance was not ejected for it.
    for _ in 0..5 {
        assert_eq!(gateway.get("/after").await.status(), 200);
    }
}
