//! The consume loop of one handler: a durable subscription shared by every worker (so adding
//! workers spreads the load), up to `concurrency` deliveries handled at once, and the fate of
//! each delivery:
//!
//! - applied, or found already applied: **ack**;
//! - failed, transient, fewer than `max_deliveries` deliveries so far: **nack with backoff**
//!   (`retry_base × 2^(deliveries − 1)`, at most `retry_max`), so a provider outage is not
//!   hammered; failed because the store cannot serve now: nack with backoff however many
//!   deliveries there were (the event is fine; a database restart must not fill the
//!   dead-letter stream);
//! - failed for good (malformed) or for the last time: published to the **dead-letter
//!   stream**, then acked.
//!
//! A delivery that is never answered (the worker died) comes back after the bus's `ack_wait`.
//!
//! Deliveries about one order are handled one after another, in the order they arrive (those
//! of different orders at once): an order's `paid` and `shipped` notifications, delivered a
//! few milliseconds apart, are then recorded in that order, with increasing ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_bus::{AnyBus, Bus, Delivery, SubscribeOptions};
use strata_core::Shutdown;
use strata_core::http::TraceContext;
use strata_store::Applied;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::dlq::{self, DeadLetter};
use crate::handlers::{Handler, HandlerError, Handlers};
use crate::metrics::WorkerMetrics;
use crate::settings::PipelineSettings;

/// How long a stopping worker waits for the deliveries it is handling.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Pause before subscribing again after the subscription failed.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);

/// The backoff before redelivery number `deliveries + 1`.
pub(crate) fn backoff(settings: &PipelineSettings, deliveries: u32) -> Duration {
    let doublings = deliveries.saturating_sub(1).min(20);
    settings
        .retry_base
        .saturating_mul(1 << doublings)
        .min(settings.retry_max)
}

/// Whether a delivery that failed with `error`, delivered `delivered` times, goes back for
/// another try (else it is dead-lettered).
fn retries(error: &HandlerError, delivered: u32, max_deliveries: u32) -> bool {
    error.is_store_outage() || (error.is_transient() && delivered < max_deliveries)
}

/// What the loop reads of a delivery before handing it out: the order the event is about
/// (`None` when it names none: such a delivery waits for nothing, and a malformed one is
/// dead-lettered by its handler) and the trace context it was written in (`None`: its
/// handling starts a trace of its own).
fn peek(payload: &[u8]) -> (Option<i64>, Option<TraceContext>) {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(default)]
        data: serde_json::Value,
        #[serde(default)]
        traceparent: Option<String>,
    }
    let Ok(event) = serde_json::from_slice::<Event>(payload) else {
        return (None, None);
    };
    let order = event
        .data
        .get("order_id")
        .and_then(serde_json::Value::as_i64);
    let trace = event
        .traceparent
        .and_then(|value| TraceContext::parse(value.as_bytes()));
    (order, trace)
}

/// Chains the deliveries of one key: each waits for the one of its key before it. The key's
/// last delivery holds a sender; the next takes its receiver as its turn.
#[derive(Default)]
struct PerKey {
    last: HashMap<i64, oneshot::Receiver<()>>,
}

/// Keys remembered before finished chains are pruned.
const PRUNE_AT: usize = 1024;

impl PerKey {
    /// The turn to wait for (the previous delivery of `key`, if any) and the guard that ends
    /// this delivery's turn when dropped.
    fn next(
        &mut self,
        key: Option<i64>,
    ) -> (Option<oneshot::Receiver<()>>, Option<oneshot::Sender<()>>) {
        let Some(key) = key else {
            return (None, None);
        };
        if self.last.len() >= PRUNE_AT {
            // A chain whose last delivery is done (its sender dropped) holds nothing up.
            self.last.retain(|_, turn| {
                matches!(turn.try_recv(), Err(oneshot::error::TryRecvError::Empty))
            });
        }
        let (done, turn) = oneshot::channel();
        (self.last.insert(key, turn), Some(done))
    }
}

