//! The measurements, per mode: start-up with carts held, then one deployment through its
//! phases (steady load, idle, scale out, scale in, kill), each phase's load from
//! [`crate::run_until`] with a timeline.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::cluster::{Cluster, Host, START_TIMEOUT, STOP_TIMEOUT, api_env, api_launch};
use super::process::{Proc, free_addr, fresh_dir};
use super::{Mode, Plan, probe, secs};
use crate::carts::{cart_lines, make_carts};
use crate::{LabError, LoadReport, LoadSpec, Pace, Scenario, TimelinePoint};

/// Connections the open loop may open: far more than a healthy deployment needs at the lab's
/// rates, so a stall shows as latency, not as a client short of connections.
const LOAD_CONNECTIONS: usize = 64;
/// A load request's time bound: a request to a killed instance fails within it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Readers of the carts while waiting for every cart to be served again.
const SWEEPERS: usize = 8;

/// One start-up measurement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartupPoint {
    pub mode: Mode,
    /// Carts held (stateful: in the instance's snapshot; stateless: in the store).
    pub carts: u64,
    /// From the process's spawn to the first 2xx of its `/readyz`.
    pub ready_ms: f64,
    /// Resident memory once ready.
    pub rss_mib: f64,
}

/// One event under load (scale out, scale in, kill) and what the load saw around it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRun {
    pub mode: Mode,
    /// `scale_out`, `scale_in` or `kill`.
    pub event: String,
    /// Instances before and after.
    pub instances: (usize, usize),
    /// When the event happened (the instance added, its removal begun, the kill), seconds
    /// from the start of the load.
    pub at_secs: f64,
    /// The instance that joined, left or was killed (its `X-Strata-Instance`).
    pub instance: String,
    /// Carts moved between instances (handed over), as the instances' metrics count them.
    pub carts_moved: f64,
    /// Seconds from the event until the instance took its share of requests (scale out),
    /// until the leaving instance served its last request (scale in), until every cart was
    /// served again (kill). `None`: not within the run.
    pub settled_secs: Option<f64>,
    /// Requests failed or answered with an error status from the event to the end.
    pub failed: u64,
    /// Kill only: carts not served with their line at the end.
    pub carts_lost: u64,
    /// Kill only: from the kill until the restarted process was ready.
    pub restart_secs: Option<f64>,
    /// Scale in only: from the start of the removal until the process exited.
    pub exit_secs: Option<f64>,
    pub timeline: Vec<TimelinePoint>,
}

