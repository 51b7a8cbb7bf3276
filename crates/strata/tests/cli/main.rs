//! Integration tests of the `strata` binary: each test spawns the real (debug) binary, on
//! ports chosen free, with its own temporary data directory, and kills it when dropped.

// Helpers outside `#[test]` functions panic on a broken test machine, as the tests do.
#![allow(clippy::unwrap_used)]

mod backup;
mod bench;
mod carts;
mod chat;
mod config;
mod events;
mod harness;
mod health;
mod images;
mod lab;
mod logs;
mod metric_names;
mod ops;
mod ports;
mod schemathesis;
mod serve;
mod shutdown;
mod traces;
mod up;
