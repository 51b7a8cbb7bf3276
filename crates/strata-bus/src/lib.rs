//! strata-bus: a durable message bus with at-least-once delivery, in memory or on NATS JetStream.
//!
//! The order pipeline uses it as a work queue (every event to one of the competing workers that
//! share a durable name) and chat uses it for fan-out (every chat instance subscribes under its
//! own durable name and sees every message).
//!
//! # Model
//! - A **subject** is dot-separated tokens, at least two: `orders.placed`, `chat.room.42`.
//!   Its first token is the **family**; one **stream** holds a family (`orders` holds
//!   `orders.>`) and numbers its messages 1, 2, 3, … (the stream sequence).
//! - [`Bus::publish`] returns once the message is durably stored, with its sequence.
//! - [`Bus::subscribe`] opens a **durable** subscription: the bus remembers, per durable name,
//!   which messages were acknowledged. A message that is not [`Delivery::ack`]ed within
//!   [`SubscribeOptions::ack_wait`] (or that is [`Delivery::nack`]ed) is delivered again, so
//!   handlers must be idempotent. Subscriptions sharing a durable name compete for messages;
//!   different durable names each see every message.
//!
//! # Inspection
//! The event pipeline's operator commands read the bus without consuming from it:
//! [`Bus::stream_info`], [`Bus::consumer_info`] and [`Bus::consumers`] report sizes, lag and
//! unacked work; [`Bus::read`] lists stored messages by sequence without touching any durable;
//! [`Bus::delete`] removes one message, which no durable receives from then on.
//!
//! # Backends
//! [`AnyBus::connect`] picks one from a URL: `memory` ([`MemoryBus`], one process, the default of
//! `strata up`) or `nats://…` ([`NatsBus`], JetStream, for `strata serve`). Both pass the same
//! contract test suite (`contract`, built with the `testing` feature).

#![forbid(unsafe_code)]

mod error;
mod inspect;
mod memory;
mod nats;
mod subject;

#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod contract;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

pub use error::{BoxError, BusError, Result};
pub use inspect::{ConsumerInfo, StoredMessage, StreamInfo};
pub use memory::{MemoryBus, StreamLimits};
pub use nats::NatsBus;

