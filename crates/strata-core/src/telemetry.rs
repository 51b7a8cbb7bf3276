//! Logging and metrics set-up shared by every role.
//!
//! Logs are `tracing` events: human-readable lines on a terminal, one JSON object per line
//! elsewhere (`log.format`). Requests are not logged one by one unless the access log is
//! turned on (`log.access_sample`): at the default level a log holds what happened to the
//! system, and the metrics count the requests. Metrics use one `prometheus_client` registry
//! per role instance, so several instances in one process (`strata up`) each report their own
//! figures on their own `/metrics`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global log subscriber and the access log's sampling. Later calls (tests
/// starting several roles) are no-ops for the subscriber.
pub fn init_logging(config: &LogConfig) {
    set_access_sample(config.access_sample);
    let filter = EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match resolve_format(config.format, terminal) {
        LogFormat::Json | LogFormat::Auto => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_ansi(terminal).try_init(),
    };
}

/// The format `format` means when stderr is (or is not) a terminal.
pub fn resolve_format(format: LogFormat, terminal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if terminal => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        other => other,
    }
}

/// The access log's share, as 1 in `ACCESS_PERIOD` requests: 0 keeps none, 1 every one.
/// Kept as a period rather than a random draw so the hot path costs one relaxed atomic load
/// when the log is off, and a sample is spread evenly over time when it is on.
static ACCESS_PERIOD: AtomicU64 = AtomicU64::new(0);
/// Requests seen while sampling, to pick every `ACCESS_PERIOD`-th.
static ACCESS_SEEN: AtomicU64 = AtomicU64::new(0);

/// Sets the share of requests the access log keeps (0.0 none … 1.0 all); a share in between
/// keeps one request in `round(1 / share)`.
pub fn set_access_sample(share: f64) {
    let period = if share.is_nan() || share <= 0.0 {
        0
    } else if share >= 1.0 {
        1
    } else {
        // In (1, u64::MAX) for a share in (0, 1); the saturating cast bounds the rest.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let period = (1.0 / share).round() as u64;
        period.max(1)
    };
    ACCESS_PERIOD.store(period, Ordering::Relaxed);
}

/// Whether this request goes to the access log. Every role asks before writing its request
/// line (the gateway's `strata_gateway::access`, the instances' `strata_core::access`), so one
/// key turns the access log on and off everywhere.
pub fn access_sampled() -> bool {
    match ACCESS_PERIOD.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        period => ACCESS_SEEN
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(period),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_pretty_on_a_terminal_and_json_elsewhere() {
        assert_eq!(resolve_format(LogFormat::Auto, true), LogFormat::Pretty);
        assert_eq!(resolve_format(LogFormat::Auto, false), LogFormat::Json);
        assert_eq!(resolve_format(LogFormat::Json, true), LogFormat::Json);
        assert_eq!(resolve_format(LogFormat::Pretty, false), LogFormat::Pretty);
    }

    #[test]
    fn the_access_log_keeps_its_share() {
        // One test owns the global: the shares are checked in sequence.
        set_access_sample(0.0);
        assert!((0..1000).all(|_| !access_sampled()));
        set_access_sample(1.0);
        assert!((0..1000).all(|_| access_sampled()));
        set_access_sample(0.1);
        let kept = (0..1000).filter(|_| access_sampled()).count();
        assert_eq!(kept, 100);
        set_access_sample(0.0);
    }
}
