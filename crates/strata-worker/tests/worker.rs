//! The worker role's operational endpoints, on a real instance over port 0.

use reqwest::{Client, StatusCode};
use serde_json::Value;
use strata_bus::AnyBus;
use strata_core::Shutdown;
use strata_store::testing::{self, TempFileGuard};
use strata_worker::{Worker, WorkerSettings};

/// A running worker; stopped when dropped.
struct TestApp {
    base: String,
    instance: String,
    client: Client,
    shutdown: Shutdown,
    _file: TempFileGuard,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn spawn_app() -> TestApp {
    let (store, file) = testing::fresh_sqlite().await;
    store.migrate().await.expect("migrate");
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let instance = format!("worker-test-{}", uuid::Uuid::new_v4().simple());
    let settings = WorkerSettings {
        instance: instance.clone(),
        listen: "127.0.0.1:0".parse().expect("address"),
        admin_token: Default::default(),
        pipeline: Default::default(),
    };
    let server = Worker::build(settings, store, bus)
        .await
        .expect("build worker");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    let client = Client::builder().no_proxy().build().expect("client");
    TestApp {
        base,
        instance,
        client,
        shutdown,
        _file: file,
    }
}

impl TestApp {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }
}

#[tokio::test]
async fn probes_answer_with_the_instance_header() {
    let app = spawn_app().await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            response.headers()["x-strata-instance"],
            app.instance.as_str()
        );
        assert!(response.headers().contains_key("x-request-id"));
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["status"], status);
        assert_eq!(body["role"], "worker");
    }
}

#[tokio::test]
async fn metrics_name_the_role() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-strata-instance"],
        app.instance.as_str()
    );
    let text = response.text().await.expect("body");
    assert!(text.contains("strata_worker_http_requests_total"), "{text}");
    assert!(
        text.contains("strata_worker_http_request_duration_seconds"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = spawn_app().await;
    let cases = [
        (
            reqwest::Method::GET,
            "/nowhere",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::POST,
            "/healthz",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let response = app
            .client
            .request(method, format!("{}{path}", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers()["x-strata-instance"],
            app.instance.as_str()
        );
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
}

#[tokio::test]
async fn unmigrated_store_is_not_ready() {
    let (store, _file) = testing::fresh_sqlite().await;
    let settings = WorkerSettings {
        instance: "worker-unmigrated".into(),
        listen: "127.0.0.1:0".parse().expect("address"),
        admin_token: Default::default(),
        pipeline: Default::default(),
    };
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let server = Worker::build(settings, store, bus)
        .await
        .expect("build worker");
    let url = format!("http://{}/readyz", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = Client::builder().no_proxy().build().expect("client");
    let response = client.get(url).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "not_ready");
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}
