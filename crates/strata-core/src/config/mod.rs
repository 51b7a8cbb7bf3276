//! Typed configuration: built-in defaults, then a TOML file, then `STRATA_*` environment
//! variables, then command-line flags; each layer overrides the one before.
//!
//! Each key is declared once, in the section that owns it, with [`config_section!`](crate::config_section):
//! its doc comment, whether a reload applies it, its name, type, default and parser. The
//! variables, the unknown-key check, the example `strata.toml`, the README's table and the
//! "needs a restart" list all follow from that declaration. This module holds the machinery
//! and the sections that belong to no role (`[log]`, `[store]`, `[cache]`, `[bus]`, `[objects]`); each role's
//! sections live with the role, and the binary composes the whole configuration from them.
//! Problems are collected and reported together, each naming its key, so a broken deployment
//! is fixed in one round trip.

mod backends;
mod docs;
mod load;
mod log;
mod problem;
mod secret;
mod section;

pub use backends::{BusConfig, CacheConfig, ObjectsConfig, StoreConfig, valid_name};
pub use docs::{example_toml, markdown_table, summary};
pub use load::{FROM_FLAG, env_var, keys, set};
pub use log::{LogConfig, LogFormat};
pub use problem::{ConfigError, Problem};
pub use secret::Secret;
pub use section::{Checks, Item, ItemKind, Reload, Section, join, parse, passes, to_value};

/// Environment variables that start with this prefix are configuration overrides.
pub const ENV_PREFIX: &str = "STRATA_";

#[cfg(test)]
mod tests;
