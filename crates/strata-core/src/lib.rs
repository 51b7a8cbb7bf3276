//! strata-core: configuration, telemetry, shutdown, the domain types, the session tokens and
//! the HTTP role scaffolding every role shares.
//!
//! Nothing here knows about a particular role; roles depend on this crate, never on each other.

pub mod auth;
pub mod config;
pub mod domain;
pub mod held;
pub mod http;
#[cfg(feature = "testing")]
pub mod ops_checks;
pub mod random;
pub mod ring;
pub mod serve;
pub mod shutdown;
pub mod table;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testkit;
#[cfg(feature = "testing")]
pub mod wait;

pub use config::ConfigError;
pub use shutdown::Shutdown;
