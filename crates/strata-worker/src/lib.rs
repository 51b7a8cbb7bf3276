//! strata-worker: the event consumers (order pipeline, notifications). Workers share a durable
//! subscription on the bus, so adding one spreads the work; their handlers are idempotent.
//!
//! This first cut serves only the operational endpoints (`/healthz`, `/readyz`, `/metrics`);
//! the consumers come later on the same [`Worker`].

#![forbid(unsafe_code)]

mod error;
mod worker;

pub use crate::error::WorkerError;
pub use crate::worker::{Worker, WorkerSettings};

/// The role name: the `role` of `/healthz` and the `strata_worker_…` prefix of every metric.
pub const ROLE: &str = "worker";