/// A durable message bus: publish, durable subscribe, explicit ack.
///
/// Implemented by [`MemoryBus`], [`NatsBus`] and [`AnyBus`]. See the [crate docs](crate) for
/// the model.
pub trait Bus: Send + Sync {
    /// Stores `payload` under `subject` and returns its stream sequence once it is durable
    /// (for NATS: once JetStream acknowledged the write). The family's stream is created on
    /// first use.
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`] for a malformed subject or one with wildcards,
    /// [`BusError::Closed`] after [`Bus::close`], [`BusError::Nats`] when the server does not
    /// confirm the write (the message may or may not be stored; publishing again may duplicate).
    fn publish(&self, subject: &str, payload: Bytes) -> impl Future<Output = Result<u64>> + Send;

    /// Opens (creating if needed) the durable consumer `durable` on the messages matching
    /// `subject_filter`, starting from the oldest message it has not acknowledged.
    ///
    /// A new durable starts at the beginning of the stream. An existing one resumes: acked
    /// messages are not seen again, unacked ones are redelivered. Its options are updated to
    /// `opts`.
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`], [`BusError::InvalidName`] or [`BusError::InvalidOptions`]
    /// for bad arguments, [`BusError::DurableConflict`] when `durable` exists with another
    /// filter, [`BusError::Closed`] after [`Bus::close`], [`BusError::Nats`] on server failure.
    fn subscribe(
        &self,
        subject_filter: &str,
        durable: &str,
        opts: SubscribeOptions,
    ) -> impl Future<Output = Result<Subscription>> + Send;

    /// The state of `family`'s stream, or `None` when it does not exist (nothing was
    /// published or subscribed on the family yet, or it was deleted).
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`] when `family` is not a valid family (one subject token),
    /// [`BusError::Closed`] after [`Bus::close`], [`BusError::Nats`] on server failure.
    fn stream_info(&self, family: &str) -> impl Future<Output = Result<Option<StreamInfo>>> + Send;

    /// The state of the durable `durable` on `family`'s stream, or `None` when the stream or
    /// the durable does not exist.
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`] for a bad family, [`BusError::InvalidName`] for a bad
    /// durable name, [`BusError::Closed`] after [`Bus::close`], [`BusError::Nats`] on server
    /// failure.
    fn consumer_info(
        &self,
        family: &str,
        durable: &str,
    ) -> impl Future<Output = Result<Option<ConsumerInfo>>> + Send;

    /// The state of every durable on `family`'s stream, ordered by name; empty when the stream
    /// does not exist.
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`] for a bad family, [`BusError::Closed`] after
    /// [`Bus::close`], [`BusError::Nats`] on server failure.
    fn consumers(&self, family: &str) -> impl Future<Output = Result<Vec<ConsumerInfo>>> + Send;

    /// Up to `limit` stored messages of `family`'s stream with sequence `from_seq` or later, in
    /// sequence order, skipping deleted ones; empty when the stream does not exist. No durable
    /// is affected: nothing is delivered, acked or counted.
    ///
    /// Only what the stream still stores is seen: on NATS everything not deleted (or removed by
    /// limits an operator set); in memory, messages every durable of the stream has acked are
    /// trimmed (see [`MemoryBus`]), while a stream with no durable keeps everything.
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`] for a bad family, [`BusError::Closed`] after
    /// [`Bus::close`], [`BusError::Nats`] on server failure.
    fn read(
        &self,
        family: &str,
        from_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredMessage>>> + Send;

    /// Removes the stored message `sequence` from `family`'s stream; `false` when it was not
    /// there (never published, already deleted or trimmed, or no such stream).
    ///
    /// No durable receives it afterwards, not even as a redelivery: a durable that had it
    /// pending counts it as done. Sequences are never reused.
    ///
    /// # Errors
    /// [`BusError::InvalidSubject`] for a bad family, [`BusError::Closed`] after
    /// [`Bus::close`], [`BusError::Nats`] on server failure.
    fn delete(&self, family: &str, sequence: u64) -> impl Future<Output = Result<bool>> + Send;

    /// Checks that the bus can take traffic (for `/readyz`).
    ///
    /// # Errors
    /// [`BusError::Closed`] after [`Bus::close`]; [`BusError::Nats`] when JetStream does not
    /// answer.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// Closes the bus: every [`Subscription::next`] then returns `None` and further calls fail
    /// with [`BusError::Closed`] (memory) or a NATS error. Stored messages and durable state are
    /// kept (in memory, for as long as the process lives).
    ///
    /// # Errors
    /// [`BusError::Nats`] when the NATS client cannot start draining.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}

/// How a durable subscription is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// How long a delivered message may stay unacknowledged before it is delivered again.
    /// Default 30 s: long enough for a slow handler, short enough that a crashed worker's
    /// messages move on within a minute.
    pub ack_wait: Duration,
    /// How many times a message is delivered at most; after the last delivery's `ack_wait` it
    /// is dropped for this durable (terminated) instead of being redelivered. `None` (the
    /// default) retries forever, which is right for events that must not be lost; set it to
    /// stop a poison message from looping.
    pub max_deliver: Option<u32>,
    /// How many messages may be delivered and unacknowledged at once, across all subscriptions
    /// sharing the durable name; delivery pauses at the limit. Default 1000 (NATS's own
    /// default): bounds the redelivery storm after a crash.
    pub max_ack_pending: u32,
    /// How many messages a NATS subscription asks the server for at a time (the pull batch).
    /// Those wait in the subscription until [`Subscription::next`] takes them, and their
    /// `ack_wait` runs meanwhile. Default 16: enough to hide the round trip, small enough that
    /// competing workers share the load. The memory bus ignores it: it hands a message out
    /// only when `next` asks.
    pub prefetch: u32,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
            max_ack_pending: 1000,
            prefetch: 16,
        }
    }
}

impl SubscribeOptions {
    fn check(&self) -> Result<()> {
        if self.ack_wait < Duration::from_millis(1) {
            return Err(BusError::InvalidOptions("ack_wait must be at least 1 ms"));
        }
        if self.max_deliver == Some(0) {
            return Err(BusError::InvalidOptions("max_deliver must be at least 1"));
        }
        if self.max_ack_pending == 0 {
            return Err(BusError::InvalidOptions(
                "max_ack_pending must be at least 1",
            ));
        }
        if self.prefetch == 0 {
            return Err(BusError::InvalidOptions("prefetch must be at least 1"));
        }
        Ok(())
    }
}

