//! The worker's own metrics (`strata_worker_…`), next to the HTTP ones every role has.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `handler` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabel {
    pub handler: String,
}

/// `handler` and `outcome` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub handler: String,
    /// `done`, `duplicate`, `skipped`, `retried` or `dead_lettered`.
    pub outcome: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms … about 16 s, doubling: handlers take milliseconds, retries and outages far more.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 15,
    ))
}

/// Counters and gauges of one worker. Cheap to clone (shared atomics).
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    pub events: Family<OutcomeLabels, Counter>,
    pub failures: Family<HandlerLabel, Counter>,
    pub processing: Family<HandlerLabel, Histogram, fn() -> Histogram>,
    pub lag: Family<HandlerLabel, Gauge>,
    pub ack_pending: Family<HandlerLabel, Gauge>,
    pub dead_letters: Gauge,
    pub relayed: Counter,
    pub outbox_pending: Gauge,
    pub outbox_oldest_age: Gauge,
}

impl WorkerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            events: Family::default(),
            failures: Family::default(),
            processing: Family::new_with_constructor(latency_histogram),
            lag: Family::default(),
            ack_pending: Family::default(),
            dead_letters: Gauge::default(),
            relayed: Counter::default(),
            outbox_pending: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
        };
        registry.register(
            "strata_worker_events",
            "Event deliveries handled, by handler and outcome",
            metrics.events.clone(),
        );
        registry.register(
            "strata_worker_handler_failures",
            "Deliveries a handler failed (each retried or dead-lettered)",
            metrics.failures.clone(),
        );
        registry.register(
            "strata_worker_processing_seconds",
            "Time to handle one delivery, by handler",
            metrics.processing.clone(),
        );
        registry.register(
            "strata_worker_consumer_lag",
            "Events of a handler's stream not yet delivered to it",
            metrics.lag.clone(),
        );
        registry.register(
            "strata_worker_consumer_ack_pending",
            "Events delivered to a handler and not yet acknowledged",
            metrics.ack_pending.clone(),
        );
        registry.register(
            "strata_worker_dead_letters",
            "Events in the dead-letter stream",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "strata_worker_outbox_relayed",
            "Outbox events this worker published on the bus",
            metrics.relayed.clone(),
        );
        registry.register(
            "strata_worker_outbox_pending",
            "Outbox events not yet published",
            metrics.outbox_pending.clone(),
        );
        registry.register(
            "strata_worker_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event",
            metrics.outbox_oldest_age.clone(),
        );
        metrics
    }

    pub fn outcome(&self, handler: &str, outcome: &'static str) {
        self.events
            .get_or_create(&OutcomeLabels {
                handler: handler.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn handler(handler: &str) -> HandlerLabel {
        HandlerLabel {
            handler: handler.to_owned(),
        }
    }
}
