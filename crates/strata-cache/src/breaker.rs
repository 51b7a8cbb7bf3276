//! [`Breaker`]: the circuit breaker in front of Redis, so that a cache that stopped answering
//! costs callers nothing but a miss.
//!
//! Closed, every call goes to Redis. After `failures` consecutive transient failures (a
//! timeout, a refused or dropped connection) it *opens*: calls fail at once with
//! [`CacheError::CircuitOpen`](crate::CacheError::CircuitOpen), without touching the network,
//! for `cooldown`. Then it is *half-open*: the first call after the cool-down is let through as
//! the one probe (every other call still fails fast); its success closes the breaker, its
//! failure opens it for another cool-down. A probe that never reports (its caller gave up and
//! dropped the call) is replaced by the next caller once a cool-down has passed.
//!
//! The hot path of a closed breaker is one atomic load; every state change is one log line
//! and one metric update, never one per call.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `open_until` of a closed breaker.
const CLOSED: u64 = 0;

/// The breaker's states, as the `strata_<role>_cache_breaker_state` gauge shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go to Redis (gauge 0).
    Closed,
    /// Calls fail fast (gauge 1).
    Open,
    /// One probe is out; other calls fail fast (gauge 2).
    HalfOpen,
}

impl BreakerState {
    fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// The `to` label of a transition.
    fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    to: &'static str,
}

/// What [`Breaker::admit`] decided for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: make the call and report it.
    Pass,
    /// Half-open: this call is the probe; make it and report it.
    Probe,
    /// Open: do not call.
    Reject,
}

/// The breaker's metrics; clones share their values, so every registry they are registered in
/// shows the one breaker.
#[derive(Clone, Debug, Default)]
struct BreakerMetrics {
    state: Gauge,
    transitions: Family<TransitionLabels, Counter>,
}

