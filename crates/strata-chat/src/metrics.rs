//! The chat role's own metrics (`strata_chat_…`), next to the HTTP ones every role has.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Counters and gauges of one chat instance. Cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub(crate) struct ChatMetrics {
    pub connections: Gauge,
    pub messages_stored: Counter,
    pub fanned_out: Counter,
    pub slow_closed: Counter,
    pub rate_limited: Counter,
}

impl ChatMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
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
        metrics
    }
}
