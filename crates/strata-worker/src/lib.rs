//! strata-worker: the event consumers. Workers relay the outbox to the bus and run the order
//! pipeline (payment → fulfilment) and the notifications; they share durable subscriptions on
//! the bus, so adding a worker spreads the work, and every handler is idempotent, so the bus's
//! at-least-once delivery never applies an event twice.
//!
//! The pipeline, one store transaction per step, each writing the next event to the outbox:
//!
//! ```text
//! checkout ─▶ outbox ─relay─▶ order.placed ─payment─▶ order.paid ─fulfilment─▶ order.shipped
//!                                          └────────▶ order.payment_failed (stock back)
//!                     every order.* event ─notifications─▶ one notification per change
//! ```

#![forbid(unsafe_code)]

mod consumer;
pub mod dlq;
mod envelope;
mod error;
mod handlers;
mod metrics;
mod payment;
mod relay;
mod settings;
pub mod stats;
mod worker;

pub use crate::envelope::Envelope;
pub use crate::error::WorkerError;
pub use crate::handlers::{Handler, HandlerError, Handlers};
pub use crate::payment::{Charge, PaymentError, PaymentProvider, SimulatedPayments};
pub use crate::settings::PipelineSettings;
pub use crate::stats::EventStats;
pub use crate::worker::{Worker, WorkerSettings};

/// The role name: the `role` of `/healthz` and the `strata_worker_…` prefix of every metric.
pub const ROLE: &str = "worker";
