//! Configuration problems: each names its key and where its value came from, and all of them
//! are reported together.

use std::fmt;

/// One configuration problem, naming its key and, when known, where the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// A dotted key, a `STRATA_*` variable, or a file's `path:line:column` (a syntax error).
    pub key: String,
    pub message: String,
    /// Where the value was given: `strata.toml:3:1`, `STRATA_API_INSTANCES`, `--api`; `None`
    /// for a default, or a rule between keys none of which was given.
    pub origin: Option<String>,
}

impl Problem {
    /// A problem of `key` (a dotted key, a `STRATA_*` variable or a file path).
    pub fn new(key: &str, message: &str) -> Self {
        Self {
            key: key.to_owned(),
            message: message.to_owned(),
            origin: None,
        }
    }

    /// The same problem, saying where the value was given.
    #[must_use]
    pub fn at(mut self, origin: &str) -> Self {
        self.origin = Some(origin.to_owned());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) if *origin != self.key => {
                write!(f, "{}: {} (from {origin})", self.key, self.message)
            }
            _ => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Why a configuration could not be loaded. Every problem, a file that cannot be read among
/// them, is one [`Problem`] of [`ConfigError::Invalid`], so all are reported together.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("invalid configuration ({} problem{}):\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}
