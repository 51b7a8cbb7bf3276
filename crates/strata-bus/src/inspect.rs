//! What an operator sees of the bus: the state of a family's stream and of its durables, and
//! the messages it stores. Returned by [`Bus::stream_info`](crate::Bus::stream_info),
//! [`Bus::consumer_info`](crate::Bus::consumer_info), [`Bus::consumers`](crate::Bus::consumers)
//! and [`Bus::read`](crate::Bus::read); both backends fill them with the same meanings.

use bytes::Bytes;

/// The state of one family's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The family (`orders`), without namespace.
    pub family: String,
    /// How many messages the stream stores now (published, minus deleted, minus trimmed).
    pub messages: u64,
    /// The sequence of the oldest stored message; `last_seq + 1` when the stream is empty after
    /// holding messages, 0 when nothing was ever published.
    pub first_seq: u64,
    /// The sequence of the last message published: how many were published so far.
    pub last_seq: u64,
    /// Storage the stored messages take, by the backend's own accounting: subjects and payloads
    /// in memory, those plus headers and record overhead on NATS. Compare it with itself over
    /// time, not across backends.
    pub bytes: u64,
}

/// The state of one durable consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The durable name.
    pub durable: String,
    /// Its subject filter (`orders.>`), without namespace.
    pub filter: String,
    /// Messages delivered and not yet acknowledged (including those waiting for redelivery).
    pub ack_pending: u64,
    /// Stored messages matching the filter that were never delivered to this durable: its lag.
    pub num_pending: u64,
    /// How many of the `ack_pending` messages were delivered more than once.
    pub redelivered: u64,
    /// The stream sequence this durable has delivered up to: the last message it delivered for
    /// the first time, 0 before any. NATS may report a higher sequence once it has skipped
    /// messages the filter does not match.
    pub delivered_seq: u64,
}

/// A message as the stream stores it, read without any consumer's involvement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The subject it was published on, without namespace.
    pub subject: String,
    /// The payload, byte for byte as published.
    pub payload: Bytes,
    /// Its stream sequence (the value [`Bus::publish`](crate::Bus::publish) returned).
    pub sequence: u64,
}
