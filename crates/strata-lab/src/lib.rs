//! strata-lab: a load generator worth trusting (`strata bench`), and the stateful-vs-stateless
//! experiment (`strata lab`, [`experiment`]).
//!
//! [`run`] drives a [`LoadSpec`] against a target over keep-alive HTTP/1.1 connections (a
//! small client of its own, [`conn`](crate), one task per connection) and reports counts,
//! failures by kind, statuses, per-instance counts (from `X-Strata-Instance`), per-operation
//! figures and HdrHistogram latency percentiles ([`LoadReport`]).
//!
//! Two paces ([`Pace`]): a **closed loop** (each connection sends its next request when the
//! previous one is answered: the request rate a server sustains at that concurrency), and an
//! **open loop** (requests on a schedule of their own, a constant or stepped rate: a slow
//! server cannot slow the schedule, and latency counts from each request's intended send
//! time, so a stall is charged to every request that should have gone out meanwhile, with no
//! coordinated omission). Four scenarios ([`Scenario`]): one endpoint; the shop mix of
//! customers who register, log in, browse, search, fill carts and check out; chat listeners
//! in rooms and senders at a rate, with fan-out latency; reads and updates of anonymous carts.
//! A run can keep a timeline (counts, latency and instances per slice of time).

#![forbid(unsafe_code)]

mod carts;
mod chat;
mod conn;
mod error;
pub mod experiment;
mod failure;
pub mod histogram;
mod load;
mod progress;
mod record;
mod report;
mod shop;
mod spec;
mod workload;

pub use chat::MAX_CHAT_RATE_PER_ROOM;
pub use error::LabError;
pub use failure::Failure;
pub use histogram::Histogram;
pub use load::{run, run_until};
pub use report::{Latency, LoadReport, OperationReport, RateReport, StepReport, TimelinePoint};
pub use spec::{
    LoadSpec, MAX_CARTS, MAX_CONCURRENCY, MAX_DURATION, MAX_RATE, MAX_REQUESTS, MAX_USERS,
    MIN_TIMELINE, Pace, Scenario,
};
