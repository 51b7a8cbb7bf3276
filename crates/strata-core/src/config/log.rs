//! The `[log]` section: how logs are written.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::section::{Checks, parse};

crate::config_section! {
    /// How logs are written (`[log]`, `STRATA_LOG_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct LogConfig {
        /// A `tracing` filter (`info`, `strata_gateway=debug,info`). Default `info`: one line per
        /// request and lifecycle event, nothing per byte.
        restart level: String = "info".into() => parse::verbatim,
        /// `json` (default: one object per line, for collectors) or `pretty` (for a terminal).
        restart format: LogFormat = LogFormat::Json,
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
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}
