//! Failing instances: retries where safe, 502 where not, 504 on timeouts.

use strata_gateway::config::UpstreamProtocol;

use crate::helpers::{Backend, config, dead_url, raw_exchange, rude_backend, spawn_gateway};

#[tokio::test]
async fn gets_succeed_through_a_dead_instance_by_retrying_on_the_next() {
    let (a, b) = (Backend::start("api-1").await, Backend::start("api-3").await);
    let dead = dead_url().await;
    let dead_address = dead.trim_start_matches("http://").to_owned();
    let gateway = spawn_gateway(config(&[("api", vec![a.url(), dead, b.url()])])).await;
    for _ in 0..30 {
        let response = gateway.get("/api/v1/products").await;
        assert_eq!(response.status(), 200);
    }
    // The dead instance's turns went to the one after it.
    assert_eq!((a.count(), b.count()), (10, 20));
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await,
        Some(10.0)
    );
    let errors = format!(
        r#"strata_gateway_upstream_errors_total{{pool="api",instance="{dead_address}",kind="connect"}}"#
    );
    assert_eq!(gateway.sample(&errors).await, Some(10.0));
}

#[tokio::test]
async fn posts_that_never_reached_an_instance_go_to_the_next_whatever_their_method() {
    let (a, b) = (Backend::start("api-1").await, Backend::start("api-3").await);
    // The middle instance refuses connections: nothing of a request reaches it.
    let gateway = spawn_gateway(config(&[("api", vec![a.url(), dead_url().await, b.url()])])).await;
    for i in 0..12 {
        let body = format!("item {i:02}");
        if i % 2 == 0 {
            // With a length.
            let response = gateway
                .client
                .post(gateway.url("/echo"))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "POST {i}");
            assert_eq!(response.text().await.unwrap(), body);
        } else {
            // Chunked: streamed from the client, not buffered by the gateway.
            let request = format!(
                "POST /echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\
                 connection: close\r\n\r\n7\r\n{body}\r\n0\r\n\r\n"
            );
            let response = raw_exchange(gateway.addr, request.as_bytes()).await;
            assert!(response.starts_with("HTTP/1.1 200"), "POST {i}: {response}");
            assert!(response.ends_with(&body), "POST {i}: {response}");
        }
    }
    assert_eq!(a.count() + b.count(), 12);
    assert!(
        a.seen()
            .iter()
            .chain(b.seen().iter())
            .all(|s| s.method == http::Method::POST),
    );
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await,
        Some(4.0)
    );
}

#[tokio::test]
async fn a_post_with_idempotency_key_is_retried_with_its_body() {
    let live = Backend::start("api-2").await;
    let gateway = spawn_gateway(config(&[("api", vec![dead_url().await, live.url()])])).await;
    let response = gateway
        .client
        .post(gateway.url("/api/v1/orders"))
        .header("idempotency-key", "order-77")
        .body(r#"{"item":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-strata-instance"], "api-2");
    let seen = live.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].headers["idempotency-key"], "order-77");
    assert_eq!(seen[0].body.as_ref(), br#"{"item":1}"#);
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn every_instance_down_gives_502() {
    let gateway = spawn_gateway(config(&[("api", vec![dead_url().await, dead_url().await])])).await;
    let response = gateway.get("/api/v1/products").await;
    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unavailable");
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_slow_instance_gives_504_after_the_request_timeout() {
    let slow = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![slow.url()])]);
    config.request_timeout_ms = 150;
    let gateway = spawn_gateway(config).await;
    let response = gateway.get("/slow").await;
    assert_eq!(response.status(), 504);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    let series = format!(
        r#"strata_gateway_upstream_errors_total{{pool="api",instance="{}",kind="timeout"}}"#,
        slow.addr
    );
    assert_eq!(gateway.sample(&series).await, Some(1.0));
    // The instance still serves the next request on a fresh connection.
    assert_eq!(gateway.get("/fast").await.status(), 200);
}

#[tokio::test]
async fn a_reset_after_the_request_was_written_is_retried_only_when_repeatable() {
    let live = Backend::start("api-2").await;
    let (rude, swallowed) = rude_backend().await;
    let rude_address = rude.trim_start_matches("http://").to_owned();
    let gateway = spawn_gateway(config(&[("api", vec![rude, live.url()])])).await;

    // Turn 1 (rude): a GET is repeated on the next instance.
    let response = gateway.get("/api/v1/products").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-strata-instance"], "api-2");
    // Turn 2 (live), then turn 3 (rude): a plain POST may have been acted on, so 502.
    assert_eq!(gateway.get("/api/v1/products").await.status(), 200);
    let response = gateway
        .client
        .post(gateway.url("/api/v1/orders"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(swallowed.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        live.seen()
            .iter()
            .filter(|s| s.method == http::Method::POST)
            .count(),
        0
    );
    let series = format!(
        r#"strata_gateway_upstream_errors_total{{pool="api",instance="{rude_address}",kind="reset"}}"#
    );
    assert_eq!(gateway.sample(&series).await, Some(2.0));
}

#[tokio::test]
async fn instances_that_close_after_each_response_cost_no_failed_request() {
    // An HTTP/1.1 server that closes after each response: the HTTP/1.1 client's stale
    // connections.
    let backend = Backend::start_with("api-1", false).await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.api.upstream_protocol = UpstreamProtocol::Http1;
    let gateway = spawn_gateway(config).await;
    for i in 0..50 {
        // POSTs are never retried, so a stale pooled connection would show as a 502 here.
        let response = gateway
            .client
            .post(gateway.url("/echo"))
            .body(format!("n{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "request {i}");
        assert_eq!(response.text().await.unwrap(), format!("n{i}"));
    }
    assert_eq!(backend.connections(), 50);
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_retries_total{pool="api"}"#)
            .await,
        Some(0.0)
    );
}
