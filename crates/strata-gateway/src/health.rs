//! Instance health: active checks, passive ejection and slow start.
//!
//! An instance takes requests while it is **up** (active checks pass) and not **ejected**
//! (passive: the proxy saw it fail several requests in a row). Both live in one atomic byte
//! that the balancer reads at each pick, so the hot path never locks; every change also asks
//! the pool to rebuild its balancer, off the request path (see [`crate::balance`]).
//!
//! - **Active checks.** One task per instance sends `GET <path>` every `interval` (jittered by
//!   ±10 % so checks of many instances do not arrive together), on a fresh connection so a
//!   check also proves the instance accepts connections ([`Upstream::probe`]), and waits at
//!   most `timeout`. `fall`
//!   failures in a row take the instance down, `rise` successes bring it back. While an
//!   instance is between states (a check failed but not yet `fall` of them, or passed but not
//!   yet `rise`) the next check comes after a quarter of the interval, and a request that
//!   fails on an up instance asks for a check at once (as HAProxy's `fastinter` and
//!   `on-error fastinter`): a dead instance is out about `timeout` + (`fall` − 1) ×
//!   (`interval` / 4 + `timeout`) after it failed its first request, instead of up to `fall`
//!   whole intervals. Instances start up, so a fresh gateway serves at once and a dead
//!   instance is found by its first `fall` checks (or sooner, by passive ejection).
//! - **Passive ejection.** The proxy reports the outcome of every attempt: a connect error,
//!   reset, timeout (once the whole request was sent) or 5xx is a failure, any other answer a
//!   success; a client's failure (a slow or cut body) is neither. `eject_after` failures in
//!   a row eject the instance for a backoff of `eject_base`, doubled for each further
//!   ejection without a successful request in between, up to `eject_max`. When the backoff
//!   ends, the instance comes back at the next successful active check (at once when active
//!   checks are off); a failed one ejects it again for the next backoff. An ejected instance
//!   that failed a check (it was dead or restarting) comes back as soon as it passes `rise`
//!   checks in a row, whatever is left of its backoff: the backoff only grows for instances
//!   that keep failing.
//! - **Slow start.** An instance that comes back (down → up, or an ejection ends) ramps its
//!   effective weight linearly from 10 % to 100 % over `slow_start`; the balancer uses it as
//!   described in [`crate::balance`].
//!
//! Time is read from tokio's clock, so tests can pause and advance it.
//!
//! [`Upstream::probe`]: crate::upstream::Upstream::probe

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::HealthConfig;
use http::uri::PathAndQuery;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use strata_core::Shutdown;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::balance::rng::Rng;
use crate::membership::Instance;

/// Status bit: failing active checks.
const DOWN: u8 = 1;
/// Status bit: ejected after failed requests.
const EJECTED: u8 = 2;
/// `recovered_at` when the instance is not ramping up.
const NOT_RAMPING: u64 = u64::MAX;
/// Share of its weight a recovered instance starts from.
const SLOW_START_FLOOR: f64 = 0.1;
/// Steps of the slow-start ramp: the pool's balancer is rebuilt at each.
const SLOW_START_STEPS: u32 = 10;

/// The health settings of a pool, as durations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Path (and query) of the active check.
    pub path: String,
    /// Time between checks; `None`: active checks off.
    pub interval: Option<Duration>,
    /// Time a check may take, connect included.
    pub timeout: Duration,
    /// Successes in a row that bring a down instance up.
    pub rise: u32,
    /// Failures in a row that take an up instance down.
    pub fall: u32,
    /// Failed requests in a row that eject an instance; 0: passive ejection off.
    pub eject_after: u32,
    /// First ejection's length.
    pub eject_base: Duration,
    /// Longest ejection.
    pub eject_max: Duration,
    /// Ramp of a recovered instance; `None`: full weight at once.
    pub slow_start: Option<Duration>,
}

