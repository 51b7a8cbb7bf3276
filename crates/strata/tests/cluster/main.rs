//! Cluster fault tests: `deploy/compose.yaml` on this Docker host (gateway, api × 3, chat × 2,
//! worker × 2, PostgreSQL, Redis, three NATS nodes), a steady load through the gateway (reads,
//! checkouts with `Idempotency-Key`s, chat rooms with members on both chat instances), one
//! fault per test, then the invariants of `checks`: nothing acknowledged lost or applied twice.
//!
//! Each test reports its figures as one JSON line on standard error (`cluster fault NAME:
//! {...}`) and, when `CLUSTER_REPORT` names a file, appends it there: the failed-request
//! window per kind of traffic, the time the gateway took to stop sending to a failed instance
//! (`detect_ms`) and to send to it again once it returned (`recover_ms`).
//!
//! The images must exist (`deploy/test/run.sh` builds them and runs these tests). Without
//! Docker or the images the tests fail under `CI=true` and are skipped loudly elsewhere.
//! `CLUSTER_ROUNDS` (default 1) repeats each fault that many times in one run: the long form.
//! The tests take turns (one cluster at a time).

// Helpers outside `#[test]` functions panic on a broken test machine, as the tests do.
#![allow(clippy::unwrap_used)]

mod checks;
mod docker;
mod load;
mod watch;

use std::time::Duration;

use serde_json::{Value, json};

use crate::docker::{ADMIN_EMAIL, ADMIN_PASSWORD, Cluster, GATEWAY_PORT};
use crate::load::{Fixture, Kind, Load, Shape, Shop};
use crate::watch::{GatewayWatch, failures};

/// One cluster at a time: each takes most of this host.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Load before the first fault, so every kind of traffic runs in steady state.
const WARM_UP: Duration = Duration::from_secs(4);
/// Load after the last fault is healed.
const COOL_DOWN: Duration = Duration::from_secs(6);
/// A gateway must stop sending to a dead instance within this (the bound).
const DETECT_BOUND_MS: u64 = 2_000;

