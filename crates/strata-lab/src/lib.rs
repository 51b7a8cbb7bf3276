//! strata-lab: a small, honest HTTP/1.1 load generator (`strata bench`) and, later, the
//! stateful-vs-stateless experiment.
//!
//! [`run`] drives a [`LoadSpec`]: `concurrency` workers, each holding one keep-alive connection
//! (hyper's `client::conn::http1`, no pool in between), issue requests back to back until the
//! time bound or the request bound is reached, then report counts, failures by kind, statuses,
//! per-instance counts (from `X-Strata-Instance`) and latency percentiles ([`LoadReport`]).
//!
//! It is a closed loop: a worker sends its next request only when the previous one finished, so
//! the latencies are service times at that concurrency; they are not corrected for coordinated
//! omission, and the report says so by reporting the offered concurrency next to them.

#![forbid(unsafe_code)]

mod error;
mod failure;
pub mod histogram;
mod load;
mod report;
mod spec;

pub use error::LabError;
pub use failure::Failure;
pub use histogram::Histogram;
pub use load::{run, run_until};
pub use report::{Latency, LoadReport};
pub use spec::{LoadSpec, MAX_CONCURRENCY, MAX_DURATION, MAX_REQUESTS};
