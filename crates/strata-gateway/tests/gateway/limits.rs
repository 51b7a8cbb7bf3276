//! Limits on bodies and heads, and a gateway that keeps serving after bad clients.

use std::time::{Duration, Instant};

use strata_gateway::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, config, raw_exchange, spawn_gateway, spawn_gateway_with};

#[tokio::test]
async fn a_body_over_the_limit_gets_413_without_reaching_an_instance() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.max_body_bytes = 1024;
    let gateway = spawn_gateway(config).await;

    let response = gateway
        .client
        .post(gateway.url("/api/v1/orders"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
    assert_eq!(backend.count(), 0);

    // Exactly at the limit is fine.
    let response = gateway
        .client
        .post(gateway.url("/echo"))
        .body(vec![b'y'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_chunked_body_is_counted_while_streaming() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.max_body_bytes = 1024;
    let gateway = spawn_gateway(config).await;
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("body_too_large"), "{response}");
    // The instance never got a complete body.
    assert!(backend.seen().iter().all(|s| s.body.len() <= 1024));
    assert_eq!(gateway.get("/after").await.status(), 200);
}

#[tokio::test]
async fn an_oversized_head_is_refused_and_the_gateway_serves_the_next_client() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response}"
    );
    assert_eq!(backend.count(), 0);
    assert_eq!(gateway.get("/next").await.status(), 200);
}

#[tokio::test]
async fn a_malformed_request_line_is_refused_and_the_gateway_keeps_serving() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    let garbage: [&[u8]; 3] = [
        b"NOT A REQUEST\r\n\r\n",
        b"GET\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ];
    for garbage in garbage {
        let response = raw_exchange(gateway.addr, garbage).await;
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 400"),
            "{garbage:?}: {response}"
        );
    }
    assert_eq!(backend.count(), 0);
    assert_eq!(gateway.get("/next").await.status(), 200);
}

#[tokio::test]
async fn a_client_that_sends_its_head_too_slowly_is_disconnected() {
    let backend = Backend::start("api-1").await;
    let config = config(&[("api", vec![backend.url()])]);
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::from_config(&config)
    };
    let gateway = spawn_gateway_with(config, limits).await;

    let mut slowloris = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    slowloris
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), slowloris.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert_eq!(backend.count(), 0);
    assert_eq!(gateway.get("/next").await.status(), 200);
}

#[tokio::test]
async fn a_client_sending_a_byte_a_second_is_closed_at_the_header_timeout_while_others_are_served()
{
    let backend = Backend::start("api-1").await;
    let config = config(&[("api", vec![backend.url()])]);
    let limits = Limits {
        header_read_timeout: Duration::from_millis(1500),
        ..Limits::from_config(&config)
    };
    let gateway = spawn_gateway_with(config, limits).await;
    let mut slowloris = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    let drip = tokio::spawn(async move {
        // One byte a second: each byte would reset a naive idle timer.
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaa\r\n\r\n" {
            if slowloris.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), slowloris.read_to_end(&mut buf)).await;
        buf
    });
    // Others are served meanwhile.
    for _ in 0..5 {
        assert_eq!(gateway.get("/meanwhile").await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = drip.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "closed only after {elapsed:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(backend.count(), 5);
}

/// Sends a POST head announcing 40 body bytes, then `bytes` body bytes `every` apart (then
/// nothing), and returns what the gateway answered before closing.
async fn trickle(
    addr: std::net::SocketAddr,
    idempotency_key: Option<&str>,
    bytes: usize,
    every: Duration,
) -> String {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let key = idempotency_key.map_or(String::new(), |k| format!("idempotency-key: {k}\r\n"));
    let head = format!(
        "POST /api/v1/cart/items HTTP/1.1\r\nhost: shop\r\ncontent-type: application/json\r\n\
         {key}content-length: 40\r\n\r\n"
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..bytes {
            tokio::time::sleep(every).await;
            if write.write_all(b"x").await.is_err() {
                break;
            }
        }
        // Keep the write side open: a stalled client, not a finished one.
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(write);
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut out)).await;
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn trickling_bodies_get_408_and_never_count_against_an_instance() {
    let backends = [
        Backend::start("api-1").await,
        Backend::start("api-2").await,
        Backend::start("api-3").await,
    ];
    let mut config = config(&[("api", backends.iter().map(Backend::url).collect())]);
    // Passive ejection as in production: three failures in a row eject.
    config.api.health.eject_after = 3;
    config.request_timeout_ms = 800;
    config.body_timeout_ms = 300;
    let gateway = spawn_gateway(config).await;

    // Nine clients, three per instance: a byte every 100 ms (never idle for the body timeout,
    // so the request deadline passes while the body trickles in), or two bytes and then
    // silence (the body timeout). Some with an Idempotency-Key, whose bodies the gateway
    // buffers before choosing an instance.
    let tricklers: Vec<_> = (0..9)
        .map(|i| {
            let addr = gateway.addr;
            let (bytes, key) = match i % 3 {
                0 => (39, None),
                1 => (2, None),
                _ => (39, Some(format!("k-{i}"))),
            };
            tokio::spawn(async move {
                trickle(addr, key.as_deref(), bytes, Duration::from_millis(100)).await
            })
        })
        .collect();
    // A bystander meanwhile.
    let mut served = Vec::new();
    for _ in 0..10 {
        let response = gateway.get("/api/v1/products").await;
        assert_eq!(response.status(), 200);
        served.push(
            response.headers()["x-strata-instance"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for trickler in tricklers {
        let response = trickler.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(
            response.contains(r#""code":"request_body_timeout""#),
            "{response}"
        );
    }
    // Every instance still takes requests: none was ejected or counted a failure.
    for _ in 0..9 {
        let response = gateway.get("/api/v1/products").await;
        assert_eq!(response.status(), 200);
        served.push(
            response.headers()["x-strata-instance"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    for backend in &backends {
        assert!(
            served.contains(&backend.name),
            "{} served nothing: {served:?}",
            backend.name
        );
        let series = |name: &str| format!(r#"{name}{{pool="api",instance="{}"}}"#, backend.addr);
        assert_eq!(
            gateway
                .sample(&series("strata_gateway_ejections_total"))
                .await,
            Some(0.0)
        );
        assert_eq!(
            gateway.sample(&series("strata_gateway_instance_up")).await,
            Some(1.0)
        );
    }
    let timeouts = gateway.metrics().await;
    assert!(
        !timeouts
            .lines()
            .any(|l| l.starts_with("strata_gateway_upstream_errors_total")
                && l.contains(r#"kind="timeout""#)
                && !l.ends_with(" 0")),
        "{timeouts}"
    );
}