/// Everything the deliveries of one handler need.
#[derive(Clone)]
pub(crate) struct Consumer {
    pub handler: Handler,
    pub handlers: Handlers,
    pub bus: AnyBus,
    pub metrics: WorkerMetrics,
    pub settings: Arc<PipelineSettings>,
}

impl Consumer {
    /// Consumes until `shutdown`, then waits (a bounded time) for the deliveries in hand.
    pub async fn run(self, shutdown: Shutdown) {
        let name = self.handler.name();
        let opts = SubscribeOptions {
            ack_wait: self.settings.ack_wait,
            // The worker decides when to give up (and dead-letters the event); the bus keeps
            // redelivering until told.
            max_deliver: None,
            max_ack_pending: u32::try_from(self.settings.concurrency * 8).unwrap_or(u32::MAX),
            prefetch: u32::try_from(self.settings.concurrency * 2).unwrap_or(u32::MAX),
        };
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks = JoinSet::new();
        let mut sequence = PerKey::default();
        'subscribe: while !shutdown.is_cancelled() {
            let mut sub = tokio::select! {
                () = shutdown.cancelled() => break,
                sub = self.bus.subscribe(self.handler.filter(), name, opts) => match sub {
                    Ok(sub) => sub,
                    Err(e) => {
                        tracing::warn!(handler = name, error = %e, "cannot subscribe, retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => continue,
                        }
                    }
                },
            };
            tracing::info!(handler = name, filter = self.handler.filter(), "consuming");
            loop {
                let permit = tokio::select! {
                    () = shutdown.cancelled() => break 'subscribe,
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'subscribe,
                    },
                };
                let delivery = tokio::select! {
                    () = shutdown.cancelled() => break 'subscribe,
                    next = sub.next() => next,
                };
                match delivery {
                    Some(Ok(delivery)) => {
                        let this = self.clone();
                        let (order_id, parent) = peek(&delivery.payload);
                        let (turn, done) = sequence.next(order_id);
                        // The handling continues the trace of the work that wrote the event,
                        // and every line it logs names that trace.
                        let trace = TraceContext::continued(parent);
                        let span = tracing::info_span!(
                            "event",
                            handler = name,
                            subject = %delivery.subject,
                            sequence = delivery.sequence,
                            order_id,
                            trace_id = %trace.trace_id(),
                        );
                        tasks.spawn(
                            async move {
                                if let Some(turn) = turn {
                                    // Sent or dropped when the order's previous delivery is done.
                                    let _ = turn.await;
                                }
                                this.process(delivery, &trace).await;
                                drop(done);
                                drop(permit);
                            }
                            .instrument(span),
                        );
                    }
                    Some(Err(e)) => {
                        tracing::warn!(handler = name, error = %e, "subscription failed, resubscribing");
                        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                        continue 'subscribe;
                    }
                    None => break 'subscribe,
                }
                // Reap finished tasks so the set stays small.
                while tasks.try_join_next().is_some() {}
            }
        }
        let drained = tokio::time::timeout(STOP_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                handler = name,
                "stopped with deliveries in hand: they will be redelivered"
            );
        }
    }

    /// Handles one delivery in `trace` (the handler's own span of the event's trace) and
    /// answers the bus. With the access log on (`log.access_sample`), a sampled delivery's
    /// outcome is logged as the worker's request line (`strata_worker::access`).
    async fn process(&self, delivery: Delivery, trace: &TraceContext) {
        let name = self.handler.name();
        let started = Instant::now();
        let result = self
            .handlers
            .handle(self.handler, &delivery.payload, trace)
            .await;
        let elapsed = started.elapsed();
        self.metrics
            .processing
            .get_or_create(&WorkerMetrics::handler(name))
            .observe(elapsed.as_secs_f64());
        if strata_core::telemetry::access_sampled() {
            let outcome = match &result {
                Ok(Applied::Done) => "done",
                Ok(Applied::Duplicate) => "duplicate",
                Ok(Applied::Skipped) => "skipped",
                Err(_) => "failed",
            };
            tracing::info!(
                target: "strata_worker::access",
                outcome,
                deliveries = delivery.delivered,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "event"
            );
        }
        let answered = match result {
            Ok(applied) => {
                self.metrics.outcome(
                    name,
                    match applied {
                        Applied::Done => "done",
                        Applied::Duplicate => "duplicate",
                        Applied::Skipped => "skipped",
                    },
                );
                delivery.ack().await
            }
            Err(error) => {
                self.metrics
                    .failures
                    .get_or_create(&WorkerMetrics::handler(name))
                    .inc();
                if retries(&error, delivery.delivered, self.settings.max_deliveries) {
                    let pause = backoff(&self.settings, delivery.delivered);
                    tracing::warn!(
                        handler = name, sequence = delivery.sequence,
                        deliveries = delivery.delivered, retry_in_ms = pause.as_millis() as u64,
                        error = %error, "event failed, will retry"
                    );
                    self.metrics.outcome(name, "retried");
                    delivery.nack(Some(pause)).await
                } else {
                    self.dead_letter(&delivery, &error).await
                }
            }
        };
        if let Err(e) = answered {
            // Not acked: the bus redelivers it after ack_wait, and the handler is idempotent.
            tracing::warn!(handler = name, sequence = delivery.sequence, error = %e, "cannot answer the bus");
        }
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: &HandlerError,
    ) -> Result<(), strata_bus::BusError> {
        let name = self.handler.name();
        let letter = DeadLetter {
            handler: name.to_owned(),
            subject: delivery.subject.clone(),
            sequence: delivery.sequence,
            deliveries: delivery.delivered,
            error: error.to_string(),
            failed_at: OffsetDateTime::now_utc(),
            payload: String::from_utf8_lossy(&delivery.payload).into_owned(),
        };
        let id = dlq::send(&self.bus, &letter).await?;
        tracing::error!(
            handler = name, sequence = delivery.sequence, deliveries = delivery.delivered,
            dead_letter = id, error = %error, "event dead-lettered"
        );
        self.metrics.outcome(name, "dead_lettered");
        delivery.ack().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_outage_is_retried_past_max_deliveries_and_other_failures_are_not() {
        // A store that cannot serve: its pool is closed.
        let (store, _guard) = strata_store::testing::fresh_sqlite().await;
        store.close().await.unwrap();
        let outage = HandlerError::Store(store.products().count().await.unwrap_err());
        assert!(outage.is_store_outage());
        assert!(retries(&outage, 50, 5));
        let provider = HandlerError::Payment(crate::payment::PaymentError::Unavailable);
        assert!(retries(&provider, 4, 5));
        assert!(!retries(&provider, 5, 5));
        assert!(!retries(&HandlerError::Malformed("x".into()), 1, 5));
    }

    #[test]
    fn a_delivery_is_peeked_for_its_order_and_trace() {
        let traced = br#"{"id":1,"topic":"order.placed","data":{"order_id":7},
            "traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#;
        let (order, trace) = peek(traced);
        assert_eq!(order, Some(7));
        assert_eq!(
            trace.unwrap().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(peek(br#"{"data":{"order_id":8}}"#), (Some(8), None));
        let malformed_trace = br#"{"data":{"order_id":9},"traceparent":"00-zz"}"#;
        assert_eq!(peek(malformed_trace), (Some(9), None));
        assert_eq!(peek(br#"{"data":"not an order"}"#), (None, None));
        assert_eq!(peek(b"not json"), (None, None));
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_max() {
        let settings = PipelineSettings {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..PipelineSettings::default()
        };
        let waits: Vec<u128> = (1..=6).map(|d| backoff(&settings, d).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&settings, 0).as_millis(), 100);
        assert_eq!(backoff(&settings, u32::MAX), Duration::from_secs(1));
    }
}