/// A durable subscription; see [`Bus::subscribe`].
///
/// Dropping it does not delete the durable: a later subscribe with the same name resumes.
/// Messages it received but did not ack, and (NATS) messages it prefetched but never handed
/// out, are redelivered once their `ack_wait` runs out.
pub struct Subscription {
    inner: SubscriptionInner,
}

enum SubscriptionInner {
    Memory(memory::MemorySubscription),
    Nats(Box<nats::NatsSubscription>),
}

impl Subscription {
    /// Waits for the next message.
    ///
    /// Returns `None` once the bus is closed. An `Err` reports a failure that the subscription
    /// could not ride out itself (e.g. the NATS consumer was deleted); after such an error the
    /// subscription returns `None`. Transient NATS trouble (a reconnect, a missed heartbeat) is
    /// logged and retried inside.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        match &mut self.inner {
            SubscriptionInner::Memory(sub) => sub.next().await,
            SubscriptionInner::Nats(sub) => sub.next().await,
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.inner {
            SubscriptionInner::Memory(_) => "memory",
            SubscriptionInner::Nats(_) => "nats",
        };
        f.debug_struct("Subscription")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

/// One delivery of a message to a subscription. Ack it once handled.
pub struct Delivery {
    /// The subject it was published on (without the NATS namespace).
    pub subject: String,
    /// The payload, byte for byte as published.
    pub payload: Bytes,
    /// The message's stream sequence (the value [`Bus::publish`] returned).
    pub sequence: u64,
    /// How many times this message was delivered to this durable, this time included:
    /// 1 on first delivery, more on redelivery.
    pub delivered: u32,
    acker: Acker,
}

enum Acker {
    Memory(memory::MemoryAcker),
    // Boxed: the NATS acker is five times the size of the memory one.
    Nats(Box<async_nats::jetstream::message::Acker>),
}

impl Delivery {
    /// Acknowledges the message: once this returns `Ok`, it will not be delivered to this
    /// durable again. NATS: a double ack, confirmed by the server.
    ///
    /// Acking a message that was already acked, or terminated by `max_deliver`, is a no-op.
    ///
    /// # Errors
    /// [`BusError::Closed`] after [`Bus::close`]; [`BusError::Nats`] when the server does not
    /// confirm (the message may then be redelivered).
    pub async fn ack(&self) -> Result<()> {
        match &self.acker {
            Acker::Memory(acker) => acker.ack(),
            Acker::Nats(acker) => acker
                .double_ack()
                .await
                .map_err(|err| BusError::nats("ack", err)),
        }
    }