fn rounds() -> usize {
    std::env::var("CLUSTER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| (1..=20).contains(r))
        .unwrap_or(1)
}

/// `None` (and a loud message) when the cluster cannot run here and `CI` is not set.
fn prerequisites() -> Option<()> {
    let Some(missing) = docker::missing_prerequisite() else {
        return Some(());
    };
    let in_ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(
        !in_ci,
        "cluster tests: {missing}; CI=true: failing, not skipping"
    );
    eprintln!("\n!!!! SKIPPED: cluster tests: {missing} (set CI=true to fail instead) !!!!\n");
    None
}

/// A cluster under load, ready for a fault.
struct Drill {
    name: &'static str,
    cluster: Cluster,
    shop: Shop,
    fixture: Fixture,
    load: Load,
    api: GatewayWatch,
    chat: GatewayWatch,
    up_ms: u128,
    figures: serde_json::Map<String, Value>,
    /// What the gateway got wrong, asserted once the figures are reported.
    broken: Vec<String>,
    /// This test's turn: one cluster at a time. Last, so it is released after the cluster
    /// is removed (fields drop in order).
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Drill {
    /// Waits for its turn, brings the cluster up and puts the load on it; `None` when the
    /// cluster cannot run here (and `CI` is not set).
    async fn start(name: &'static str) -> Option<Drill> {
        prerequisites()?;
        let turn = TURN.lock().await;
        let (cluster, took) = Cluster::up(name);
        let shop = Shop::new(&format!("http://127.0.0.1:{GATEWAY_PORT}"));
        let fixture = Fixture::prepare(&shop, Shape::STEADY, (ADMIN_EMAIL, ADMIN_PASSWORD)).await;
        let load = Load::start(&shop, &fixture, Shape::STEADY);
        let admin = format!("http://127.0.0.1:{}", docker::ADMIN_PORT);
        let api = GatewayWatch::start(admin.clone(), "api", load.record.clone());
        let chat = GatewayWatch::start(admin, "chat", load.record.clone());
        tokio::time::sleep(WARM_UP).await;
        Some(Drill {
            name,
            cluster,
            shop,
            fixture,
            load,
            api,
            chat,
            up_ms: took.as_millis(),
            figures: serde_json::Map::new(),
            broken: Vec::new(),
            _turn: turn,
        })
    }

    /// Now, in ms since the load started, recorded as figure `name` (`fault_at_ms`,
    /// `heal_at_ms`), so the report places the failures against the fault.
    fn mark(&mut self, name: &str) -> u64 {
        let now = self.load.record.now_ms();
        self.figure(name, json!(now));
        now
    }

    /// When `service`'s container stopped (`FinishedAt`) or started (`StartedAt`) by the
    /// engine's clock, in ms since the load started, recorded as figure `name`. A `docker`
    /// command returns a while after it acted (0.1–1 s on a busy host): times of faults and
    /// heals are taken from the engine, not from around the command.
    fn mark_engine(&mut self, name: &str, service: &str, field: &str) -> u64 {
        let at = self
            .load
            .record
            .at_ms(self.cluster.state_time(service, field));
        self.figure(name, json!(at));
        at
    }

    /// Records a figure of the fault (a list per name: one entry per round).
    fn figure(&mut self, name: &str, value: Value) {
        let entry = self
            .figures
            .entry(name.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        entry.as_array_mut().unwrap().push(value);
    }

    /// The gateway's view of `service` in `watch` after a fault at `fault` healed at `heal`:
    /// records `detect_ms` and waits (up to 60 s) for `recover_ms`. `dead`: the instance
    /// vanished (killed, cut off), so the gateway must notice within [`DETECT_BOUND_MS`].
    async fn detect_and_recover(
        &mut self,
        chat: bool,
        service: &str,
        (fault, heal): (u64, u64),
        dead: bool,
    ) {
        let watch = if chat { &self.chat } else { &self.api };
        let detect = watch.out_after(service, fault);
        let mut recover = None;
        for _ in 0..600 {
            recover = watch.back_after(service, heal);
            if recover.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.figure("detect_ms", json!(detect));
        self.figure("recover_ms", json!(recover));
        if !detect.is_some_and(|ms| !dead || ms <= DETECT_BOUND_MS) {
            self.broken.push(format!(
                "the gateway took {detect:?} ms to stop sending to {service}"
            ));
        }
        if recover.is_none() {
            self.broken
                .push(format!("{service} never came back in the gateway"));
        }
    }

    /// Ends the load, checks every invariant, reports; returns the failures per kind.
    async fn finish(mut self) -> Vec<(Kind, watch::Failures)> {
        tokio::time::sleep(COOL_DOWN).await;
        let record = self.load.record.clone();
        let acknowledged = self.load.stop(&self.shop, &self.fixture).await;
        let verdict = checks::check(&self.cluster, &self.shop, &self.fixture, &acknowledged).await;
        let outcomes = record.outcomes();
        let per_kind: Vec<(Kind, watch::Failures)> = Kind::ALL
            .iter()
            .map(|kind| (*kind, failures(&outcomes, *kind)))
            .collect();
        let mut report = json!({
            "fault": self.name,
            "rounds": rounds(),
            "compose_up_to_ready_ms": self.up_ms,
            "orders": verdict.orders,
            "shipped": verdict.shipped,
            "payment_failed": verdict.payment_failed,
            "chat_messages": verdict.messages,
            "chat_deliveries": verdict.deliveries,
            "settle_ms": verdict.settle_ms,
            "members_moved": acknowledged.member_instances.iter().filter(|(a, b)| a != b).count(),
        });
        for (kind, f) in &per_kind {
            report[kind.name()] = json!({
                "requests": f.total, "failed": f.failed, "window_ms": f.window_ms,
                "reasons": f.reasons,
            });
        }
        for (name, value) in std::mem::take(&mut self.figures) {
            report[name] = value;
        }
        let line = report.to_string();
        eprintln!("cluster fault {}: {line}", self.name);
        if let Ok(path) = std::env::var("CLUSTER_REPORT") {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(file, "{line}").unwrap();
        }
        // Whatever the fault, an instance answers 503 (try again), never 500 (a bug).
        let internal: Vec<&load::Outcome> = outcomes
            .iter()
            .filter(|o| o.failure.as_deref().is_some_and(|f| f.starts_with("500 ")))
            .collect();
        if !internal.is_empty() {
            self.broken.push(format!(
                "{} requests answered 500: {:?}",
                internal.len(),
                internal[0]
            ));
        }
        assert!(self.broken.is_empty(), "{}: {:?}", self.name, self.broken);
        per_kind
    }
}

/// The failures of `kind` in a finished drill.
fn failed(per_kind: &[(Kind, watch::Failures)], kind: Kind) -> &watch::Failures {
    &per_kind.iter().find(|(k, _)| *k == kind).unwrap().1
}

/// Asserts that no idempotent request (reads, checkouts by key) failed.
fn assert_no_failed_idempotent(name: &str, per_kind: &[(Kind, watch::Failures)]) {
    for kind in [Kind::Read, Kind::Checkout] {
        let f = failed(per_kind, kind);
        assert_eq!(
            f.failed,
            0,
            "{name}: {} of {} {} requests failed: {:?}",
            f.failed,
            f.total,
            kind.name(),
            f.reasons
        );
        assert!(f.total > 0, "{name}: no {} traffic ran", kind.name());
    }
}

/// How an outage takes a container away.
#[derive(Clone, Copy)]
enum Away {
    /// `docker kill`: SIGKILL, no goodbye.
    Kill,
    /// `docker stop`: SIGTERM, a clean shutdown (10 s before SIGKILL).
    Stop,
}

/// Takes `service`'s container away, starts it again after `down`, and records both times
/// from the engine; returns them.
async fn outage(drill: &mut Drill, service: &str, away: Away, down: Duration) -> (u64, u64) {
    match away {
        Away::Kill => drill.cluster.kill(service),
        Away::Stop => drill.cluster.stop(service, Duration::from_secs(10)),
    }
    let fault = drill.mark_engine("fault_at_ms", service, "FinishedAt");
    tokio::time::sleep(down).await;
    drill.cluster.start(service);
    let heal = drill.mark_engine("heal_at_ms", service, "StartedAt");
    (fault, heal)
}

/// Outages of a service the gateway does not route to, each followed by 2 s of load.
async fn outages(drill: &mut Drill, service: &str, away: Away, down: Duration) {
    for _ in 0..rounds() {
        outage(drill, service, away, down).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Kills a container, starts it again after `down`, and measures how the gateway saw it.
async fn kill_and_return(drill: &mut Drill, service: &str, chat: bool, down: Duration) {
    for _ in 0..rounds() {
        let (fault, heal) = outage(drill, service, Away::Kill, down).await;
        drill
            .detect_and_recover(chat, service, (fault, heal), true)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_container_killed() {
    let Some(mut drill) = Drill::start("api_kill").await else {
        return;
    };
    kill_and_return(&mut drill, "api-1", false, Duration::from_secs(5)).await;
    let per_kind = drill.finish().await;
    assert_no_failed_idempotent("api_kill", &per_kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_container_killed() {
    let Some(mut drill) = Drill::start("chat_kill").await else {
        return;
    };
    kill_and_return(&mut drill, "chat-1", true, Duration::from_secs(5)).await;
    let per_kind = drill.finish().await;
    // Members of the killed instance lost their connection and came back through the
    // gateway; the invariants (checked in `finish`) say they lost no message.
    assert!(
        failed(&per_kind, Kind::ChatConnect).failed > 0,
        "no member was cut off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_container_killed() {
    let Some(mut drill) = Drill::start("worker_kill").await else {
        return;
    };
    outages(&mut drill, "worker-1", Away::Kill, Duration::from_secs(5)).await;
    let per_kind = drill.finish().await;
    assert_no_failed_idempotent("worker_kill", &per_kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_node_killed() {
    let Some(mut drill) = Drill::start("nats_node_kill").await else {
        return;
    };
    outages(&mut drill, "nats-1", Away::Kill, Duration::from_secs(10)).await;
    drill.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_partitioned_from_gateway() {
    let Some(mut drill) = Drill::start("api_partition").await else {
        return;
    };
    for _ in 0..rounds() {
        // In place once the command returns; measured from then.
        drill.cluster.disconnect("api-1", "app");
        let fault = drill.mark("fault_at_ms");
        tokio::time::sleep(Duration::from_secs(10)).await;
        drill.cluster.connect("api-1", "app");
        let heal = drill.mark("heal_at_ms");
        drill
            .detect_and_recover(false, "api-1", (fault, heal), true)
            .await;
    }
    drill.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped() {
    let Some(mut drill) = Drill::start("postgres_stop").await else {
        return;
    };
    outages(&mut drill, "postgres", Away::Stop, Duration::from_secs(10)).await;
    drill.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replica_stopped() {
    let Some(mut drill) = Drill::start("replica_stop").await else {
        return;
    };
    // Catalog reads move to the primary while the replica is away: nothing fails.
    outages(
        &mut drill,
        "postgres-replica",
        Away::Stop,
        Duration::from_secs(10),
    )
    .await;
    let per_kind = drill.finish().await;
    assert_no_failed_idempotent("replica_stop", &per_kind);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_rolling_replacement() {
    let Some(mut drill) = Drill::start("api_rolling").await else {
        return;
    };
    // A new tag each round: compose replaces a container only when its image changed.
    let tags: Vec<String> = (1..=rounds())
        .map(|round| format!("strata-rolled:round-{round}"))
        .collect();
    for next in &tags {
        docker::docker(&["tag", &docker::strata_image(), next]);
        for service in ["api-1", "api-2", "api-3"] {
            let old = drill.cluster.container(service);
            let fault = drill.mark("fault_at_ms");
            // Compose stops the old container (SIGTERM: it drains) and starts the new one.
            drill
                .cluster
                .compose_with_image(next, &["up", "-d", "--no-deps", service]);
            let heal = drill.mark_engine("heal_at_ms", service, "StartedAt");
            assert_ne!(
                drill.cluster.container(service),
                old,
                "{service} not replaced"
            );
            // Replaced, not dead: it drains first, so no bound on noticing it.
            drill
                .detect_and_recover(false, service, (fault, heal), false)
                .await;
        }
    }
    let per_kind = drill.finish().await;
    for tag in &tags {
        docker::docker(&["rmi", tag]);
    }
    assert_no_failed_idempotent("api_rolling", &per_kind);
}
