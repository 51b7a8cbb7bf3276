//! The gateway's Prometheus metrics, `strata_gateway_<what>_<unit>`, and per-pool and
//! per-instance handles created when a pool is built.
//!
//! `Family::get_or_create` hashes the label set and takes a read lock; the hot path instead
//! holds cloned handles (an `Arc` around an atomic), so counting a request is one atomic add.
//! Status codes are not known in advance, so each instance has a table with one lazily filled
//! slot per status: the first 200 of an instance goes through the family, every later one is a
//! `OnceLock` read and an atomic add. The duration histogram is this module's own
//! [`DurationHistogram`]: prometheus-client's `Histogram` takes a mutex per observation, which
//! every worker thread would contend on. Each instance also keeps one, not exported (one
//! histogram per pool keeps `/metrics` small): the operations view reads its p99 over the last
//! second from the difference of two [`BucketCounts`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::error::UpstreamErrorKind;
use crate::health::HealthMetrics;

/// The `instance` label of responses the gateway produced without an instance (503, 413).
pub const NO_INSTANCE: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    pool: String,
    instance: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    pool: String,
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    pool: String,
    instance: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    pool: String,
    instance: String,
    kind: &'static str,
}

/// The metric families of one gateway, registered in its registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<ResponseLabels, Counter>,
    duration: Family<PoolLabels, DurationHistogram>,
    in_flight: Family<InstanceLabels, Gauge>,
    upstream_errors: Family<ErrorLabels, Counter>,
    retries: Family<PoolLabels, Counter>,
    retries_denied: Family<PoolLabels, Counter>,
    instance_up: Family<InstanceLabels, Gauge>,
    ejections: Family<InstanceLabels, Counter>,
    health_checks: Family<CheckLabels, Counter>,
    websockets_open: Family<InstanceLabels, Gauge>,
    websockets: Family<InstanceLabels, Counter>,
    batches: Family<InstanceLabels, Counter>,
    batched_requests: Family<InstanceLabels, Counter>,
    tls_expiry: Gauge,
}

