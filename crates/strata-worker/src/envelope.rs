//! [`Envelope`]: how an outbox event travels on the bus. The relay wraps each outbox row's
//! payload with the row's id, which is the event id every handler keys its once-only
//! bookkeeping on: a duplicate publish (a relay that died before stamping) or a redelivery
//! carries the same id. It also carries the row's trace context (`traceparent`), so the trace
//! of the work that wrote the event goes on in the handlers that consume it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_core::http::TraceContext;
use strata_store::OutboxMessage;
use time::OffsetDateTime;

/// One event on the bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The outbox id: unique, increasing in the order events were written.
    pub id: i64,
    /// The event type, which is also the bus subject (`order.placed`).
    pub topic: String,
    /// When the change it announces committed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The event itself, as the outbox holds it.
    pub data: serde_json::Value,
    /// The W3C `traceparent` of the work that wrote the event (absent when it had none, and
    /// in envelopes published before traces travelled): its handler continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Envelope {
    /// Wraps an outbox row. A payload that is not JSON (never written by strata) travels as a
    /// JSON string, so the event still reaches a handler, which refuses it into the dead-letter
    /// stream where an operator can see it.
    pub fn from_outbox(message: &OutboxMessage) -> Self {
        let data = serde_json::from_str(&message.payload)
            .unwrap_or_else(|_| serde_json::Value::String(message.payload.clone()));
        Self {
            id: message.id,
            topic: message.topic.clone(),
            created_at: message.created_at,
            data,
            traceparent: message.traceparent.clone(),
        }
    }

    /// The bytes published on the bus.
    pub fn to_bytes(&self) -> Bytes {
        // Serializing a struct of strings, numbers and a `Value` cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Parses a delivery's payload.
    ///
    /// # Errors
    /// When the payload is not an envelope.
    pub fn parse(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The trace context the event was written in, when it carries a valid one.
    pub fn trace(&self) -> Option<TraceContext> {
        TraceContext::parse(self.traceparent.as_deref()?.as_bytes())
    }

    /// The event's data as `T`.
    ///
    /// # Errors
    /// When the data does not have `T`'s shape.
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(payload: &str) -> OutboxMessage {
        OutboxMessage {
            id: 42,
            topic: "order.placed".into(),
            payload: payload.into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            sent_at: None,
            traceparent: None,
        }
    }

    #[test]
    fn round_trips_and_keeps_the_outbox_id() {
        let envelope = Envelope::from_outbox(&outbox(r#"{"order_id":7,"user_id":3}"#));
        let parsed = Envelope::parse(&envelope.to_bytes()).unwrap();
        assert_eq!(parsed, envelope);
        assert_eq!(parsed.id, 42);
        #[derive(Deserialize)]
        struct Ids {
            order_id: i64,
            user_id: i64,
        }
        let ids: Ids = parsed.data().unwrap();
        assert_eq!((ids.order_id, ids.user_id), (7, 3));
    }

    #[test]
    fn the_trace_context_travels_with_the_event_when_there_is_one() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let message = OutboxMessage {
            traceparent: Some(traceparent.into()),
            ..outbox("{}")
        };
        let parsed = Envelope::parse(&Envelope::from_outbox(&message).to_bytes()).unwrap();
        assert_eq!(parsed.trace().unwrap().to_string(), traceparent);

        let untraced = Envelope::from_outbox(&outbox("{}")).to_bytes();
        assert!(!String::from_utf8_lossy(&untraced).contains("traceparent"));
        assert_eq!(Envelope::parse(&untraced).unwrap().trace(), None);
        let malformed = Envelope {
            traceparent: Some("00-zz".into()),
            ..Envelope::from_outbox(&outbox("{}"))
        };
        assert_eq!(malformed.trace(), None);
    }

    #[test]
    fn a_payload_that_is_not_json_travels_as_a_string() {
        let envelope = Envelope::from_outbox(&outbox("not json"));
        assert_eq!(envelope.data, serde_json::Value::String("not json".into()));
        assert!(
            envelope
                .data::<std::collections::HashMap<String, i64>>()
                .is_err()
        );
        assert!(Envelope::parse(b"{}").is_err());
    }
}