impl HealthPolicy {
    /// The policy of a pool's `[gateway.<pool>.health]` settings.
    pub fn from_config(config: &HealthConfig) -> Self {
        let ms = Duration::from_millis;
        Self {
            path: config.path.clone(),
            interval: (config.interval_ms > 0).then(|| ms(config.interval_ms)),
            timeout: ms(config.timeout_ms.max(1)),
            rise: config.rise.max(1),
            fall: config.fall.max(1),
            eject_after: config.eject_after,
            eject_base: ms(config.eject_base_ms.max(1)),
            eject_max: ms(config.eject_max_ms.max(config.eject_base_ms).max(1)),
            slow_start: (config.slow_start_ms > 0).then(|| ms(config.slow_start_ms)),
        }
    }

    /// Length of ejection number `k` (0 for the first) in a row.
    pub fn backoff(&self, k: u32) -> Duration {
        let factor = 1u32.checked_shl(k.min(31)).unwrap_or(u32::MAX);
        self.eject_base.saturating_mul(factor).min(self.eject_max)
    }
}

/// An instance's health as the admin API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Takes requests.
    Up,
    /// Failing active checks.
    Down,
    /// Ejected after failed requests.
    Ejected,
}

/// The metric handles health updates.
#[derive(Debug, Clone)]
pub struct HealthMetrics {
    /// `strata_gateway_instance_up{pool, instance}`.
    pub up: Gauge,
    /// `strata_gateway_ejections_total{pool, instance}`.
    pub ejections: Counter,
    /// `strata_gateway_health_checks_total{pool, instance, result="success"}`.
    pub checks_passed: Counter,
    /// `strata_gateway_health_checks_total{pool, instance, result="failure"}`.
    pub checks_failed: Counter,
}

/// The health of one instance: atomics read on the hot path, written by the proxy (outcomes of
/// requests) and by the instance's health task (checks, end of ejections, ramps).
#[derive(Debug)]
pub struct InstanceHealth {
    /// Swapped by a configuration reload.
    policy: ArcSwap<HealthPolicy>,
    /// Origin of the millisecond timestamps below.
    epoch: Instant,
    /// `DOWN | EJECTED` bits; 0 means up.
    status: AtomicU8,
    /// Failed requests in a row.
    failures: AtomicU32,
    /// Ejections in a row (without a successful request between them).
    ejections: AtomicU32,
    /// End of the current ejection, in ms since `epoch`.
    ejected_until: AtomicU64,
    /// When the instance last came back, in ms since `epoch`; `NOT_RAMPING` when at full
    /// weight.
    recovered_at: AtomicU64,
    /// Wakes the health task when the proxy ejects the instance.
    wake: Notify,
    /// A request failed on the instance while it was up: check it now.
    check_soon: AtomicBool,
    metrics: HealthMetrics,
    /// For logs: `pool/instance`.
    name: Arc<str>,
}

