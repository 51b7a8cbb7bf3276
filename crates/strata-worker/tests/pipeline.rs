//! The event pipeline end to end, in process: checkouts write `order.placed` to the outbox, a
//! real worker relays and handles the events, and the tests check the invariants the issue
//! states (every order ends `shipped` or `payment_failed`, each status change and notification
//! exactly once, stock consistent with the orders) while workers crash, handlers fail for good
//! and the NATS server restarts. Each test runs on memory bus + SQLite and on NATS + PostgreSQL.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_bus::{AnyBus, Bus, NatsBus};
use strata_core::Shutdown;
use strata_core::testkit::{NATS, POSTGRES, require_service};
use strata_store::testing::{self, TempFileGuard, TestSchemaGuard, pipeline};
use strata_store::{OrderStatus, Store};
use strata_worker::{EventStats, PipelineSettings, SimulatedPayments, Worker, WorkerSettings};
use tokio::task::JoinHandle;

/// A store and a bus for one test, and what cleans them up.
struct Backends {
    store: Store,
    bus: AnyBus,
    bus_url: String,
    namespace: String,
    _file: Option<TempFileGuard>,
    _schema: Option<TestSchemaGuard>,
}

impl Backends {
    async fn memory_sqlite() -> Self {
        let (store, file) = testing::fresh_sqlite().await;
        store.migrate().await.unwrap();
        Self {
            store,
            bus: AnyBus::connect("memory", "test").await.unwrap(),
            bus_url: "memory".into(),
            namespace: "test".into(),
            _file: Some(file),
            _schema: None,
        }
    }

    /// On PostgreSQL and the NATS server at `nats_url` (the shared one when `None`); `None`
    /// (after a loud message) when a server is missing outside CI.
    async fn nats_postgres(nats_url: Option<&str>) -> Option<Self> {
        let pg = require_service(POSTGRES)?;
        let nats = match nats_url {
            Some(url) => url.to_owned(),
            None => require_service(NATS)?,
        };
        let (store, schema) = testing::fresh_postgres(&pg).await.unwrap();
        store.migrate().await.unwrap();
        let namespace = format!("wk{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Some(Self {
            store,
            bus: AnyBus::connect(&nats, &namespace).await.unwrap(),
            bus_url: nats,
            namespace,
            _file: None,
            _schema: Some(schema),
        })
    }

    /// Deletes this test's NATS streams.
    async fn cleanup(&self) {
        if self.bus_url.starts_with("nats://")
            && let Ok(bus) = NatsBus::connect(&self.bus_url, &self.namespace).await
        {
            let _ = bus.delete_namespace_streams().await;
            let _ = bus.close().await;
        }
    }
}

/// A worker running in a task: `crash` drops it mid-flight, `stop` stops it gracefully.
struct RunningWorker {
    base: String,
    client: reqwest::Client,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), strata_worker::WorkerError>>,
}

impl RunningWorker {
    async fn start(backends: &Backends, pipeline: PipelineSettings) -> Self {
        let settings = WorkerSettings {
            instance: "worker-test".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: Default::default(),
            request_timeout: strata_core::http::DEFAULT_REQUEST_TIMEOUT,
            pipeline,
        };
        let worker = Worker::build(settings, backends.store.clone(), backends.bus.clone())
            .await
            .unwrap();
        let base = format!("http://{}", worker.local_addr());
        let shutdown = Shutdown::new();
        let task = tokio::spawn(worker.run(shutdown.clone()));
        Self {
            base,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            shutdown,
            task,
        }
    }

    /// Like SIGKILL for an in-process worker: every task stops where it is; transactions in
    /// flight roll back, deliveries in hand are never answered.
    async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// `GET {base}{path}`, answered 2xx.
    async fn get(&self, path: &str) -> reqwest::Response {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response
    }

