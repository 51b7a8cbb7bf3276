//! strata-core: configuration, telemetry, shutdown and the domain types every role shares.
//!
//! Nothing here knows about a particular role; roles depend on this crate, never on each other.

pub mod config;
pub mod domain;
pub mod http;
pub mod shutdown;
pub mod telemetry;
pub mod testkit;

pub use config::ConfigError;
pub use shutdown::Shutdown;
