//! The event handlers: what the worker does with each event, once.
//!
//! | handler | durable / filter | effect (one store transaction) |
//! |---|---|---|
//! | `payment` | `order.placed` | charge the provider, then `placed → paid` or `placed → payment_failed` (stock back), announcing `order.paid` / `order.payment_failed` |
//! | `fulfilment` | `order.paid` | `paid → shipped`, announcing `order.shipped` |
//! | `notifications` | `order.>` | one notification for the customer per status change |
//!
//! Each handler records the event id it applied in the same transaction as its effects (see
//! `strata_store::EventRepo`), so a redelivery changes nothing; the next event of the pipeline is
//! written to the outbox in that transaction too, and the relay publishes it. Each runs in the
//! trace the event carries (see `consumer`), and the event it writes carries that trace on.

use serde::Deserialize;
use strata_core::http::TraceContext;
use strata_store::{
    Applied, NewNotification, ORDER_PAID, ORDER_PAYMENT_FAILED, ORDER_PLACED, ORDER_SHIPPED,
    OrderStatus, Store, StoreError, Transition,
};

use crate::envelope::Envelope;
use crate::payment::{Charge, PaymentError, PaymentProvider};

/// One of the worker's handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    /// Charges `order.placed` orders.
    Payment,
    /// Ships paid orders.
    Fulfilment,
    /// Notifies customers of every status change.
    Notifications,
}

impl Handler {
    /// Every handler, in pipeline order.
    pub const ALL: [Handler; 3] = [
        Handler::Payment,
        Handler::Fulfilment,
        Handler::Notifications,
    ];

    /// The handler's name: its durable consumer name, its key in the once-only bookkeeping,
    /// its metric label and its dead-letter subject (`dlq.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Fulfilment => "fulfilment",
            Self::Notifications => "notifications",
        }
    }

    /// The subjects it consumes.
    pub fn filter(self) -> &'static str {
        match self {
            Self::Payment => ORDER_PLACED,
            Self::Fulfilment => ORDER_PAID,
            Self::Notifications => "order.>",
        }
    }

    /// The handler named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an event this handler understands: retrying cannot help, so it goes
    /// straight to the dead-letter stream.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The payment provider did not answer: retried with backoff.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    /// The store failed: retried with backoff.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl HandlerError {
    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Malformed(_))
    }

    /// True when the store cannot serve now (down, restarting, overloaded): nothing is wrong
    /// with the event, so it is retried for as long as that lasts and never dead-lettered
    /// for it.
    pub fn is_store_outage(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_transient())
    }
}

/// The fields of an order event every handler needs (both `OrderPlaced` and
/// `OrderStatusChanged` carry them).
#[derive(Deserialize)]
struct OrderRef {
    order_id: i64,
    user_id: i64,
    total_cents: i64,
}

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct Handlers {
    store: Store,
    payments: PaymentProvider,
    /// How long after its payment an order ships (the simulated warehouse).
    fulfilment_delay: std::time::Duration,
}

impl Handlers {
    /// Handlers writing to `store` and charging `payments`, shipping an order
    /// `fulfilment_delay` after it was paid.
    pub fn new(
        store: Store,
        payments: PaymentProvider,
        fulfilment_delay: std::time::Duration,
    ) -> Self {
        Self {
            store,
            payments,
            fulfilment_delay,
        }
    }

    /// Applies the event in `payload` (an [`Envelope`]) as `handler`, running as `trace` (a
    /// span of the trace the event was written in): the events it writes carry `trace` on.
    ///
    /// # Errors
    /// [`HandlerError`]; see [`HandlerError::is_transient`].
    pub async fn handle(
        &self,
        handler: Handler,
        payload: &[u8],
        trace: &TraceContext,
    ) -> Result<Applied, HandlerError> {
        let traceparent = trace.to_string();
        let event = Envelope::parse(payload).map_err(|e| HandlerError::Malformed(e.to_string()))?;
        let order: OrderRef = event
            .data()
            .map_err(|e| HandlerError::Malformed(format!("{}: {e}", event.topic)))?;
        match handler {
            Handler::Payment => self.pay(&event, &order, &traceparent).await,
            Handler::Fulfilment => {
                self.fulfilment_wait(&event).await;
                Ok(self
                    .store
                    .orders()
                    .advance(Transition {
                        handler: handler.name(),
                        event_id: event.id,
                        order_id: order.order_id,
                        from: OrderStatus::Paid,
                        to: OrderStatus::Shipped,
                        traceparent: Some(&traceparent),
                    })
                    .await?)
            }
            Handler::Notifications => self.notify(&event, &order).await,
        }
    }

    /// Waits until `fulfilment_delay` has passed since the order was paid (`event`'s time),
    /// so a backlog is not delayed twice and a redelivery is not delayed again.
    async fn fulfilment_wait(&self, event: &Envelope) {
        if self.fulfilment_delay.is_zero() {
            return;
        }
        let since = (time::OffsetDateTime::now_utc() - event.created_at)
            .try_into()
            .unwrap_or(std::time::Duration::ZERO);
        if let Some(left) = self.fulfilment_delay.checked_sub(since) {
            tokio::time::sleep(left).await;
        }
    }

    async fn pay(
        &self,
        event: &Envelope,
        order: &OrderRef,
        traceparent: &str,
    ) -> Result<Applied, HandlerError> {
        let name = Handler::Payment.name();
        // A redelivery of an applied event skips the provider call (which would be idempotent
        // anyway, but costs a round trip).
        if self.store.events().processed(name, event.id).await? {
            return Ok(Applied::Duplicate);
        }
        let to = match self
            .payments
            .charge(order.order_id, order.total_cents)
            .await?
        {
            Charge::Approved => OrderStatus::Paid,
            Charge::Declined => OrderStatus::PaymentFailed,
        };
        Ok(self
            .store
            .orders()
            .advance(Transition {
                handler: name,
                event_id: event.id,
                order_id: order.order_id,
                from: OrderStatus::Placed,
                to,
                traceparent: Some(traceparent),
            })
            .await?)
    }

    async fn notify(&self, event: &Envelope, order: &OrderRef) -> Result<Applied, HandlerError> {
        let (kind, message) = match event.topic.as_str() {
            ORDER_PLACED => (OrderStatus::Placed, "We received your order."),
            ORDER_PAID => (OrderStatus::Paid, "Your payment was accepted."),
            ORDER_PAYMENT_FAILED => (
                OrderStatus::PaymentFailed,
                "Your payment was declined; the order is cancelled.",
            ),
            ORDER_SHIPPED => (OrderStatus::Shipped, "Your order is on its way."),
            other => return Err(HandlerError::Malformed(format!("unknown event {other}"))),
        };
        let message = format!("Order {}: {message}", order.order_id);
        Ok(self
            .store
            .notifications()
            .record(NewNotification {
                handler: Handler::Notifications.name(),
                event_id: event.id,
                user_id: order.user_id,
                order_id: order.order_id,
                kind,
                message: &message,
                at: event.created_at,
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_filters_cover_the_pipeline() {
        for handler in Handler::ALL {
            assert_eq!(Handler::from_name(handler.name()), Some(handler));
        }
        assert_eq!(Handler::from_name("billing"), None);
        assert_eq!(Handler::Payment.filter(), "order.placed");
        assert_eq!(Handler::Fulfilment.filter(), "order.paid");
        assert!(Handler::Notifications.filter().ends_with(".>"));
        assert!(!HandlerError::Malformed("x".into()).is_transient());
        assert!(HandlerError::Payment(PaymentError::Unavailable).is_transient());
    }
}
