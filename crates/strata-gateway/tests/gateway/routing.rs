//! Routing, round robin, request ids and header rewriting.

use std::collections::HashMap;

use crate::helpers::{Backend, config, eventually, raw_exchange, spawn_gateway};

#[tokio::test]
async fn round_robin_spreads_300_requests_exactly_and_metrics_agree() {
    let backends = [
        Backend::start("api-1").await,
        Backend::start("api-2").await,
        Backend::start("api-3").await,
    ];
    let gateway = spawn_gateway(config(&[(
        "api",
        backends.iter().map(Backend::url).collect(),
    )]))
    .await;

    let mut seen_by_client: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let response = gateway.get("/api/v1/products").await;
        assert_eq!(response.status(), 200);
        let instance = response.headers()["x-strata-instance"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            response.text().await.unwrap(),
            format!("hello from {instance}")
        );
        *seen_by_client.entry(instance).or_default() += 1;
    }

    for backend in &backends {
        assert_eq!(seen_by_client[&backend.name], 100, "{seen_by_client:?}");
        assert_eq!(backend.count(), 100);
        let series = format!(
            r#"strata_gateway_requests_total{{pool="api",instance="{}",status="200"}}"#,
            backend.addr
        );
        assert_eq!(gateway.sample(&series).await, Some(100.0), "{series}");
        // Sequential requests reuse one keep-alive connection per instance.
        assert_eq!(
            backend.connections(),
            1,
            "{} opened more than one connection",
            backend.name
        );
    }
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_request_duration_seconds_count{pool="api"}"#)
            .await,
        Some(300.0)
    );

    let (status, pools) = gateway.admin_json("/admin/pools").await;
    assert_eq!(status, 200);
    assert_eq!(pools["pools"][0]["name"], "api");
    assert_eq!(pools["pools"][0]["algorithm"], "round_robin");
    let instances = pools["pools"][0]["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3);
    for (view, backend) in instances.iter().zip(&backends) {
        assert_eq!(view["address"], backend.addr.to_string());
        assert_eq!(view["requests_served"], 100);
    }
    eventually("in-flight gauges return to zero", || async {
        let (_, pools) = gateway.admin_json("/admin/pools").await;
        pools["pools"][0]["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["in_flight"] == 0)
    })
    .await;
}

#[tokio::test]
async fn chat_paths_go_to_the_chat_pool() {
    let (api, chat) = (
        Backend::start("api-1").await,
        Backend::start("chat-1").await,
    );
    let gateway = spawn_gateway(config(&[
        ("api", vec![api.url()]),
        ("chat", vec![chat.url()]),
    ]))
    .await;
    let response = gateway.get("/api/v1/chat/rooms/7/messages?after=3").await;
    assert_eq!(response.headers()["x-strata-instance"], "chat-1");
    let response = gateway.get("/docs").await;
    assert_eq!(response.headers()["x-strata-instance"], "api-1");
    assert_eq!(chat.seen()[0].path, "/api/v1/chat/rooms/7/messages");
}

#[tokio::test]
async fn a_route_without_pool_or_instances_gets_503_json_with_retry_after() {
    let api = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![api.url()])])).await;
    let response = gateway.get("/api/v1/chat/presence").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_instance");
    assert!(body["error"]["message"].as_str().unwrap().contains("chat"));
    assert_eq!(
        gateway
            .sample(r#"strata_gateway_requests_total{pool="chat",instance="none",status="503"}"#)
            .await,
        Some(1.0)
    );

    let empty = spawn_gateway(config(&[("api", vec![])])).await;
    let response = empty.get("/api/v1/products").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_instance");
}

