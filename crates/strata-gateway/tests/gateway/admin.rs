//! The admin listener.

use crate::helpers::{Backend, config, spawn_gateway};

#[tokio::test]
async fn health_readiness_metrics_and_unknown_routes() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()])])).await;
    // The bodies every role serves, naming the role and the instance.
    let instance = format!("gateway@{}", gateway.addr);
    let (status, body) = gateway.admin_json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    assert_eq!(body["role"], "gateway");
    assert_eq!(body["instance"], instance.as_str());
    let (status, body) = gateway.admin_json("/readyz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    assert_eq!(body["instance"], instance.as_str());
    let (status, body) = gateway.admin_json("/nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );

    assert_eq!(gateway.get("/counted").await.status(), 200);
    let metrics = gateway
        .client
        .get(gateway.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for family in [
        "strata_gateway_requests_total",
        "strata_gateway_request_duration_seconds",
        "strata_gateway_in_flight",
        "strata_gateway_upstream_errors_total",
        "strata_gateway_retries_total",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    // The public listener serves neither the admin API nor the instances' /metrics.
    let public = gateway.get("/metrics").await;
    assert_eq!(public.status(), 404);
    assert!(!public.text().await.unwrap().contains("strata_gateway"));
}

#[tokio::test]
async fn a_configured_pool_without_instances_is_not_ready() {
    let backend = Backend::start("api-1").await;
    let gateway = spawn_gateway(config(&[("api", vec![backend.url()]), ("chat", vec![])])).await;
    let (status, body) = gateway.admin_json("/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("chat"));
}

#[tokio::test]
async fn invalid_pools_are_all_reported_at_build() {
    let mut config = config(&[
        ("db", vec!["http://a:1".into()]),
        ("api", vec!["ftp://b".into()]),
    ]);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = strata_gateway::Gateway::build(&config).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("`db`") && message.contains("ftp://b"),
        "{message}"
    );
}