impl Metrics {
    /// Registers every gateway metric in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::default(),
            in_flight: Family::default(),
            upstream_errors: Family::default(),
            retries: Family::default(),
            retries_denied: Family::default(),
            instance_up: Family::default(),
            ejections: Family::default(),
            health_checks: Family::default(),
            websockets_open: Family::default(),
            websockets: Family::default(),
            batches: Family::default(),
            batched_requests: Family::default(),
            tls_expiry: Gauge::default(),
        };
        registry.register(
            "strata_gateway_requests",
            "Responses sent to clients, by pool, serving instance and status",
            metrics.requests.clone(),
        );
        registry.register(
            "strata_gateway_request_duration_seconds",
            "Time from receiving a request to sending the response head",
            metrics.duration.clone(),
        );
        registry.register(
            "strata_gateway_in_flight",
            "Requests being served by an instance, response bodies included",
            metrics.in_flight.clone(),
        );
        registry.register(
            "strata_gateway_upstream_errors",
            "Failed attempts to reach an instance, by kind",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "strata_gateway_retries",
            "Requests sent to a second instance after the first failed",
            metrics.retries.clone(),
        );
        registry.register(
            "strata_gateway_retries_denied",
            "Retries not attempted because the pool's retry budget was spent",
            metrics.retries_denied.clone(),
        );
        registry.register(
            "strata_gateway_instance_up",
            "1 while an instance takes requests (passing checks, not ejected), else 0",
            metrics.instance_up.clone(),
        );
        registry.register(
            "strata_gateway_ejections",
            "Times an instance was ejected after failed requests",
            metrics.ejections.clone(),
        );
        registry.register(
            "strata_gateway_health_checks",
            "Active health checks, by result (success, failure)",
            metrics.health_checks.clone(),
        );
        registry.register(
            "strata_gateway_websockets_open",
            "WebSocket tunnels open now, by pool and instance",
            metrics.websockets_open.clone(),
        );
        registry.register(
            "strata_gateway_websockets",
            "WebSocket tunnels opened (upgrades the instance accepted)",
            metrics.websockets.clone(),
        );
        registry.register(
            "strata_gateway_batches",
            "Batches of pipelined requests written to an instance, one write each",
            metrics.batches.clone(),
        );
        registry.register(
            "strata_gateway_batched_requests",
            "Requests sent in batches; divided by strata_gateway_batches, the mean batch size",
            metrics.batched_requests.clone(),
        );
        registry.register(
            "strata_gateway_tls_cert_expiry_timestamp_seconds",
            "When the public listener's TLS certificate expires (its notAfter, Unix seconds); 0 without TLS",
            metrics.tls_expiry.clone(),
        );
        metrics
    }

    /// The gauge of the TLS certificate's expiry, set by [`crate::tls::Tls`] at each load.
    pub fn tls_expiry(&self) -> Gauge {
        self.tls_expiry.clone()
    }

    /// Handles for one pool.
    pub fn pool(&self, pool: &str) -> PoolMetrics {
        let labels = PoolLabels {
            pool: pool.to_owned(),
        };
        PoolMetrics {
            duration: self.duration.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
            retries_denied: self.retries_denied.get_or_create(&labels).clone(),
            responses: StatusCounters::new(self.requests.clone(), pool, NO_INSTANCE),
        }
    }

    /// Handles for one instance of `pool`, labelled with its `host:port`.
    pub fn instance(&self, pool: &str, instance: &str) -> InstanceMetrics {
        let labels = InstanceLabels {
            pool: pool.to_owned(),
            instance: instance.to_owned(),
        };
        let errors = UpstreamErrorKind::ALL.map(|kind| {
            let labels = ErrorLabels {
                pool: pool.to_owned(),
                instance: instance.to_owned(),
                kind: kind.as_str(),
            };
            self.upstream_errors.get_or_create(&labels).clone()
        });
        let check = |result| {
            let labels = CheckLabels {
                pool: pool.to_owned(),
                instance: instance.to_owned(),
                result,
            };
            self.health_checks.get_or_create(&labels).clone()
        };
        let health = HealthMetrics {
            up: self.instance_up.get_or_create(&labels).clone(),
            ejections: self.ejections.get_or_create(&labels).clone(),
            checks_passed: check("success"),
            checks_failed: check("failure"),
        };
        InstanceMetrics {
            batches: BatchCounters {
                batches: self.batches.get_or_create(&labels).clone(),
                requests: self.batched_requests.get_or_create(&labels).clone(),
            },
            websockets_open: self.websockets_open.get_or_create(&labels).clone(),
            websockets: self.websockets.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            responses: StatusCounters::new(self.requests.clone(), pool, instance),
            duration: DurationHistogram::default(),
            errors,
            health,
        }
    }
}

impl Metrics {
    /// Deletes every series of the instance `instance` of `pool` (whose handles are
    /// `handles`) from every family: an instance that left must not stay in `/metrics`, or
    /// instances churning through DNS (pods replaced) would grow it without bound.
    pub fn forget_instance(&self, pool: &str, instance: &str, handles: &InstanceMetrics) {
        let labels = InstanceLabels {
            pool: pool.to_owned(),
            instance: instance.to_owned(),
        };
        for family in [&self.in_flight, &self.instance_up, &self.websockets_open] {
            family.remove(&labels);
        }
        for family in [
            &self.ejections,
            &self.websockets,
            &self.batches,
            &self.batched_requests,
        ] {
            family.remove(&labels);
        }
        for kind in UpstreamErrorKind::ALL {
            self.upstream_errors.remove(&ErrorLabels {
                pool: pool.to_owned(),
                instance: instance.to_owned(),
                kind: kind.as_str(),
            });
        }
        for result in ["success", "failure"] {
            self.health_checks.remove(&CheckLabels {
                pool: pool.to_owned(),
                instance: instance.to_owned(),
                result,
            });
        }
        handles.responses.forget();
    }
}