#[tokio::test]
async fn request_ids_are_generated_or_kept_and_reach_the_instance() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;

    let response = gateway.get("/a").await;
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 32);
    assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        backend.seen()[0].headers["x-request-id"],
        generated.as_str()
    );

    let response = gateway
        .client
        .get(gateway.url("/b"))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-id-42");
    assert_eq!(backend.seen()[1].headers["x-request-id"], "client-id-42");

    let response = gateway
        .client
        .get(gateway.url("/c"))
        .header("x-request-id", "bad id!")
        .send()
        .await
        .unwrap();
    let replaced = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(replaced, "bad id!");
    assert_eq!(backend.seen()[2].headers["x-request-id"], replaced.as_str());
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways_and_forwarding_headers_added() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;

    let request = "GET /hop HTTP/1.1\r\n\
        Host: shop.example\r\n\
        Connection: close, X-Private\r\n\
        X-Private: secret\r\n\
        Keep-Alive: timeout=5\r\n\
        TE: trailers\r\n\
        Proxy-Authorization: Basic abc\r\n\
        Proxy-Connection: keep-alive\r\n\
        X-Forwarded-For: 203.0.113.5\r\n\
        X-Forwarded-Proto: https\r\n\
        X-End-To-End: yes\r\n\
        \r\n";
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let head = response.to_ascii_lowercase();
    assert!(head.contains("x-strata-instance: api-1"), "{response}");
    assert!(head.contains("x-end-to-end: kept"), "{response}");
    for gone in [
        "x-resp-hop",
        "keep-alive:",
        "proxy-authenticate",
        "trailer:",
    ] {
        assert!(
            !head.contains(gone),
            "{gone} reached the client:\n{response}"
        );
    }

    let seen = &backend.seen()[0];
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "{gone} reached the instance: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.headers["host"], "shop.example");
    assert_eq!(seen.headers["x-end-to-end"], "yes");
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.5, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    // Above the replay buffer (64 KiB), under the body limit (1 MiB): streamed, not buffered.
    let payload = strata_core::testkit::patterned_bytes(300_000);
    let response = gateway
        .client
        .put(gateway.url("/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), payload.as_slice());

    let chunked = "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let response = raw_exchange(gateway.addr, chunked.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with("hello world") || response.contains("hello world"),
        "{response}"
    );
    assert_eq!(backend.seen()[1].body.as_ref(), b"hello world");
}

#[tokio::test]
async fn head_and_empty_responses_keep_the_connection_pooled() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    for _ in 0..5 {
        let response = gateway.client.head(gateway.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-strata-instance"], "api-1");
        let response = gateway
            .client
            .put(gateway.url("/echo"))
            .body("")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "");
    }
    assert_eq!(backend.count(), 10);
    assert_eq!(backend.connections(), 1);
}

#[tokio::test]
async fn the_instances_operational_endpoints_are_not_public() {
    let node = crate::nodes::Node::start("api-1").await;
    let chat = Backend::start("chat-1").await;
    let mut config = config(&[("api", vec![node.url()]), ("chat", vec![chat.url()])]);
    // The gateway's own checks of the instance keep working.
    config.api.health.interval_ms = 50;
    config.api.health.timeout_ms = 50;
    let gateway = spawn_gateway(config).await;
    for path in [
        "/metrics",
        "/healthz",
        "/readyz",
        "/metrics/",
        "/readyz?verbose=1",
        "/%6detrics",
        "/%2Fhealthz",
        "//healthz",
    ] {
        let response = gateway.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // Dot segments, sent as they are (an HTTP client library would resolve them).
    for path in [
        "/x/../readyz",
        "/api/v1/chat/../../../metrics",
        "/./metrics",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n");
        let response = raw_exchange(gateway.addr, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{path}: {response}");
    }
    assert_eq!(node.traffic(), 0, "an operational endpoint was forwarded");
    assert_eq!(chat.count(), 0);
    crate::helpers::eventually("the gateway checks the instance", || async {
        node.checks() >= 2
    })
    .await;
    // Paths that only start like one are forwarded.
    assert_eq!(gateway.get("/metricsx").await.status(), 200);
    assert_eq!(gateway.get("/api/v1/metrics").await.status(), 200);
    assert_eq!(node.traffic(), 2);
}

#[tokio::test]
async fn internal_paths_are_configured_per_pool() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.api.internal_paths = vec!["/private".into()];
    let gateway = spawn_gateway(config).await;
    assert_eq!(gateway.get("/private/x").await.status(), 404);
    assert_eq!(gateway.get("/metrics").await.status(), 200);
    assert_eq!(backend.count(), 1);
}
