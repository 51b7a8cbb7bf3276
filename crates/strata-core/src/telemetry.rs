//! Logging and metrics set-up shared by every role.
//!
//! Logs are `tracing` events written as one JSON object per line (or pretty for a terminal).
//! Metrics use one `prometheus_client` registry per role instance, so several instances in one
//! process (`strata up`) each report their own figures on their own `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global log subscriber. Later calls (tests starting several roles) are no-ops.
pub fn init_logging(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// A finished metrics registry, shared by the handlers that render it.
pub type SharedRegistry = Arc<Registry>;

/// Renders a registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail; an encoding error would be a bug in a metric type.
    if let Err(e) = encode(&mut out, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
    }
    out
}