impl InstanceHealth {
    /// An instance that starts up, at full weight.
    pub fn new(policy: Arc<HealthPolicy>, metrics: HealthMetrics, name: &str) -> Self {
        metrics.up.set(1);
        Self {
            policy: ArcSwap::new(policy),
            epoch: Instant::now(),
            status: AtomicU8::new(0),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            recovered_at: AtomicU64::new(NOT_RAMPING),
            wake: Notify::new(),
            check_soon: AtomicBool::new(false),
            metrics,
            name: name.into(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<HealthPolicy> {
        self.policy.load_full()
    }

    /// Replaces the policy (configuration reload); the health task picks it up at once.
    pub fn set_policy(&self, policy: Arc<HealthPolicy>) {
        self.policy.store(policy);
        self.wake.notify_one();
    }

    /// Whether the instance may take requests: up and not ejected. One atomic load.
    pub fn is_up(&self) -> bool {
        self.status.load(Ordering::Relaxed) == 0
    }

    /// Up, down or ejected (an instance both down and ejected shows as ejected).
    pub fn state(&self) -> HealthState {
        let status = self.status.load(Ordering::Relaxed);
        if status & EJECTED != 0 {
            HealthState::Ejected
        } else if status & DOWN != 0 {
            HealthState::Down
        } else {
            HealthState::Up
        }
    }

    /// Time left in the current ejection; `None` when not ejected. An ejection whose backoff
    /// is over but that waits for a successful check shows zero.
    pub fn ejected_for(&self) -> Option<Duration> {
        if self.status.load(Ordering::Relaxed) & EJECTED == 0 {
            return None;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        Some(Duration::from_millis(until.saturating_sub(self.now_ms())))
    }

    /// The weight the balancer should use now for an instance of configured weight `weight`:
    /// 0 when it may not take requests, ramping from 10 % (at least 1) during slow start.
    pub fn effective_weight(&self, weight: u32) -> u32 {
        if !self.is_up() {
            return 0;
        }
        match self.ramp() {
            None => weight,
            Some(share) => ((f64::from(weight) * share).round() as u32).clamp(1, weight),
        }
    }

    /// Counts a request the instance answered below 500: ends a run of failures (and of
    /// ejections). Hot path: two loads, and stores only when a run was going on.
    pub fn record_success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failed request (connect error, reset, timeout, invalid response, 5xx); the
    /// `eject_after`-th in a row ejects the instance.
    pub fn record_failure(&self) {
        // An instance that fails a request may have died: an active check settles it sooner
        // than the next interval (once per run of failures; the task clears the flag).
        if self.status.load(Ordering::Relaxed) & DOWN == 0
            && !self.check_soon.swap(true, Ordering::Relaxed)
        {
            self.wake.notify_one();
        }
        let after = self.policy.load().eject_after;
        if after == 0 {
            return;
        }
        // Exactly one failure of a run reaches the threshold, so concurrent failures eject
        // once; later ones of the same run (requests already in flight) only count.
        if self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
            == after
        {
            self.eject();
        }
    }

    /// Ejects the instance for the next backoff, unless it is ejected already.
    fn eject(&self) {
        if self.status.load(Ordering::Relaxed) & EJECTED == 0 {
            self.eject_for_next_backoff();
        }
    }

    /// Starts an ejection, or extends the current one, for the next backoff.
    fn eject_for_next_backoff(&self) {
        let k = self.ejections.fetch_add(1, Ordering::Relaxed);
        let backoff = self.policy.load().backoff(k);
        self.ejected_until.store(
            self.now_ms().saturating_add(millis(backoff)),
            Ordering::Relaxed,
        );
        // Release: whoever sees the bit also sees the end time stored before it.
        self.status.fetch_or(EJECTED, Ordering::Release);
        self.metrics.up.set(0);
        self.metrics.ejections.inc();
        tracing::warn!(
            instance = %self.name,
            backoff_ms = millis(backoff),
            ejections_in_a_row = k + 1,
            "instance ejected after failed requests"
        );
        self.wake.notify_one();
    }

    /// Ends the ejection: the instance takes requests again (if up) and ramps up.
    fn end_ejection(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let before = self.status.fetch_and(!EJECTED, Ordering::Relaxed);
        if before & EJECTED != 0 {
            tracing::info!(instance = %self.name, "ejection over; instance back");
            self.came_back(before & !EJECTED);
        }
    }

    /// Marks the instance down or up after `fall` or `rise` checks in a row.
    fn set_down(&self, down: bool) {
        if down {
            let before = self.status.fetch_or(DOWN, Ordering::Relaxed);
            if before & DOWN == 0 {
                self.metrics.up.set(0);
                tracing::warn!(instance = %self.name, "instance down: failing health checks");
            }
        } else {
            let before = self.status.fetch_and(!DOWN, Ordering::Relaxed);
            if before & DOWN != 0 {
                self.failures.store(0, Ordering::Relaxed);
                tracing::info!(instance = %self.name, "instance up: passing health checks");
                self.came_back(before & !DOWN);
            }
        }
    }

    /// After a status bit was cleared: when no bit is left the instance serves again, from the
    /// bottom of its slow-start ramp.
    fn came_back(&self, status_now: u8) {
        if status_now != 0 {
            return;
        }
        self.metrics.up.set(1);
        if self.policy.load().slow_start.is_some() {
            self.recovered_at.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// The share of its weight a ramping instance gets now; `None` at full weight.
    fn ramp(&self) -> Option<f64> {
        let since = self.recovered_at.load(Ordering::Relaxed);
        let ramp = self.policy.load().slow_start?;
        if since == NOT_RAMPING {
            return None;
        }
        let elapsed = self.now_ms().saturating_sub(since) as f64;
        let total = ramp.as_millis() as f64;
        (elapsed < total).then(|| SLOW_START_FLOOR + (1.0 - SLOW_START_FLOOR) * elapsed / total)
    }

    /// When the ramp reaches its next step, or `None` when not ramping. Once the ramp is over
    /// it is marked so (and the instance is at full weight).
    fn next_ramp_step(&self) -> Option<Instant> {
        let ramp = self.policy.load().slow_start?;
        let since = self.recovered_at.load(Ordering::Relaxed);
        if since == NOT_RAMPING {
            return None;
        }
        let step = millis(ramp / SLOW_START_STEPS).max(1);
        let elapsed = self.now_ms().saturating_sub(since);
        if elapsed >= millis(ramp) {
            self.recovered_at.store(NOT_RAMPING, Ordering::Relaxed);
            return None;
        }
        let next = since + (elapsed / step + 1) * step;
        Some(self.epoch + Duration::from_millis(next))
    }

    fn now_ms(&self) -> u64 {
        millis(self.epoch.elapsed())
    }

    fn ejection_end(&self) -> Option<Instant> {
        if self.status.load(Ordering::Acquire) & EJECTED == 0 {
            return None;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        Some(self.epoch + Duration::from_millis(until))
    }

    fn count_check(&self, passed: bool) {
        if passed {
            self.metrics.checks_passed.inc();
        } else {
            self.metrics.checks_failed.inc();
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Stops the health tasks of a gateway when dropped (or when the shutdown they were started
/// under is cancelled).
#[derive(Debug)]
pub struct HealthTasks {
    stop: Shutdown,
    _guard: tokio_util::sync::DropGuard,
}

impl HealthTasks {
    /// The parent of health tasks, stopped by `shutdown` or by dropping the returned value.
    pub fn new(shutdown: &Shutdown) -> Self {
        let stop = shutdown.child_token();
        Self {
            _guard: stop.clone().drop_guard(),
            stop,
        }
    }

    /// The token every health task stops on.
    pub fn stop(&self) -> &Shutdown {
        &self.stop
    }
}

/// Starts the health task of `instance`: it runs until `stop` (the gateway stops) or
/// `retired` (the instance left the table), and calls `refresh` to rebuild the instance's
/// pool's balancer whenever its health changes.
pub fn spawn_watch(
    instance: Arc<Instance>,
    refresh: Arc<dyn Fn() + Send + Sync>,
    stop: Shutdown,
    retired: Shutdown,
) {
    tokio::spawn(async move {
        tokio::select! {
            () = retired.cancelled() => {}
            () = watch(instance, refresh, stop) => {}
        }
    });
}

/// The health task of `instance`: active checks, the end of ejections and the slow-start
/// ramp, until `stop`.
async fn watch(instance: Arc<Instance>, refresh: Arc<dyn Fn() + Send + Sync>, stop: Shutdown) {
    let health = instance.health();
    let rng = Rng::per_thread();
    let jittered = |interval: Duration| interval.mul_f64(0.9 + 0.2 * unit(&rng));
    let far = || Instant::now() + Duration::from_secs(3600);
    // The first check comes anywhere in the first interval, so a gateway's checks spread out.
    let first = |interval: Duration| Instant::now() + interval.mul_f64(unit(&rng));
    let mut next_check = health.policy().interval.map(first);
    let mut last_check: Option<Instant> = None;
    let (mut passed, mut failed) = (0u32, 0u32);
    // A check failed during the current ejection: the instance itself was in trouble (dead,
    // restarting), so `rise` passing checks prove it recovered, whatever is left of the
    // backoff.
    let mut failed_while_ejected = false;
    loop {
        // Reloaded each turn: a configuration reload may have changed it.
        let policy = health.policy();
        match policy.interval {
            None => next_check = None,
            Some(interval) if next_check.is_none() => next_check = Some(first(interval)),
            Some(_) => {}
        }
        let wake_at = [next_check, health.ejection_end(), health.next_ramp_step()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(far);
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = health.wake.notified() => {
                // A failed request: check soon (not sooner than a quarter interval after the
                // last check, so a burst of failures is one check).
                if health.check_soon.swap(false, Ordering::Relaxed)
                    && let (Some(interval), Some(at)) = (policy.interval, next_check)
                {
                    let earliest = last_check.map_or_else(Instant::now, |l| l + fast(interval));
                    next_check = Some(at.min(earliest.max(Instant::now())));
                }
                // Ejected by the proxy (or a new policy): rebuild, then sleep until the next
                // event.
                refresh();
                continue;
            }
            () = tokio::time::sleep_until(wake_at) => {}
        }
        let now = Instant::now();
        let ejection_over = health.ejection_end().is_some_and(|end| end <= now);
        let check_due = next_check.is_some_and(|at| at <= now);
        if let Some(interval) = policy.interval
            && (check_due || ejection_over)
        {
            let ok = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                ok = check(&instance, &policy) => ok,
            };
            health.count_check(ok);
            last_check = Some(Instant::now());
            if ok {
                passed = passed.saturating_add(1);
                failed = 0;
                let risen = passed >= policy.rise;
                if risen {
                    health.set_down(false);
                }
                if ejection_over || (risen && failed_while_ejected) {
                    failed_while_ejected = false;
                    health.end_ejection();
                }
            } else {
                failed = failed.saturating_add(1);
                passed = 0;
                if failed >= policy.fall {
                    health.set_down(true);
                }
                failed_while_ejected |= health.ejection_end().is_some();
                if ejection_over {
                    // Still failing after its backoff: eject again, for longer.
                    health.eject_for_next_backoff();
                }
            }
            // Between states (failing but not yet down, passing but not yet up): look again
            // sooner.
            let down = health.status.load(Ordering::Relaxed) & DOWN != 0;
            let settling = (failed > 0 && !down) || (passed > 0 && down);
            let wait = if settling { fast(interval) } else { interval };
            next_check = Some(Instant::now() + jittered(wait));
        } else if ejection_over {
            health.end_ejection();
        }
        if health.ejection_end().is_none() {
            failed_while_ejected = false;
        }
        refresh();
    }
}

/// The time between checks of an instance between states: a quarter of the interval.
fn fast(interval: Duration) -> Duration {
    interval / 4
}

/// A uniform number in `[0, 1)`.
fn unit(rng: &Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// One active check: `GET <path>` on a fresh connection within the timeout; a 2xx or 3xx
/// answer passes.
async fn check(instance: &Instance, policy: &HealthPolicy) -> bool {
    let address = instance.address();
    // The configuration only accepts a valid path; one built otherwise fails its checks.
    let Ok(path) = policy.path.parse::<PathAndQuery>() else {
        tracing::debug!(
            instance = address,
            path = policy.path,
            "health check path invalid"
        );
        return false;
    };
    let probe = instance.upstream().probe(path.as_str());
    match tokio::time::timeout(policy.timeout, probe).await {
        Ok(Ok(status)) if status.is_success() || status.is_redirection() => true,
        Ok(Ok(status)) => {
            tracing::debug!(instance = address, %status, "health check failed: status");
            false
        }
        Ok(Err(error)) => {
            tracing::debug!(instance = address, %error, "health check failed");
            false
        }
        Err(_) => {
            tracing::debug!(instance = address, timeout = ?policy.timeout, "health check timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::Metrics;

    fn policy(config: HealthConfig) -> Arc<HealthPolicy> {
        Arc::new(HealthPolicy::from_config(&config))
    }

    fn health(config: HealthConfig) -> InstanceHealth {
        let metrics = Metrics::register(&mut Registry::default());
        let handles = metrics.instance("api", "a:1").health;
        InstanceHealth::new(policy(config), handles, "api/a:1")
    }

    #[test]
    fn backoff_doubles_per_ejection_up_to_the_max() {
        let p = policy(HealthConfig {
            eject_base_ms: 1000,
            eject_max_ms: 30_000,
            ..HealthConfig::default()
        });
        let lengths: Vec<u64> = (0..7).map(|k| millis(p.backoff(k))).collect();
        assert_eq!(lengths, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
        assert_eq!(p.backoff(200), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn the_nth_failure_in_a_row_ejects_and_a_success_resets_the_run() {
        let h = health(HealthConfig::default());
        h.record_failure();
        h.record_failure();
        h.record_success();
        h.record_failure();
        h.record_failure();
        assert!(h.is_up(), "a success ended the first run");
        h.record_failure();
        assert!(!h.is_up());
        assert_eq!(h.state(), HealthState::Ejected);
        assert_eq!(h.ejected_for(), Some(Duration::from_secs(1)));
        assert_eq!(h.metrics.ejections.get(), 1);
        assert_eq!(h.metrics.up.get(), 0);
        // Failures of requests still in flight do not eject again.
        for _ in 0..10 {
            h.record_failure();
        }
        assert_eq!(h.metrics.ejections.get(), 1);
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(h.ejected_for(), Some(Duration::from_millis(600)));
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_ejections_double_until_a_successful_request() {
        let h = health(HealthConfig::default());
        let mut lengths = Vec::new();
        for _ in 0..3 {
            for _ in 0..3 {
                h.record_failure();
            }
            lengths.push(h.ejected_for());
            h.end_ejection();
        }
        assert_eq!(
            lengths,
            [1, 2, 4].map(|s| Some(Duration::from_secs(s))).to_vec()
        );
        h.record_success();
        for _ in 0..3 {
            h.record_failure();
        }
        assert_eq!(h.ejected_for(), Some(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn passive_ejection_can_be_turned_off() {
        let h = health(HealthConfig {
            eject_after: 0,
            ..HealthConfig::default()
        });
        for _ in 0..100 {
            h.record_failure();
        }
        assert!(h.is_up());
    }

    #[tokio::test(start_paused = true)]
    async fn a_recovered_instance_ramps_from_ten_percent_to_full_weight() {
        let h = health(HealthConfig {
            slow_start_ms: 5000,
            ..HealthConfig::default()
        });
        assert_eq!(
            h.effective_weight(100),
            100,
            "instances start at full weight"
        );
        h.set_down(true);
        assert_eq!((h.effective_weight(100), h.state()), (0, HealthState::Down));
        h.set_down(false);
        assert_eq!(h.effective_weight(100), 10);
        assert_eq!(h.effective_weight(1), 1, "never below 1 while up");
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(h.effective_weight(100), 55);
        let next = h.next_ramp_step().unwrap();
        assert_eq!(next - Instant::now(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(h.next_ramp_step(), None);
        assert_eq!(h.effective_weight(100), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn down_and_ejected_are_independent_and_both_must_clear() {
        let h = health(HealthConfig {
            slow_start_ms: 0,
            ..HealthConfig::default()
        });
        h.set_down(true);
        for _ in 0..3 {
            h.record_failure();
        }
        assert_eq!(h.state(), HealthState::Ejected);
        h.end_ejection();
        assert_eq!((h.state(), h.metrics.up.get()), (HealthState::Down, 0));
        h.set_down(false);
        assert_eq!((h.state(), h.metrics.up.get()), (HealthState::Up, 1));
        assert_eq!(h.effective_weight(7), 7, "slow start off");
    }
}
