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