/// Metric handles of one pool.
#[derive(Debug)]
pub struct PoolMetrics {
    /// `strata_gateway_request_duration_seconds{pool}`.
    pub duration: DurationHistogram,
    /// `strata_gateway_retries_total{pool}`.
    pub retries: Counter,
    /// `strata_gateway_retries_denied_total{pool}`: retries the budget refused.
    pub retries_denied: Counter,
    /// `strata_gateway_requests_total{pool, instance="none"}`: answers the gateway gave itself.
    pub responses: StatusCounters,
}

/// Metric handles of one instance.
#[derive(Debug)]
pub struct InstanceMetrics {
    /// `strata_gateway_in_flight{pool, instance}`.
    pub in_flight: Gauge,
    /// `strata_gateway_requests_total{pool, instance, status}`.
    pub responses: StatusCounters,
    /// Time to the response head of the requests this instance served; read by the
    /// operations view, not exported.
    pub duration: DurationHistogram,
    errors: [Counter; UpstreamErrorKind::ALL.len()],
    /// Health gauges and counters, moved into the instance's health state.
    pub health: HealthMetrics,
    /// `strata_gateway_websockets_open{pool, instance}`.
    pub websockets_open: Gauge,
    /// `strata_gateway_websockets_total{pool, instance}`.
    pub websockets: Counter,
    /// Pipelined batches to the instance, moved into its connections.
    pub batches: BatchCounters,
}

/// `strata_gateway_batches_total` and `strata_gateway_batched_requests_total` of one instance.
#[derive(Debug, Clone, Default)]
pub struct BatchCounters {
    /// Batches written.
    pub batches: Counter,
    /// Requests they carried.
    pub requests: Counter,
}

impl InstanceMetrics {
    /// Counts one failed attempt on this instance.
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.errors[kind.index()].inc();
    }

    /// Failed attempts of `kind` so far.
    pub fn upstream_errors(&self, kind: UpstreamErrorKind) -> u64 {
        self.errors[kind.index()].get()
    }

    /// What went wrong on this instance so far: failed attempts of every kind and 5xx
    /// responses it sent.
    pub fn errors(&self) -> u64 {
        let failed: u64 = self.errors.iter().map(Counter::get).sum();
        failed + self.responses.count(500..=599)
    }
}

/// Finite buckets of [`DurationHistogram`]: 0.5 ms · 2^i for i in 0..15, so 0.5 ms … ~8.2 s,
/// the scale of the roles' own histograms, so the two line up on one dashboard.
const DURATION_BUCKETS: usize = 15;
const FIRST_BOUND_NANOS: u64 = 500_000;

/// A histogram of durations that never locks: one atomic counter per bucket and an atomic sum
/// of nanoseconds (exact, unlike a float sum updated by compare-and-swap). A scrape reads the
/// atomics one by one, so it may see an observation's bucket before its sum: Prometheus
/// tolerates that skew, a per-request mutex would cost every request.
#[derive(Clone, Debug, Default)]
pub struct DurationHistogram {
    inner: Arc<DurationBuckets>,
}