    /// Gives the message back for redelivery after `delay` (`None`: at once). The redelivery
    /// counts towards `max_deliver`.
    ///
    /// # Errors
    /// [`BusError::Closed`] after [`Bus::close`]; [`BusError::Nats`] when the nack cannot be
    /// sent (the message then comes back after `ack_wait`).
    pub async fn nack(&self, delay: Option<Duration>) -> Result<()> {
        match &self.acker {
            Acker::Memory(acker) => acker.nack(delay),
            Acker::Nats(acker) => acker
                .ack_with(async_nats::jetstream::AckKind::Nak(delay))
                .await
                .map_err(|err| BusError::nats("nack", err)),
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("payload_len", &self.payload.len())
            .field("sequence", &self.sequence)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// The bus chosen at start-up from configuration: memory or NATS.
#[derive(Debug, Clone)]
pub enum AnyBus {
    /// In process; see [`MemoryBus`].
    Memory(MemoryBus),
    /// NATS JetStream; see [`NatsBus`].
    Nats(NatsBus),
}

/// How a bus is set up beyond its URL and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// Copies JetStream keeps of each stream the bus creates (1 to 5; the memory bus has one
    /// by nature). Default 1, a single server.
    pub replicas: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

impl AnyBus {
    /// As [`AnyBus::connect_with`], with the default [`BusOptions`].
    ///
    /// # Errors
    /// As [`AnyBus::connect_with`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        Self::connect_with(url, namespace, &BusOptions::default()).await
    }

    /// Connects to the bus named by `url`: `memory` for a new [`MemoryBus`], `nats://…` (or a
    /// comma-separated list of a cluster's servers) for [`NatsBus::connect_with`].
    ///
    /// `namespace` prefixes NATS subjects and stream names so deployments and tests can share a
    /// server; the memory bus is private to its process and only checks it.
    ///
    /// # Errors
    /// [`BusError::UnsupportedUrl`] for any other URL, [`BusError::InvalidName`] for a bad
    /// namespace, [`BusError::Connect`] when the NATS server cannot be reached.
    pub async fn connect_with(url: &str, namespace: &str, options: &BusOptions) -> Result<Self> {
        if url == "memory" {
            subject::check_namespace(namespace)?;
            Ok(Self::Memory(MemoryBus::new()))
        } else if url.starts_with("nats://") {
            Ok(Self::Nats(
                NatsBus::connect_with(url, namespace, options).await?,
            ))
        } else {
            Err(BusError::UnsupportedUrl(url.to_owned()))
        }
    }
}

impl Bus for AnyBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<u64> {
        match self {
            Self::Memory(bus) => bus.publish(subject, payload).await,
            Self::Nats(bus) => bus.publish(subject, payload).await,
        }
    }

    async fn subscribe(
        &self,
        subject_filter: &str,
        durable: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription> {
        match self {
            Self::Memory(bus) => bus.subscribe(subject_filter, durable, opts).await,
            Self::Nats(bus) => bus.subscribe(subject_filter, durable, opts).await,
        }
    }

    async fn stream_info(&self, family: &str) -> Result<Option<StreamInfo>> {
        match self {
            Self::Memory(bus) => bus.stream_info(family).await,
            Self::Nats(bus) => bus.stream_info(family).await,
        }
    }

    async fn consumer_info(&self, family: &str, durable: &str) -> Result<Option<ConsumerInfo>> {
        match self {
            Self::Memory(bus) => bus.consumer_info(family, durable).await,
            Self::Nats(bus) => bus.consumer_info(family, durable).await,
        }
    }

    async fn consumers(&self, family: &str) -> Result<Vec<ConsumerInfo>> {
        match self {
            Self::Memory(bus) => bus.consumers(family).await,
            Self::Nats(bus) => bus.consumers(family).await,
        }
    }

    async fn read(&self, family: &str, from_seq: u64, limit: usize) -> Result<Vec<StoredMessage>> {
        match self {
            Self::Memory(bus) => bus.read(family, from_seq, limit).await,
            Self::Nats(bus) => bus.read(family, from_seq, limit).await,
        }
    }

    async fn delete(&self, family: &str, sequence: u64) -> Result<bool> {
        match self {
            Self::Memory(bus) => bus.delete(family, sequence).await,
            Self::Nats(bus) => bus.delete(family, sequence).await,
        }
    }

    async fn ping(&self) -> Result<()> {
        match self {
            Self::Memory(bus) => bus.ping().await,
            Self::Nats(bus) => bus.ping().await,
        }
    }

    async fn close(&self) -> Result<()> {
        match self {
            Self::Memory(bus) => bus.close().await,
            Self::Nats(bus) => bus.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_picks_the_backend_from_the_url() {
        assert!(matches!(
            AnyBus::connect("memory", "dev").await,
            Ok(AnyBus::Memory(_))
        ));
        let err = AnyBus::connect("redis://127.0.0.1:6379", "dev")
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::UnsupportedUrl(_)));
        assert!(err.to_string().contains("redis://127.0.0.1:6379"), "{err}");
        let err = AnyBus::connect("memory", "Not_Valid").await.unwrap_err();
        assert!(matches!(err, BusError::InvalidName { .. }), "{err}");
    }

    #[test]
    fn default_options_are_valid_and_zeroes_are_not() {
        assert!(SubscribeOptions::default().check().is_ok());
        let zero = |change: fn(&mut SubscribeOptions)| {
            let mut opts = SubscribeOptions::default();
            change(&mut opts);
            opts.check().is_err()
        };
        assert!(zero(|o| o.ack_wait = Duration::ZERO));
        assert!(zero(|o| o.max_deliver = Some(0)));
        assert!(zero(|o| o.max_ack_pending = 0));
        assert!(zero(|o| o.prefetch = 0));
    }
}