/// The steady run and the idle time of one mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Steady {
    pub mode: Mode,
    pub instances: usize,
    pub load: LoadReport,
    /// CPU seconds of the api processes during the run, per 1,000 requests, in ms.
    pub cpu_ms_per_1000: f64,
    /// Resident memory of the api processes at the end of the run.
    pub rss_load_mib: f64,
    /// CPU of the api processes while idle, ms per second.
    pub cpu_idle_ms_per_sec: f64,
    pub rss_idle_mib: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Measured {
    pub startup: Vec<StartupPoint>,
    pub steady: Vec<Steady>,
    pub events: Vec<EventRun>,
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Every measurement of both modes, one after the other (never two at once: they share the
/// machine's cores).
pub(crate) async fn measure(host: &Host, plan: &Plan) -> Result<Measured, LabError> {
    let mut measured = Measured::default();
    for mode in Mode::BOTH {
        for &carts in &plan.startup_carts {
            tracing::info!(mode = mode.as_str(), carts, "lab: start-up");
            measured.startup.push(startup(host, mode, carts).await?);
        }
    }
    for mode in Mode::BOTH {
        tracing::info!(mode = mode.as_str(), "lab: deployment");
        let mut cluster = Cluster::start(host, mode, 2, "run", plan.held_carts).await?;
        let gateway = cluster.gateway;
        let (cookies, _) = make_carts(
            gateway,
            &gateway.to_string(),
            plan.carts,
            REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        )
        .await?;
        measured
            .steady
            .push(steady(&cluster, plan, &cookies, &host.stop).await?);
        measured
            .events
            .push(scale_out(&mut cluster, plan, &cookies, &host.stop).await?);
        measured
            .events
            .push(scale_in(&mut cluster, plan, &cookies, &host.stop).await?);
        measured
            .events
            .push(kill(&mut cluster, plan, &cookies, &host.stop).await?);
    }
    Ok(measured)
}

/// The start-up of one api process holding `carts` carts: a first start makes its data (the
/// stateful one preloads the carts and snapshots them; the stateless one migrates and seeds
/// the store and preloads the carts into it), and the second start, on that data, is
/// measured.
async fn startup(host: &Host, mode: Mode, carts: u64) -> Result<StartupPoint, LabError> {
    let name = format!("startup-{}-{carts}", mode.as_str());
    let dir = fresh_dir(&host.work, &name)?;
    let addr = free_addr()?;
    let mut launch = api_launch(mode, &dir, &name, addr, None);
    launch.env = api_env(mode, &dir, carts, None);
    let mut first = Proc::spawn(&host.exe, &host.logs, &launch)?;
    // A million carts take a while to make in a debug build: not measured. Once ready, its
    // data is durable (the preloaded carts' snapshot, the store's commits): no need to wait
    // for a graceful stop.
    probe::wait_ok(addr, "/readyz", START_TIMEOUT * 5, &host.stop).await?;
    first.kill();
    first.wait_exit(STOP_TIMEOUT).await;
    let mut second = Proc::spawn(&host.exe, &host.logs, &launch)?;
    let ready = probe::wait_ok(addr, "/readyz", START_TIMEOUT * 5, &host.stop).await?;
    let ready_ms = ready.duration_since(second.spawned).as_secs_f64() * 1000.0;
    let rss_mib = second.usage().map_or(0.0, |u| mib(u.rss_bytes));
    second.kill();
    second.wait_exit(STOP_TIMEOUT).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(StartupPoint {
        mode,
        carts,
        ready_ms,
        rss_mib,
    })
}

/// The carts load of `plan` for `run_secs` through the cluster's gateway.
fn load_spec(cluster: &Cluster, plan: &Plan, cookies: &[String], run_secs: f64) -> LoadSpec {
    let mut spec = LoadSpec::new(format!("http://{}", cluster.gateway));
    spec.scenario = Scenario::Carts;
    spec.cart_cookies = cookies.to_vec();
    spec.pace = Pace::Open {
        rates: vec![plan.rate],
        step: None,
    };
    spec.duration = secs(run_secs);
    spec.concurrency = LOAD_CONNECTIONS;
    spec.request_timeout = REQUEST_TIMEOUT;
    spec.connect_timeout = Duration::from_secs(1);
    spec.timeline = Some(secs(plan.slice_secs));
    spec
}

/// The load of `spec` in a task of its own, and when it began.
fn start_load(
    spec: LoadSpec,
    stop: &CancellationToken,
) -> (
    tokio::task::JoinHandle<Result<LoadReport, LabError>>,
    Instant,
) {
    let stop = stop.child_token();
    let began = Instant::now();
    (
        tokio::spawn(async move { crate::run_until(&spec, stop).await }),
        began,
    )
}

async fn finish_load(
    load: tokio::task::JoinHandle<Result<LoadReport, LabError>>,
) -> Result<LoadReport, LabError> {
    load.await?
}

async fn steady(
    cluster: &Cluster,
    plan: &Plan,
    cookies: &[String],
    stop: &CancellationToken,
) -> Result<Steady, LabError> {
    let before = cluster.api_usage();
    let spec = load_spec(cluster, plan, cookies, plan.steady_secs);
    let load = crate::run_until(&spec, stop.child_token()).await?;
    let after = cluster.api_usage();
    tokio::time::sleep(secs(plan.idle_secs)).await;
    let idle = cluster.api_usage();
    #[allow(clippy::cast_precision_loss)]
    let requests = load.requests.max(1) as f64;
    Ok(Steady {
        mode: cluster.mode,
        instances: cluster.apis.len(),
        cpu_ms_per_1000: (after.cpu_secs - before.cpu_secs) * 1000.0 * 1000.0 / requests,
        rss_load_mib: mib(after.rss_bytes),
        cpu_idle_ms_per_sec: (idle.cpu_secs - after.cpu_secs) * 1000.0 / plan.idle_secs,
        rss_idle_mib: mib(idle.rss_bytes),
        load,
    })
}

/// Carts handed over so far, as the running instances but `skip` count their receipts.
async fn moved(cluster: &Cluster, skip: Option<usize>) -> f64 {
    cluster
        .api_metric(
            "strata_api_carts_handed_over",
            &["direction=\"received\""],
            skip,
        )
        .await
}

/// Requests that failed or got an error status in the slices from `at_secs` on.
pub(crate) fn failed_after(timeline: &[TimelinePoint], at_secs: f64) -> u64 {
    timeline
        .iter()
        .filter(|p| p.at_secs + p.secs > at_secs)
        .map(TimelinePoint::bad)
        .sum()
}

/// Seconds from `at_secs` until `instance` served at least half its final share of requests
/// (its share over the last quarter of the run) in one slice.
pub(crate) fn share_taken(timeline: &[TimelinePoint], instance: &str, at_secs: f64) -> Option<f64> {
    let after: Vec<&TimelinePoint> = timeline.iter().filter(|p| p.at_secs >= at_secs).collect();
    let tail = &after[after.len() * 3 / 4..];
    let served = |p: &TimelinePoint| p.per_instance.get(instance).copied().unwrap_or(0);
    let (mine, all) = tail
        .iter()
        .fold((0, 0), |(m, a), p| (m + served(p), a + p.ok));
    if mine == 0 || all == 0 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let share = mine as f64 / all as f64;
    after
        .iter()
        .find(|p| {
            #[allow(clippy::cast_precision_loss)]
            let part = served(p) as f64 / p.ok.max(1) as f64;
            p.ok > 0 && part >= share / 2.0
        })
        .map(|p| (p.at_secs + p.secs - at_secs).max(0.0))
}

/// Seconds from `at_secs` until the end of the last slice `instance` served a request in.
pub(crate) fn last_served(timeline: &[TimelinePoint], instance: &str, at_secs: f64) -> f64 {
    timeline
        .iter()
        .filter(|p| p.per_instance.get(instance).copied().unwrap_or(0) > 0)
        .map(|p| p.at_secs + p.secs - at_secs)
        .fold(0.0, f64::max)
}

async fn scale_out(
    cluster: &mut Cluster,
    plan: &Plan,
    cookies: &[String],
    stop: &CancellationToken,
) -> Result<EventRun, LabError> {
    let before = cluster.apis.len();
    let moved_before = moved(cluster, None).await;
    let (load, began) = start_load(load_spec(cluster, plan, cookies, plan.event_run_secs), stop);
    tokio::time::sleep(secs(plan.event_at_secs)).await;
    let (i, added) = cluster.add_api().await?;
    let load = finish_load(load).await?;
    let at_secs = added.duration_since(began).as_secs_f64();
    let instance = cluster.apis[i].name.clone();
    Ok(EventRun {
        mode: cluster.mode,
        event: "scale_out".into(),
        instances: (before, cluster.apis.len()),
        at_secs,
        carts_moved: moved(cluster, None).await - moved_before,
        settled_secs: share_taken(&load.timeline, &instance, at_secs),
        failed: failed_after(&load.timeline, at_secs),
        carts_lost: 0,
        restart_secs: None,
        exit_secs: None,
        instance,
        timeline: load.timeline,
    })
}

async fn scale_in(
    cluster: &mut Cluster,
    plan: &Plan,
    cookies: &[String],
    stop: &CancellationToken,
) -> Result<EventRun, LabError> {
    let before = cluster.apis.iter().filter(|a| a.proc.is_some()).count();
    let i = cluster.apis.len() - 1;
    // What the instances that stay receive from the one that leaves.
    let moved_before = moved(cluster, Some(i)).await;
    let (load, began) = start_load(load_spec(cluster, plan, cookies, plan.event_run_secs), stop);
    tokio::time::sleep(secs(plan.event_at_secs)).await;
    let (removal, exited) = cluster.remove_api(i).await?;
    let load = finish_load(load).await?;
    let at_secs = removal.duration_since(began).as_secs_f64();
    let instance = cluster.apis[i].name.clone();
    Ok(EventRun {
        mode: cluster.mode,
        event: "scale_in".into(),
        instances: (before, before - 1),
        at_secs,
        carts_moved: moved(cluster, Some(i)).await - moved_before,
        settled_secs: Some(last_served(&load.timeline, &instance, at_secs)),
        failed: failed_after(&load.timeline, at_secs),
        carts_lost: 0,
        restart_secs: None,
        exit_secs: Some(exited.duration_since(removal).as_secs_f64()),
        instance,
        timeline: load.timeline,
    })
}

async fn kill(
    cluster: &mut Cluster,
    plan: &Plan,
    cookies: &[String],
    stop: &CancellationToken,
) -> Result<EventRun, LabError> {
    let running: Vec<usize> = (0..cluster.apis.len())
        .filter(|i| cluster.apis[*i].proc.is_some())
        .collect();
    let Some(&victim) = running.last() else {
        return Err(LabError::experiment("kill", "no api instance runs"));
    };
    let (load, began) = start_load(load_spec(cluster, plan, cookies, plan.event_run_secs), stop);
    tokio::time::sleep(secs(plan.event_at_secs)).await;
    let killed = Instant::now();
    let sweep = tokio::spawn(served_again(
        cluster.gateway,
        cookies.to_vec(),
        killed,
        secs(plan.recovery_bound_secs),
        stop.child_token(),
    ));
    let (_, ready) = cluster.kill_and_restart(victim).await?;
    let load = finish_load(load).await?;
    let settled = sweep.await?;
    let lost = lost_carts(cluster.gateway, cookies).await;
    let at_secs = killed.duration_since(began).as_secs_f64();
    Ok(EventRun {
        mode: cluster.mode,
        event: "kill".into(),
        instances: (running.len(), running.len()),
        at_secs,
        carts_moved: 0.0,
        settled_secs: settled,
        failed: failed_after(&load.timeline, at_secs),
        carts_lost: lost,
        restart_secs: Some(ready.duration_since(killed).as_secs_f64()),
        exit_secs: None,
        instance: cluster.apis[victim].name.clone(),
        timeline: load.timeline,
    })
}

/// From `since`, reads every cart until each has been served with its line once; returns
/// the seconds from `since` to the last cart's first such read (`None` when some cart was
/// not served again within `bound`).
async fn served_again(
    gateway: std::net::SocketAddr,
    cookies: Vec<String>,
    since: Instant,
    bound: Duration,
    stop: CancellationToken,
) -> Option<f64> {
    let host = gateway.to_string();
    let mut pending: BTreeSet<usize> = (0..cookies.len()).collect();
    let cookies = Arc::new(cookies);
    let mut last = Duration::ZERO;
    while !pending.is_empty() && since.elapsed() < bound && !stop.is_cancelled() {
        let todo: Vec<usize> = pending.iter().copied().collect();
        let mut tasks = JoinSet::new();
        for chunk in todo.chunks(todo.len().div_ceil(SWEEPERS).max(1)) {
            let (chunk, cookies, host) = (chunk.to_vec(), Arc::clone(&cookies), host.clone());
            tasks.spawn(async move {
                let mut served = Vec::new();
                for i in chunk {
                    if cart_lines(gateway, &host, &cookies[i], REQUEST_TIMEOUT)
                        .await
                        .is_some_and(|n| n > 0)
                    {
                        served.push((i, since.elapsed()));
                    }
                }
                served
            });
        }
        while let Some(Ok(served)) = tasks.join_next().await {
            for (i, at) in served {
                pending.remove(&i);
                last = last.max(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pending.is_empty().then_some(last.as_secs_f64())
}

/// Carts not served with their line now.
async fn lost_carts(gateway: std::net::SocketAddr, cookies: &[String]) -> u64 {
    let host = gateway.to_string();
    let mut lost = 0;
    for cookie in cookies {
        let served = cart_lines(gateway, &host, cookie, REQUEST_TIMEOUT).await;
        if served.is_none_or(|n| n == 0) {
            lost += 1;
        }
    }
    lost
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn point(at: f64, ok: u64, bad: u64, per: &[(&str, u64)]) -> TimelinePoint {
        TimelinePoint {
            at_secs: at,
            secs: 1.0,
            requests: ok + bad,
            ok,
            failed: bad,
            per_instance: per
                .iter()
                .map(|(i, n)| ((*i).to_owned(), *n))
                .collect::<BTreeMap<_, _>>(),
            ..TimelinePoint::default()
        }
    }

    #[test]
    fn event_figures_come_from_the_timeline() {
        let timeline = [
            point(0.0, 10, 0, &[("a", 10)]),
            point(1.0, 8, 2, &[("a", 8)]),
            point(2.0, 10, 0, &[("a", 8), ("b", 2)]),
            point(3.0, 10, 0, &[("a", 5), ("b", 5)]),
            point(4.0, 10, 0, &[("a", 5), ("b", 5)]),
        ];
        assert_eq!(failed_after(&timeline, 1.5), 2);
        assert_eq!(failed_after(&timeline, 2.0), 0);
        // b's final share is a half; a fifth is less than half of it, a half is not.
        assert_eq!(share_taken(&timeline, "b", 1.5), Some(2.5));
        assert_eq!(share_taken(&timeline, "c", 1.5), None);
        assert_eq!(last_served(&timeline, "b", 1.5), 3.5);
        assert_eq!(last_served(&timeline, "c", 1.5), 0.0);
    }
}