#[derive(Debug, Default)]
struct DurationBuckets {
    /// Per-bucket (not cumulative) counts; the last one is `+Inf`.
    counts: [AtomicU64; DURATION_BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = (0..DURATION_BUCKETS)
            .find(|&i| nanos <= bound_nanos(i))
            .unwrap_or(DURATION_BUCKETS);
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The per-bucket counts now.
    pub fn buckets(&self) -> BucketCounts {
        BucketCounts(std::array::from_fn(|i| {
            self.inner.counts[i].load(Ordering::Relaxed)
        }))
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// The per-bucket counts of a [`DurationHistogram`] at one moment: the difference of two is
/// the histogram of what was observed between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketCounts([u64; DURATION_BUCKETS + 1]);

impl BucketCounts {
    /// The `q` quantile (0 < q ≤ 1) of the observations made between `earlier` and `self`, as
    /// the upper bound of the bucket it falls in (so at most twice the true value: buckets
    /// double); the last finite bound for the `+Inf` bucket. `None` when nothing was observed.
    pub fn quantile_since(&self, earlier: &BucketCounts, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .0
            .iter()
            .zip(earlier.0.iter())
            .map(|(now, before)| now.saturating_sub(*before))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: ceil(q × total), at least the first.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let bucket = counts
            .iter()
            .position(|&n| {
                seen += n;
                seen >= rank
            })
            .unwrap_or(DURATION_BUCKETS);
        Some(Duration::from_nanos(bound_nanos(
            bucket.min(DURATION_BUCKETS - 1),
        )))
    }
}

/// Upper bound of finite bucket `i`, in nanoseconds.
fn bound_nanos(i: usize) -> u64 {
    FIRST_BOUND_NANOS << i
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = self
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let buckets: Vec<(f64, u64)> = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let bound = if i < DURATION_BUCKETS {
                    bound_nanos(i) as f64 / 1e9
                } else {
                    f64::INFINITY
                };
                (bound, n)
            })
            .collect();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Lowest and highest status a response can carry.
const STATUS_MIN: u16 = 100;
const STATUS_MAX: u16 = 999;

/// Per-status response counters of one `(pool, instance)`, created on first use of a status.
pub struct StatusCounters {
    family: Family<ResponseLabels, Counter>,
    pool: Arc<str>,
    instance: Arc<str>,
    slots: Box<[OnceLock<Counter>]>,
}

impl std::fmt::Debug for StatusCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusCounters")
            .field("pool", &self.pool)
            .field("instance", &self.instance)
            .finish()
    }
}

impl StatusCounters {
    fn new(family: Family<ResponseLabels, Counter>, pool: &str, instance: &str) -> Self {
        let slots = (STATUS_MIN..=STATUS_MAX).map(|_| OnceLock::new()).collect();
        Self {
            family,
            pool: pool.into(),
            instance: instance.into(),
            slots,
        }
    }

    /// Deletes the series of every status counted so far from the family.
    fn forget(&self) {
        for (code, slot) in (STATUS_MIN..=STATUS_MAX).zip(self.slots.iter()) {
            if slot.get().is_some() {
                self.family.remove(&ResponseLabels {
                    pool: self.pool.to_string(),
                    instance: self.instance.to_string(),
                    status: code,
                });
            }
        }
    }

    /// Responses counted so far whose status is in `statuses`.
    pub fn count(&self, statuses: std::ops::RangeInclusive<u16>) -> u64 {
        (STATUS_MIN..=STATUS_MAX)
            .zip(self.slots.iter())
            .filter(|(code, _)| statuses.contains(code))
            .filter_map(|(_, slot)| slot.get().map(Counter::get))
            .sum()
    }

