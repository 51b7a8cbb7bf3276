//! The chat role's own metrics (`strata_chat_…`), next to the HTTP ones every role has.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Counters, gauges and histograms of one chat instance. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub(crate) struct ChatMetrics {
    pub connections: Gauge,
    pub messages_stored: Counter,
    pub fanned_out: Counter,
    pub slow_closed: Counter,
    pub rate_limited: Counter,
    /// Seconds from a batch's start to its commit: what each sender waits for its `ack`
    /// beyond its wait in the queue.
    pub commit_seconds: Histogram,
    /// Messages per committed batch.
    pub commit_batch: Histogram,
    /// Seconds to put one bus message on the bus (and, on JetStream, have it acknowledged).
    pub publish_seconds: Histogram,
}

impl ChatMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        // 0.5 ms to ~8 s, as the HTTP request histograms.
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 15));
        let metrics = Self {
            connections: Gauge::default(),
            messages_stored: Counter::default(),
            fanned_out: Counter::default(),
            slow_closed: Counter::default(),
            rate_limited: Counter::default(),
            commit_seconds: seconds(),
            // 1 to 256 (the largest batch).
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            publish_seconds: seconds(),
        };
        registry.register(
            "strata_chat_connections",
            "Open WebSocket connections",
            metrics.connections.clone(),
        );
        registry.register(
            "strata_chat_messages_stored",
            "Messages stored by this instance",
            metrics.messages_stored.clone(),
        );
        registry.register(
            "strata_chat_messages_fanned_out",
            "Messages offered to this instance's members",
            metrics.fanned_out.clone(),
        );
        registry.register(
            "strata_chat_slow_closed",
            "Connections closed because their outgoing buffer was full",
            metrics.slow_closed.clone(),
        );
        registry.register(
            "strata_chat_rate_limited",
            "Frames refused by the per-connection rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "strata_chat_commit_seconds",
            "Time to store one batch of messages (one transaction)",
            metrics.commit_seconds.clone(),
        );
        registry.register(
            "strata_chat_commit_batch_messages",
            "Messages per stored batch",
            metrics.commit_batch.clone(),
        );
        registry.register(
            "strata_chat_publish_seconds",
            "Time to publish one bus message of stored messages",
            metrics.publish_seconds.clone(),
        );
        metrics
    }
}
