//! Operational behaviour: probes, metrics, request ids, instance headers, JSON fallbacks, the
//! body limit and graceful shutdown.

use reqwest::StatusCode;
use serde_json::Value;

use crate::catalog::metric_value;
use crate::helpers::{Backend, MAX_BODY_BYTES, TestApp, assert_json_error, spawn_app_with};

backend_tests!(
    health_and_readiness_name_the_instance,
    metrics_count_requests_by_route_and_status,
    request_ids_are_echoed_or_generated,
    unknown_routes_are_json_404s,
    wrong_methods_are_json_405s,
    oversized_bodies_are_json_413s,
    shutdown_is_graceful,
);

async fn health_and_readiness_name_the_instance(app: TestApp) {
    for path in ["/healthz", "/readyz"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["x-strata-instance"],
            app.instance.as_str(),
            "{path}"
        );
        assert!(response.headers().contains_key("x-request-id"), "{path}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["role"], "api");
        assert_eq!(body["instance"], app.instance.as_str());
    }
}

async fn metrics_count_requests_by_route_and_status(app: TestApp) {
    let list = app.get_ok_json("/api/v1/products?per_page=1").await;
    let id = list["items"][0]["id"].as_i64().expect("id");
    app.get_ok_json(&format!("/api/v1/products/{id}")).await;
    app.get("/api/v1/products/abc").await;
    app.get("/nowhere").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-strata-instance"));
    let text = response.text().await.expect("body");
    assert!(text.contains("strata_api_http_requests_total"), "{text}");
    assert!(
        text.contains("strata_api_http_request_duration_seconds"),
        "{text}"
    );
    let ok = r#"strata_api_http_requests_total{method="GET",route="/api/v1/products/{id}",status="200"}"#;
    assert_eq!(metric_value(&text, ok), 1.0, "{text}");
    let bad = r#"strata_api_http_requests_total{method="GET",route="/api/v1/products/{id}",status="400"}"#;
    assert_eq!(metric_value(&text, bad), 1.0, "{text}");
    let unmatched =
        r#"strata_api_http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(metric_value(&text, unmatched), 1.0, "{text}");
}

async fn request_ids_are_echoed_or_generated(app: TestApp) {
    let given = "test-req-42.a:b_c";
    for path in [
        "/api/v1/products",
        "/api/v1/products/abc",
        "/nowhere",
        "/healthz",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .header("x-request-id", given)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.headers()["x-request-id"], given, "{path}");
        assert_eq!(
            response.headers()["x-strata-instance"],
            app.instance.as_str(),
            "{path}"
        );
    }
    let generated = app.get("/healthz").await.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(generated.len(), 32, "{generated}");
    // An id that would poison logs is replaced, not echoed.
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "has spaces and \"quotes\"")
        .send()
        .await
        .expect("GET");
    let replaced = response.headers()["x-request-id"].to_str().expect("ascii");
    assert_eq!(replaced.len(), 32, "{replaced}");
}

async fn unknown_routes_are_json_404s(app: TestApp) {
    for path in [
        "/nowhere",
        "/api/v1/product",
        "/api/v1/products/",
        "/api/v2/products",
        "/healthz/x",
    ] {
        assert_json_error(app.get(path).await, StatusCode::NOT_FOUND, "not_found").await;
    }
}

async fn wrong_methods_are_json_405s(app: TestApp) {
    let cases = [
        (reqwest::Method::PUT, "/api/v1/products"),
        (reqwest::Method::GET, "/api/v1/sessions"),
        (reqwest::Method::DELETE, "/api/v1/users/me"),
        (reqwest::Method::DELETE, "/api/v1/products/1"),
        (reqwest::Method::PUT, "/api/v1/products/abc"),
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::POST, "/metrics"),
        (reqwest::Method::DELETE, "/"),
    ];
    for (method, path) in cases {
        let response = app
            .client
            .request(method, format!("{}{path}", app.base))
            .send()
            .await
            .expect("send");
        assert_json_error(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    }
}

async fn oversized_bodies_are_json_413s(app: TestApp) {
    let too_big = vec![b'x'; MAX_BODY_BYTES + 1];
    for path in ["/api/v1/products", "/nowhere"] {
        let response = app
            .client
            .post(format!("{}{path}", app.base))
            .body(too_big.clone())
            .send()
            .await
            .expect("POST");
        assert_json_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    // At the limit, the request goes on to routing (here: a 405, as `/healthz` takes no POST).
    let at_limit = vec![b'x'; MAX_BODY_BYTES];
    let response = app
        .client
        .post(format!("{}/healthz", app.base))
        .body(at_limit)
        .send()
        .await
        .expect("POST");
    assert_json_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

async fn shutdown_is_graceful(app: TestApp) {
    let base = app.base.clone();
    let client = app.client.clone();
    app.get_ok_json("/healthz").await;
    app.stop().await.expect("run returns Ok after shutdown");
    assert!(
        client.get(format!("{base}/healthz")).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn unmigrated_store_is_not_ready() {
    let app = spawn_app_with(Backend::Sqlite, false)
        .await
        .expect("SQLite app");
    assert_json_error(
        app.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;
    // Alive all the same: liveness does not depend on backends.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

/// A statement past the store's statement timeout (PostgreSQL cancels it) is the store's
/// typed timeout, which the api answers 503 `unavailable` with the JSON body, not 500.
#[tokio::test]
async fn a_statement_timeout_is_a_503_not_a_500() {
    let Some(url) = strata_core::testkit::require_service(strata_core::testkit::POSTGRES) else {
        return;
    };
    let options = strata_store::StoreOptions {
        statement_timeout: std::time::Duration::from_millis(100),
        ..strata_store::StoreOptions::default()
    };
    let (store, _schema) = strata_store::testing::fresh_postgres_with(&url, options)
        .await
        .expect("PostgreSQL");
    let err = strata_store::testing::execute(&store, "SELECT pg_sleep(2)")
        .await
        .expect_err("cancelled by the statement timeout");
    assert!(
        matches!(err, strata_store::StoreError::Timeout(_)),
        "{err:?}"
    );
    let response = axum::response::IntoResponse::into_response(strata_api::ApiError::from(err));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(strata_core::http::is_json_error(&response));
    store.close().await.expect("close");
}
