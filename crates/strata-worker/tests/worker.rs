//! The worker role's operational endpoints, on a real instance over port 0.

use strata_bus::AnyBus;
use strata_core::Shutdown;
use strata_core::ops_checks::OpsCheck;
use strata_store::testing::{self, TempFileGuard};
use strata_worker::{ROLE, Worker, WorkerSettings};

/// A running worker; stopped when dropped.
struct TestApp {
    base: String,
    instance: String,
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
        request_timeout: strata_core::http::DEFAULT_REQUEST_TIMEOUT,
        pipeline: Default::default(),
    };
    let server = Worker::build(settings, store, bus)
        .await
        .expect("build worker");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    TestApp {
        base,
        instance,
        shutdown,
        _file: file,
    }
}

impl TestApp {
    fn ops(&self) -> OpsCheck {
        OpsCheck::new(&self.base, ROLE, &self.instance)
    }
}

#[tokio::test]
async fn probes_answer_with_the_instance_header() {
    let app = spawn_app().await;
    app.ops().probes_answer_with_the_instance_header().await;
}

#[tokio::test]
async fn metrics_name_the_role() {
    let app = spawn_app().await;
    app.ops().metrics_name_the_role().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = spawn_app().await;
    app.ops()
        .unknown_routes_and_methods_are_json_errors(&[])
        .await;
}

/// The instance name of the unmigrated-store test.
const UNMIGRATED: &str = "worker-unmigrated";

#[tokio::test]
async fn unmigrated_store_is_not_ready() {
    let (store, _file) = testing::fresh_sqlite().await;
    let settings = WorkerSettings {
        instance: UNMIGRATED.into(),
        listen: "127.0.0.1:0".parse().expect("address"),
        admin_token: Default::default(),
        request_timeout: strata_core::http::DEFAULT_REQUEST_TIMEOUT,
        pipeline: Default::default(),
    };
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let server = Worker::build(settings, store, bus)
        .await
        .expect("build worker");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    OpsCheck::new(&base, ROLE, UNMIGRATED).not_ready().await;
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}

/// The admin token of the token test: what `worker.admin_token` must be when the listener is
/// not on loopback (the configuration refuses an empty one then).
const ADMIN_TOKEN: &str = "worker admin token 0123";

#[tokio::test]
async fn events_endpoints_off_loopback_need_the_admin_token() {
    let (store, _file) = testing::fresh_sqlite().await;
    store.migrate().await.expect("migrate");
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let settings = WorkerSettings {
        instance: "worker-token".into(),
        // Every interface: reachable from other hosts, so the token guards it.
        listen: "0.0.0.0:0".parse().expect("address"),
        admin_token: strata_core::config::Secret::new(ADMIN_TOKEN),
        pipeline: Default::default(),
        request_timeout: strata_core::http::DEFAULT_REQUEST_TIMEOUT,
    };
    let server = Worker::build(settings, store, bus)
        .await
        .expect("build worker");
    let base = format!("http://127.0.0.1:{}", server.local_addr().port());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let requests = [
        (reqwest::Method::GET, "/events/stats"),
        (reqwest::Method::GET, "/events/dlq"),
        (reqwest::Method::POST, "/events/dlq/replay"),
    ];
    for (method, path) in &requests {
        for token in [None, Some("wrong token wrong token"), Some("")] {
            let mut request = client.request(method.clone(), format!("{base}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("send");
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            let body: serde_json::Value = response.json().await.expect("JSON problem body");
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        }
    }
    let response = client
        .get(format!("{base}/events/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    // Probes and scrapers need no token.
    for path in ["/healthz", "/metrics"] {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{path}");
    }
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}
