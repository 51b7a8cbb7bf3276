//! The `[log]` section: how logs are written, and which requests the access log keeps.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::section::{Checks, parse};

crate::config_section! {
    /// How logs are written (`[log]`, `STRATA_LOG_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct LogConfig {
        /// A `tracing` filter (`info`, `strata_gateway=debug,info`). Default `info`: start-up,
        /// shutdown and state changes (an instance down, a breaker open), nothing per request or
        /// per health check; requests are in the access log (`access_sample`).
        restart level: String = "info".into() => parse::verbatim,
        /// `auto` (default: human-readable lines when stderr is a terminal, JSON otherwise),
        /// `json` (one object per line, for collectors) or `pretty` (for a terminal).
        restart format: LogFormat = LogFormat::Auto,
        /// Share of requests written to the access log, from 0.0 (none) to 1.0 (every one):
        /// one line per request at the gateway (target `strata_gateway::access`) and at the
        /// instance that served it (target `strata_core::access`), and one per event a worker
        /// handles (target `strata_worker::access`), at level `info`, each with its trace id.
        /// Health checks and metrics scrapes are never in it. Default 0.0: a line per request costs
        /// the gateway about two thirds of its throughput, and the metrics count every
        /// request anyway; 0.01 keeps a sample of one request in a hundred.
        restart access_sample: f64 = 0.0;
            check |share| (0.0..=1.0).contains(share), "must be between 0.0 and 1.0",
    }
    validate = LogConfig::check;
}

impl LogConfig {
    fn check(&self, checks: &mut Checks<'_>) {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.level) {
            checks.problem("level", &e.to_string());
        }
    }
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `Pretty` when stderr is a terminal, `Json` otherwise.
    Auto,
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!(
                "expected `auto`, `json` or `pretty`, got `{other}`"
            )),
        }
    }
}