/// A circuit breaker (see the module docs). Shared by every clone of a cache.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Consecutive transient failures that open it; 0 never opens.
    threshold: u32,
    cooldown: Duration,
    /// The origin of the millisecond clock below.
    origin: Instant,
    /// [`CLOSED`], or the time (ms since `origin`, at least 1) until which calls fail fast;
    /// the caller that moves it forward once it has passed is the probe.
    open_until: AtomicU64,
    /// Consecutive transient failures while closed.
    failures: AtomicU32,
    metrics: BreakerMetrics,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures (never when 0) for
    /// `cooldown`.
    pub(crate) fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            origin: Instant::now(),
            open_until: AtomicU64::new(CLOSED),
            failures: AtomicU32::new(0),
            metrics: BreakerMetrics::default(),
        }
    }

    /// Registers `strata_<role>_cache_breaker_state` (0 closed, 1 open, 2 half-open) and
    /// `strata_<role>_cache_breaker_transitions_total{to}` in `registry`.
    pub(crate) fn register(&self, role: &str, registry: &mut Registry) {
        registry.register(
            format!("strata_{role}_cache_breaker_state"),
            "State of the Redis cache's circuit breaker: 0 closed, 1 open, 2 half-open",
            self.metrics.state.clone(),
        );
        registry.register(
            format!("strata_{role}_cache_breaker_transitions"),
            "State changes of the Redis cache's circuit breaker",
            self.metrics.transitions.clone(),
        );
    }

    /// Whether a call may go to Redis now.
    pub(crate) fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    /// Reports how an admitted call went: `failed` for transient failures only (Redis did
    /// not answer); an error answer from a working server is a success here.
    pub(crate) fn record(&self, admission: Admission, failed: bool) {
        self.record_at(Instant::now(), admission, failed);
    }

    /// The current state.
    pub(crate) fn state(&self) -> BreakerState {
        match self.metrics.state.get() {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    fn admit_at(&self, now: Instant) -> Admission {
        let until = self.open_until.load(Ordering::Acquire);
        if until == CLOSED {
            return Admission::Pass;
        }
        let now = self.millis(now);
        if now < until {
            return Admission::Reject;
        }
        // One caller wins the right to probe; a lost probe is replaced after a cool-down.
        let next = now.saturating_add(self.cooldown_millis());
        if self
            .open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.enter(BreakerState::HalfOpen);
            Admission::Probe
        } else {
            Admission::Reject
        }
    }

    fn record_at(&self, now: Instant, admission: Admission, failed: bool) {
        match (admission, failed) {
            (Admission::Reject, _) => {}
            (Admission::Pass, false) => {
                // A load first: a healthy cache's calls then never write the shared line.
                if self.failures.load(Ordering::Relaxed) != 0 {
                    self.failures.store(0, Ordering::Relaxed);
                }
            }
            (Admission::Pass, true) => {
                let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                if self.threshold > 0 && failures >= self.threshold {
                    let until = self.millis(now).saturating_add(self.cooldown_millis());
                    if self
                        .open_until
                        .compare_exchange(CLOSED, until, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.enter(BreakerState::Open);
                        tracing::warn!(
                            failures,
                            cooldown_ms = self.cooldown_millis(),
                            "Redis cache is not answering: circuit open, calls fail fast \
                             (reads go to the store) until a probe succeeds"
                        );
                    }
                }
            }
            (Admission::Probe, false) => {
                self.failures.store(0, Ordering::Relaxed);
                self.open_until.store(CLOSED, Ordering::Release);
                self.enter(BreakerState::Closed);
                tracing::info!("Redis cache answers again: circuit closed");
            }
            (Admission::Probe, true) => {
                let until = self.millis(now).saturating_add(self.cooldown_millis());
                self.open_until.store(until, Ordering::Release);
                self.enter(BreakerState::Open);
                tracing::warn!(
                    cooldown_ms = self.cooldown_millis(),
                    "Redis cache probe failed: circuit open again"
                );
            }
        }
    }

    fn enter(&self, state: BreakerState) {
        self.metrics.state.set(state.gauge());
        self.metrics
            .transitions
            .get_or_create(&TransitionLabels { to: state.label() })
            .inc();
    }

    /// Milliseconds since `origin`, at least 1 (0 means closed).
    fn millis(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_millis();
        u64::try_from(elapsed).unwrap_or(u64::MAX).max(1)
    }

    fn cooldown_millis(&self) -> u64 {
        u64::try_from(self.cooldown.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transitions(breaker: &Breaker, to: BreakerState) -> u64 {
        breaker
            .metrics
            .transitions
            .get_or_create(&TransitionLabels { to: to.label() })
            .get()
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let breaker = Breaker::new(3, Duration::from_secs(1));
        let t = Instant::now();
        for _ in 0..2 {
            breaker.record_at(t, Admission::Pass, true);
        }
        // A success in between starts the count again.
        breaker.record_at(t, Admission::Pass, false);
        for _ in 0..2 {
            breaker.record_at(t, Admission::Pass, true);
        }
        assert_eq!(breaker.admit_at(t), Admission::Pass);
        breaker.record_at(t, Admission::Pass, true);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit_at(t), Admission::Reject);
        assert_eq!(transitions(&breaker, BreakerState::Open), 1);
    }

    #[test]
    fn one_probe_after_the_cooldown_closes_or_reopens() {
        let cooldown = Duration::from_millis(500);
        let breaker = Breaker::new(1, cooldown);
        let t0 = Instant::now();
        breaker.record_at(t0, Admission::Pass, true);
        assert_eq!(breaker.admit_at(t0 + cooldown / 2), Admission::Reject);

        let t1 = t0 + cooldown + Duration::from_millis(1);
        assert_eq!(breaker.admit_at(t1), Admission::Probe);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        // Only one probe at a time.
        assert_eq!(breaker.admit_at(t1), Admission::Reject);
        breaker.record_at(t1, Admission::Probe, true);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.admit_at(t1), Admission::Reject);

        let t2 = t1 + cooldown + Duration::from_millis(1);
        assert_eq!(breaker.admit_at(t2), Admission::Probe);
        breaker.record_at(t2, Admission::Probe, false);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.admit_at(t2), Admission::Pass);
        assert_eq!(transitions(&breaker, BreakerState::Open), 2);
        assert_eq!(transitions(&breaker, BreakerState::HalfOpen), 2);
        assert_eq!(transitions(&breaker, BreakerState::Closed), 1);
    }

    #[test]
    fn a_lost_probe_is_replaced_after_a_cooldown() {
        let cooldown = Duration::from_millis(100);
        let breaker = Breaker::new(1, cooldown);
        let t0 = Instant::now();
        breaker.record_at(t0, Admission::Pass, true);
        let t1 = t0 + cooldown * 2;
        assert_eq!(breaker.admit_at(t1), Admission::Probe);
        // That probe's caller went away without reporting.
        assert_eq!(breaker.admit_at(t1 + cooldown / 2), Admission::Reject);
        assert_eq!(breaker.admit_at(t1 + cooldown * 2), Admission::Probe);
    }

    #[test]
    fn a_zero_threshold_never_opens() {
        let breaker = Breaker::new(0, Duration::from_secs(1));
        let t = Instant::now();
        for _ in 0..100 {
            breaker.record_at(t, Admission::Pass, true);
        }
        assert_eq!(breaker.admit_at(t), Admission::Pass);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