    /// `POST /events/dlq/replay`, with `body` as JSON when given, answered 2xx.
    async fn replay(&self, body: Option<Value>) -> Value {
        let mut request = self.client.post(format!("{}/events/dlq/replay", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Fast retries and redeliveries, so crashes and failures settle within seconds.
fn quick(decline_rate: f64, error_rate: f64) -> PipelineSettings {
    PipelineSettings {
        concurrency: 8,
        max_deliveries: 3,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        ack_wait: Duration::from_millis(1500),
        relay_interval: Duration::from_millis(10),
        stats_interval: Duration::from_millis(200),
        payments: SimulatedPayments {
            decline_rate,
            error_rate,
            latency: Duration::from_millis(1),
            seed: 42,
        },
        ..PipelineSettings::default()
    }
}

/// Waits (at most `limit`) until the pipeline is quiet: every order final, the outbox relayed,
/// and every handler's consumer without lag or unacknowledged deliveries.
async fn settle(backends: &Backends, limit: Duration) {
    pipeline::settle(&backends.store, limit, || async {
        EventStats::read(&backends.bus, &backends.store)
            .await
            .is_ok_and(|s| s.is_quiet())
    })
    .await;
}

/// 1,000 checkouts while the worker is killed twice mid-processing and restarted.
async fn orders_survive_two_worker_crashes(backends: &Backends) {
    const ORDERS: usize = 1000;
    let store = &backends.store;
    let products = pipeline::products(store, 4).await;
    let mut worker = RunningWorker::start(backends, quick(0.2, 0.0)).await;
    let placing = {
        let store = store.clone();
        let products = products.clone();
        tokio::spawn(async move { pipeline::place_orders(&store, &products, 20, ORDERS).await })
    };
    // Crash twice, each time once the pipeline has visibly moved on.
    for round in 1..=2 {
        let done = i64::try_from(round * ORDERS / 4).unwrap();
        pipeline::wait_final(store, done, Duration::from_secs(60)).await;
        worker.crash().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        worker = RunningWorker::start(backends, quick(0.2, 0.0)).await;
    }
    placing.await.unwrap();
    settle(backends, Duration::from_secs(120)).await;
    worker.stop().await;
    pipeline::check_invariants(store, &products, ORDERS).await;
    let counts = store.orders().count_by_status().await.unwrap();
    let failed = counts
        .get(&OrderStatus::PaymentFailed)
        .copied()
        .unwrap_or(0);
    // 20 % declines: both outcomes really happened.
    assert!((100..=300).contains(&failed), "{counts:?}");
}

/// A handler that fails every time dead-letters its events after `max_deliveries`; replaying
/// them once the fault is fixed completes them, exactly once.
async fn failing_handler_dead_letters_then_replay_completes(backends: &Backends) {
    let store = &backends.store;
    let products = pipeline::products(store, 4).await;
    // The payment provider is down for good.
    let worker = RunningWorker::start(backends, quick(0.0, 1.0)).await;
    pipeline::place_orders(store, &products, 3, 6).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let letters: Vec<Value> = worker.get("/events/dlq").await.json().await.unwrap();
        if letters.len() >= 6 {
            break letters;
        }
        assert!(Instant::now() < deadline, "dead letters: {letters:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), 6, "{letters:?}");
    for letter in &letters {
        assert_eq!(letter["handler"], "payment");
        assert_eq!(letter["subject"], "order.placed");
        assert_eq!(letter["deliveries"], 3, "{letter}");
        assert!(letter["error"].as_str().unwrap().contains("unavailable"));
    }
    // Nothing was paid; the customers were told their orders were placed.
    let counts = store.orders().count_by_status().await.unwrap();
    assert_eq!(counts.get(&OrderStatus::Placed), Some(&6), "{counts:?}");
    let stats: Value = worker.get("/events/stats").await.json().await.unwrap();
    let dlq = stats["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "dlq")
        .unwrap();
    assert_eq!(dlq["stored"], 6, "{stats}");
    // The same figures as metrics (the gauges refresh every 200 ms here).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = worker.get("/metrics").await.text().await.unwrap();
        let has = |line: &str| metrics.lines().any(|l| l == line);
        if has("strata_worker_dead_letters 6")
            && has(r#"strata_worker_handler_failures_total{handler="payment"} 18"#)
            && has(r#"strata_worker_events_total{handler="payment",outcome="dead_lettered"} 6"#)
            && metrics.contains(r#"strata_worker_consumer_lag{handler="payment"} 0"#)
            && metrics.contains("strata_worker_processing_seconds_bucket")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;

    // The provider is back: replay two by id, then the rest.
    let worker = RunningWorker::start(backends, quick(0.0, 0.0)).await;
    let first: Vec<u64> = letters[..2]
        .iter()
        .map(|l| l["id"].as_u64().unwrap())
        .collect();
    let replayed = worker
        .replay(Some(
            serde_json::json!({ "ids": [first[0], first[1], 999_999] }),
        ))
        .await;
    assert_eq!(
        replayed["replayed"].as_array().unwrap().len(),
        2,
        "{replayed}"
    );
    assert_eq!(replayed["missing"], serde_json::json!([999_999]));
    let replayed = worker.replay(None).await;
    assert_eq!(
        replayed["replayed"].as_array().unwrap().len(),
        4,
        "{replayed}"
    );
    settle(backends, Duration::from_secs(30)).await;
    let left: Vec<Value> = worker.get("/events/dlq").await.json().await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    // Bad requests are 400 with the JSON error body.
    for body in ["{\"ids\": \"all\"}", "{\"other\": 1}", "[1,2"] {
        let response = worker
            .client
            .post(format!("{}/events/dlq/replay", worker.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request");
    }
    let response = worker
        .client
        .get(format!("{}/events/dlq?limit=0", worker.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    worker.stop().await;
    pipeline::check_invariants(store, &products, 6).await;
}

macro_rules! both_setups {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory_sqlite() {
                    let backends = super::Backends::memory_sqlite().await;
                    super::$name(&backends).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn nats_postgres() {
                    let Some(backends) = super::Backends::nats_postgres(None).await else {
                        return;
                    };
                    let outcome = futures_util::FutureExt::catch_unwind(
                        std::panic::AssertUnwindSafe(super::$name(&backends)),
                    )
                    .await;
                    backends.cleanup().await;
                    if let Err(panic) = outcome {
                        std::panic::resume_unwind(panic);
                    }
                }
            }
        )*
    };
}

/// An order's notifications have increasing ids in the order of its statuses (placed, then
/// paid or payment failed, then shipped), though the events of many orders arrive together.
async fn notifications_of_an_order_are_recorded_in_its_order(backends: &Backends) {
    const ORDERS: usize = 300;
    let store = &backends.store;
    let products = pipeline::products(store, 4).await;
    let worker = RunningWorker::start(backends, quick(0.2, 0.0)).await;
    pipeline::place_orders(store, &products, 20, ORDERS).await;
    settle(backends, Duration::from_secs(120)).await;
    worker.stop().await;
    let rank = |status: OrderStatus| match status {
        OrderStatus::Placed => 0,
        OrderStatus::Paid | OrderStatus::PaymentFailed => 1,
        _ => 2,
    };
    for order_id in 1..=i64::try_from(ORDERS).unwrap() {
        let mut notes = store.notifications().for_order(order_id).await.unwrap();
        notes.sort_by_key(|n| n.id);
        let ranks: Vec<u8> = notes.iter().map(|n| rank(n.kind)).collect();
        assert!(
            ranks.is_sorted() && !ranks.is_empty(),
            "order {order_id}: {:?}",
            notes.iter().map(|n| (n.id, n.kind)).collect::<Vec<_>>()
        );
    }
}

both_setups!(
    orders_survive_two_worker_crashes,
    failing_handler_dead_letters_then_replay_completes,
    notifications_of_an_order_are_recorded_in_its_order,
);

/// A nats-server of the test's own, with JetStream on a temporary directory, so it can be
/// stopped and started again without disturbing anyone else.
struct PrivateNats {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    fn binary() -> Option<PathBuf> {
        [
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
            "/usr/local/bin/nats-server",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    }

    fn start() -> Option<Self> {
        if Self::binary().is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "nats-server is not installed (CI=true)"
            );
            eprintln!("SKIPPED: nats-server is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("strata-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nats = Self {
            port,
            dir,
            child: None,
        };
        nats.spawn();
        Some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new(Self::binary().unwrap())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// NATS restarted in the middle of a run: the relay and the consumers reconnect by themselves
/// and every invariant still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_run_loses_nothing() {
    const ORDERS: usize = 300;
    let Some(mut nats) = PrivateNats::start() else {
        return;
    };
    let Some(backends) = Backends::nats_postgres(Some(&nats.url())).await else {
        return;
    };
    let store = &backends.store;
    let products = pipeline::products(store, 4).await;
    let worker = RunningWorker::start(&backends, quick(0.2, 0.0)).await;
    let placing = {
        let store = store.clone();
        let products = products.clone();
        tokio::spawn(async move { pipeline::place_orders(&store, &products, 10, ORDERS).await })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.orders().count().await.unwrap() < i64::try_from(ORDERS / 3).unwrap() {
        assert!(Instant::now() < deadline, "no orders");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.stop();
    // Checkouts go on meanwhile: their events wait in the outbox.
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.spawn();
    placing.await.unwrap();
    settle(&backends, Duration::from_secs(120)).await;
    worker.stop().await;
    pipeline::check_invariants(store, &products, ORDERS).await;
    let _ = backends.bus.close().await;
}