    /// Counts one response with `status`.
    pub fn inc(&self, status: StatusCode) {
        let code = status.as_u16();
        // StatusCode guarantees 100..=999, so the slot always exists.
        if let Some(slot) = self.slots.get(usize::from(code.saturating_sub(STATUS_MIN))) {
            slot.get_or_init(|| {
                let labels = ResponseLabels {
                    pool: self.pool.to_string(),
                    instance: self.instance.to_string(),
                    status: code,
                };
                self.family.get_or_create(&labels).clone()
            })
            .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_land_in_the_first_bucket_whose_bound_holds_them() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::ZERO);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_micros(501));
        histogram.observe(Duration::from_secs(3600));
        let counts: Vec<u64> = histogram
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[1], 1);
        assert_eq!(counts[DURATION_BUCKETS], 1);
        assert_eq!(histogram.count(), 4);
    }

    #[test]
    fn quantiles_come_from_the_buckets_observed_since_the_earlier_counts() {
        let histogram = DurationHistogram::default();
        for _ in 0..50 {
            histogram.observe(Duration::from_millis(100));
        }
        let earlier = histogram.buckets();
        assert_eq!(histogram.buckets().quantile_since(&earlier, 0.99), None);
        for _ in 0..98 {
            histogram.observe(Duration::from_micros(300));
        }
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(3));
        let now = histogram.buckets();
        // 100 observations since `earlier`: the 99th is one of the two 3 ms ones (bucket
        // 2.048..4.096 ms); the 100 ms ones before `earlier` do not count.
        assert_eq!(
            now.quantile_since(&earlier, 0.99),
            Some(Duration::from_nanos(bound_nanos(3)))
        );
        assert_eq!(
            now.quantile_since(&earlier, 0.5),
            Some(Duration::from_nanos(bound_nanos(0)))
        );
        histogram.observe(Duration::from_secs(3600));
        assert_eq!(
            histogram.buckets().quantile_since(&now, 0.99),
            Some(Duration::from_nanos(bound_nanos(DURATION_BUCKETS - 1)))
        );
    }

    #[test]
    fn status_counts_sum_a_range_of_statuses() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let instance = metrics.instance("api", "127.0.0.1:8101");
        for status in [200, 200, 500, 503, 404] {
            instance
                .responses
                .inc(StatusCode::from_u16(status).unwrap());
        }
        instance.upstream_error(UpstreamErrorKind::Connect);
        assert_eq!(instance.responses.count(500..=599), 2);
        assert_eq!(instance.responses.count(200..=299), 2);
        assert_eq!(instance.errors(), 3);
    }

    #[test]
    fn handles_count_into_the_registered_families() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let pool = metrics.pool("api");
        let instance = metrics.instance("api", "127.0.0.1:8101");
        instance.responses.inc(StatusCode::OK);
        instance.responses.inc(StatusCode::OK);
        instance.in_flight.inc();
        instance.upstream_error(UpstreamErrorKind::Reset);
        pool.responses.inc(StatusCode::SERVICE_UNAVAILABLE);
        pool.retries.inc();
        pool.retries_denied.inc();
        instance.health.up.set(1);
        instance.health.ejections.inc();
        instance.health.checks_failed.inc();
        pool.duration.observe(Duration::from_millis(3));
        pool.duration.observe(Duration::from_secs(60));
        let text = strata_core::telemetry::render(&registry);
        for line in [
            r#"strata_gateway_requests_total{pool="api",instance="127.0.0.1:8101",status="200"} 2"#,
            r#"strata_gateway_requests_total{pool="api",instance="none",status="503"} 1"#,
            r#"strata_gateway_in_flight{pool="api",instance="127.0.0.1:8101"} 1"#,
            r#"strata_gateway_upstream_errors_total{pool="api",instance="127.0.0.1:8101",kind="reset"} 1"#,
            r#"strata_gateway_retries_total{pool="api"} 1"#,
            r#"strata_gateway_retries_denied_total{pool="api"} 1"#,
            r#"strata_gateway_instance_up{pool="api",instance="127.0.0.1:8101"} 1"#,
            r#"strata_gateway_ejections_total{pool="api",instance="127.0.0.1:8101"} 1"#,
            r#"strata_gateway_health_checks_total{pool="api",instance="127.0.0.1:8101",result="failure"} 1"#,
            r#"strata_gateway_health_checks_total{pool="api",instance="127.0.0.1:8101",result="success"} 0"#,
            r#"strata_gateway_request_duration_seconds_count{pool="api"} 2"#,
            r#"strata_gateway_request_duration_seconds_sum{pool="api"} 60.003"#,
            r#"strata_gateway_request_duration_seconds_bucket{le="0.002",pool="api"} 0"#,
            r#"strata_gateway_request_duration_seconds_bucket{le="0.004",pool="api"} 1"#,
            r#"strata_gateway_request_duration_seconds_bucket{le="8.192",pool="api"} 1"#,
            r#"strata_gateway_request_duration_seconds_bucket{le="+Inf",pool="api"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
