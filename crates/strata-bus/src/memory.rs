//! The in-process bus: the embedded default of `strata up`, with the same at-least-once
//! semantics as the NATS backend.
//!
//! Each family has one stream: an append-only log of messages numbered from 1, and one state per
//! durable consumer:
//! - `cursor`: the next sequence not yet delivered for the first time;
//! - `pending`: delivered but unacked messages, each with a deadline and a delivery count;
//! - `timers`: the same deadlines ordered by time, so the next redelivery is found at once.
//!
//! A subscription asking for a message first takes the earliest pending message whose deadline
//! passed (`ack_wait` ran out, or a nack's delay), then the next new message matching the
//! filter. A message whose deadline passes after `max_deliver` deliveries is dropped from
//! `pending` (terminated). Waiting subscriptions sleep until the earliest deadline or until a
//! publish, nack or freed `max_ack_pending` slot wakes them through the consumer's `Notify`.
//!
//! # Trimming
//! Memory stays bounded two ways:
//! - once every durable of a stream has acked (or terminated, or filtered out) a message, it is
//!   dropped: nobody that exists can need it again. A durable created later therefore starts
//!   at the oldest *retained* message, not at sequence 1 as on NATS; streams nobody has
//!   subscribed to yet keep everything.
//! - [`StreamLimits`] caps each stream; past the cap the oldest messages are dropped even if
//!   unacked, like a NATS stream with limits retention (a lagging durable loses them).
//!
//! # Deletion
//! [`Bus::delete`] leaves a tombstone in the log, so sequences keep mapping to positions in
//! O(1); tombstones count neither as messages nor bytes, are skipped by cursors and reads, and
//! go when they reach the front. The deleted message leaves every durable's `pending` at once,
//! which is what keeps it from being redelivered.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque, hash_map::Entry};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{BusError, Result};
use crate::subject::{self, Filter};
use crate::{
    Acker, Bus, ConsumerInfo, Delivery, StoredMessage, StreamInfo, SubscribeOptions, Subscription,
    SubscriptionInner,
};

/// Per-stream caps of a [`MemoryBus`]; past either, the oldest messages are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most messages kept per stream. Default 1,000,000: far above what acked-message trimming
    /// leaves behind in normal running, so it only bites when a durable stops acking.
    pub max_messages: usize,
    /// Most payload and subject bytes kept per stream. Default 256 MiB, a ceiling a laptop
    /// running `strata up` can afford. The newest message is always kept, however large.
    pub max_bytes: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_messages: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// The in-process bus. Cloning is cheap and shares the same streams and durables.
///
/// Nothing survives the process: "durable" here means durable across subscriptions (and
/// instance restarts inside `strata up`), not across crashes.
///
/// Memory is bounded two ways. A message every existing durable of its stream has acked (or
/// filtered out, or given up on after `max_deliver`) is dropped at once, so a durable created
/// *later* starts at the oldest retained message rather than at sequence 1 as on NATS; a
/// stream nobody subscribed to yet keeps everything. And [`StreamLimits`] caps each stream:
/// past it the oldest messages go even if unacked, like a NATS stream with limits retention.
///
/// The inspection calls ([`Bus::stream_info`], [`Bus::read`], …) therefore see only retained
/// messages: on a stream whose durables keep up, `messages` stays near 0 and `read` finds
/// little, where NATS would still hold everything.
#[derive(Clone, Default)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    limits: StreamLimits,
    streams: Mutex<HashMap<String, Arc<StreamCell>>>,
    closed: AtomicBool,
}

impl Shared {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }
}

/// One family's stream. Its std `Mutex` is held only for bookkeeping, never across an await.
struct StreamCell {
    state: Mutex<StreamState>,
}

/// Locks, ignoring poisoning: every critical section leaves the state consistent before any
/// operation that could panic, so a panicking holder cannot leave it half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `now + after`, saturating at a century instead of overflowing.
fn deadline(now: Instant, after: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(after.min(FAR)).unwrap_or(now)
}

impl MemoryBus {
    /// A new, empty bus with default [`StreamLimits`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty bus with the given per-stream caps.
    pub fn with_limits(limits: StreamLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                ..Shared::default()
            }),
        }
    }

    fn stream(&self, family: &str) -> Arc<StreamCell> {
        let mut streams = lock(&self.shared.streams);
        if let Some(cell) = streams.get(family) {
            return Arc::clone(cell);
        }
        let cell = Arc::new(StreamCell {
            state: Mutex::new(StreamState::new(self.shared.limits)),
        });
        streams.insert(family.to_owned(), Arc::clone(&cell));
        cell
    }

    /// The family's stream if it exists; unlike [`MemoryBus::stream`], never creates one, so
    /// that looking does not make a stream appear.
    fn existing(&self, family: &str) -> Result<Option<Arc<StreamCell>>> {
        self.shared.check_open()?;
        subject::check_family(family)?;
        Ok(lock(&self.shared.streams).get(family).cloned())
    }

    fn publish_now(&self, subject: &str, payload: Bytes) -> Result<u64> {
        self.shared.check_open()?;
        let family = subject::family_of_subject(subject)?;
        let cell = self.stream(family);
        let mut state = lock(&cell.state);
        Ok(state.append(subject, payload))
    }

    fn subscribe_now(
        &self,
        filter: &str,
        durable: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription> {
        self.shared.check_open()?;
        opts.check()?;
        subject::check_durable(durable)?;
        let filter = Filter::parse(filter)?;
        let cell = self.stream(filter.family());
        let notify = {
            let mut state = lock(&cell.state);
            let cursor = state.first_seq();
            match state.consumers.entry(durable.to_owned()) {
                Entry::Occupied(entry) => {
                    let consumer = entry.into_mut();
                    if consumer.filter != filter {
                        return Err(BusError::DurableConflict {
                            durable: durable.to_owned(),
                            existing: consumer.filter.as_str().to_owned(),
                            requested: filter.as_str().to_owned(),
                        });
                    }
                    consumer.opts = opts;
                    // A larger max_ack_pending may unblock waiting subscriptions.
                    consumer.notify.notify_waiters();
                    Arc::clone(&consumer.notify)
                }
                Entry::Vacant(entry) => {
                    let consumer = entry.insert(Consumer {
                        filter,
                        opts,
                        cursor,
                        // As NATS reports a new durable: just before where it starts.
                        last_delivered: cursor.saturating_sub(1),
                        pending: BTreeMap::new(),
                        timers: BTreeSet::new(),
                        notify: Arc::new(Notify::new()),
                    });
                    Arc::clone(&consumer.notify)
                }
            }
        };
        Ok(Subscription {
            inner: SubscriptionInner::Memory(MemorySubscription {
                shared: Arc::clone(&self.shared),
                cell,
                durable: durable.into(),
                notify,
            }),
        })
    }

    fn close_now(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let cells: Vec<Arc<StreamCell>> = lock(&self.shared.streams).values().cloned().collect();
        for cell in cells {
            for consumer in lock(&cell.state).consumers.values() {
                consumer.notify.notify_waiters();
            }
        }
    }
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("limits", &self.shared.limits)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Bus for MemoryBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<u64> {
        self.publish_now(subject, payload)
    }

    async fn subscribe(
        &self,
        subject_filter: &str,
        durable: &str,
        opts: SubscribeOptions,
    ) -> Result<Subscription> {
        self.subscribe_now(subject_filter, durable, opts)
    }

    async fn stream_info(&self, family: &str) -> Result<Option<StreamInfo>> {
        Ok(self
            .existing(family)?
            .map(|cell| lock(&cell.state).info(family)))
    }

    async fn consumer_info(&self, family: &str, durable: &str) -> Result<Option<ConsumerInfo>> {
        subject::check_durable(durable)?;
        let Some(cell) = self.existing(family)? else {
            return Ok(None);
        };
        let state = lock(&cell.state);
        let now = Instant::now();
        Ok(state
            .consumers
            .get(durable)
            .map(|consumer| state.consumer_info(durable, consumer, now)))
    }

    async fn consumers(&self, family: &str) -> Result<Vec<ConsumerInfo>> {
        let Some(cell) = self.existing(family)? else {
            return Ok(Vec::new());
        };
        let state = lock(&cell.state);
        let now = Instant::now();
        let mut all: Vec<ConsumerInfo> = state
            .consumers
            .iter()
            .map(|(durable, consumer)| state.consumer_info(durable, consumer, now))
            .collect();
        all.sort_unstable_by(|a, b| a.durable.cmp(&b.durable));
        Ok(all)
    }

    async fn read(&self, family: &str, from_seq: u64, limit: usize) -> Result<Vec<StoredMessage>> {
        Ok(self
            .existing(family)?
            .map(|cell| lock(&cell.state).read(from_seq, limit))
            .unwrap_or_default())
    }

    async fn delete(&self, family: &str, sequence: u64) -> Result<bool> {
        Ok(self
            .existing(family)?
            .is_some_and(|cell| lock(&cell.state).delete(sequence)))
    }

    async fn ping(&self) -> Result<()> {
        self.shared.check_open()
    }

    async fn close(&self) -> Result<()> {
        self.close_now();
        Ok(())
    }
}

/// A stored message, or the tombstone of a deleted one.
#[derive(Clone)]
struct Stored {
    seq: u64,
    subject: Arc<str>,
    payload: Bytes,
    /// Deleted: a tombstone keeping its place in the log. Its payload is already released.
    deleted: bool,
}

impl Stored {
    fn size(&self) -> usize {
        self.subject.len() + self.payload.len()
    }
}

struct StreamState {
    limits: StreamLimits,
    /// Retained messages and tombstones, contiguous sequences in order. The front is never a
    /// tombstone, so it is the oldest stored message.
    log: VecDeque<Stored>,
    /// How many entries of `log` are tombstones.
    tombstones: usize,
    /// Payload and subject bytes of the live messages in `log`.
    bytes: usize,
    /// The sequence the next publish gets.
    next_seq: u64,
    consumers: HashMap<String, Consumer>,
}

struct Consumer {
    filter: Filter,
    opts: SubscribeOptions,
    /// Next sequence to consider for a first delivery.
    cursor: u64,
    /// The sequence last delivered for the first time (reported as `delivered_seq`).
    last_delivered: u64,
    /// Delivered, not yet acked: sequence → (deadline, deliveries).
    pending: BTreeMap<u64, Pending>,
    /// `(deadline, sequence)` of every pending message, earliest first.
    timers: BTreeSet<(Instant, u64)>,
    /// Wakes the subscriptions of this durable.
    notify: Arc<Notify>,
}

#[derive(Clone, Copy)]
struct Pending {
    deadline: Instant,
    delivered: u32,
}

impl Consumer {
    /// The lowest sequence this durable may still need.
    fn floor(&self) -> u64 {
        self.pending
            .keys()
            .next()
            .map_or(self.cursor, |&seq| seq.min(self.cursor))
    }

    fn schedule(&mut self, seq: u64, at: Instant, delivered: u32) {
        if let Some(old) = self.pending.insert(
            seq,
            Pending {
                deadline: at,
                delivered,
            },
        ) {
            self.timers.remove(&(old.deadline, seq));
        }
        self.timers.insert((at, seq));
    }
}

/// What a subscription found when it asked for a message.
enum Picked {
    Message(Stored, u32),
    /// Nothing now; a redelivery may be due at this instant.
    Wait(Option<Instant>),
    /// The durable does not exist (cannot happen while durables are never deleted).
    Gone,
}

impl StreamState {
    fn new(limits: StreamLimits) -> Self {
        Self {
            limits,
            log: VecDeque::new(),
            tombstones: 0,
            bytes: 0,
            next_seq: 1,
            consumers: HashMap::new(),
        }
    }

    fn first_seq(&self) -> u64 {
        self.log.front().map_or(self.next_seq, |m| m.seq)
    }

    /// How many messages are stored (tombstones aside).
    fn live(&self) -> usize {
        self.log.len() - self.tombstones
    }

    /// The position of `seq` in `log`, if it is inside it.
    fn index(log: &VecDeque<Stored>, seq: u64) -> Option<usize> {
        let first = log.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        (index < log.len()).then_some(index)
    }

    /// The entry for `seq`, tombstone or not.
    fn slot(log: &VecDeque<Stored>, seq: u64) -> Option<&Stored> {
        log.get(Self::index(log, seq)?)
    }

    /// The stored message `seq`, if it is retained and not deleted.
    fn get(log: &VecDeque<Stored>, seq: u64) -> Option<&Stored> {
        Self::slot(log, seq).filter(|message| !message.deleted)
    }

    fn append(&mut self, subject: &str, payload: Bytes) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let message = Stored {
            seq,
            subject: subject.into(),
            payload,
            deleted: false,
        };
        for consumer in self.consumers.values() {
            if consumer.filter.matches(subject) {
                consumer.notify.notify_waiters();
            }
        }
        self.bytes += message.size();
        self.log.push_back(message);
        self.trim();
        seq
    }

    /// Drops what every durable is done with, then whatever exceeds the limits.
    fn trim(&mut self) {
        // A durable's cursor moves past what its filter rejects, so a durable that sees only
        // part of the family does not hold back the rest until its next delivery. Amortised
        // O(1) per message and durable: cursors only move forward.
        // Tombstones are skipped the same way.
        for consumer in self.consumers.values_mut() {
            while let Some(message) = Self::slot(&self.log, consumer.cursor)
                && (message.deleted || !consumer.filter.matches(&message.subject))
            {
                consumer.cursor += 1;
            }
        }
        if let Some(floor) = self.consumers.values().map(Consumer::floor).min() {
            while self.log.front().is_some_and(|m| m.seq < floor) {
                self.pop_front();
            }
        }
        let max_messages = self.limits.max_messages.max(1);
        while self.live() > max_messages || (self.live() > 1 && self.bytes > self.limits.max_bytes)
        {
            self.pop_front();
        }
    }

    /// Drops the oldest message, then the tombstones behind it, so the front stays live.
    fn pop_front(&mut self) {
        if let Some(message) = self.log.pop_front() {
            self.forget(&message);
        }
        self.pop_tombstones();
    }

    fn pop_tombstones(&mut self) {
        while self.log.front().is_some_and(|m| m.deleted) {
            if let Some(message) = self.log.pop_front() {
                self.forget(&message);
            }
        }
    }

    /// Updates the counters for an entry leaving the log.
    fn forget(&mut self, message: &Stored) {
        if message.deleted {
            self.tombstones -= 1;
        } else {
            self.bytes -= message.size();
        }
    }

    /// Turns `seq` into a tombstone and takes it out of every durable's pending set.
    fn delete(&mut self, seq: u64) -> bool {
        let Some(index) = Self::index(&self.log, seq) else {
            return false;
        };
        let Some(message) = self.log.get_mut(index).filter(|m| !m.deleted) else {
            return false;
        };
        self.bytes -= message.size();
        message.deleted = true;
        message.payload = Bytes::new();
        self.tombstones += 1;
        for consumer in self.consumers.values_mut() {
            if let Some(pending) = consumer.pending.remove(&seq) {
                consumer.timers.remove(&(pending.deadline, seq));
                // A max_ack_pending slot may have opened, and a waiter may be sleeping until
                // this message's deadline.
                consumer.notify.notify_waiters();
            }
        }
        self.pop_tombstones();
        // Removing pending entries may raise the trimming floor.
        self.trim();
        true
    }

    fn info(&self, family: &str) -> StreamInfo {
        let last_seq = self.next_seq - 1;
        // NATS reports 0 for a stream that never held a message, and one past the last
        // sequence for one emptied since.
        let first_seq = match self.log.front() {
            Some(message) => message.seq,
            None if last_seq == 0 => 0,
            None => self.next_seq,
        };
        StreamInfo {
            family: family.to_owned(),
            messages: self.live() as u64,
            first_seq,
            last_seq,
            bytes: self.bytes as u64,
        }
    }

    fn consumer_info(&self, durable: &str, consumer: &Consumer, now: Instant) -> ConsumerInfo {
        // Pending entries whose message is gone to the limits, or that ran out of deliveries
        // and whose last ack_wait passed, are only dropped at the next `pick`; they are not
        // pending any more, so they are not counted.
        let (mut ack_pending, mut redelivered) = (0, 0);
        for (&seq, pending) in &consumer.pending {
            let exhausted = consumer
                .opts
                .max_deliver
                .is_some_and(|max| pending.delivered >= max)
                && pending.deadline <= now;
            if Self::get(&self.log, seq).is_some() && !exhausted {
                ack_pending += 1;
                if pending.delivered > 1 {
                    redelivered += 1;
                }
            }
        }
        // A scan of what is retained past the cursor: fine for an operator's command, and
        // trimming keeps the log short while durables keep up. The cursor may lag behind the
        // front when the limits trimmed messages it never saw.
        let from = consumer.cursor.max(self.first_seq());
        let num_pending = Self::index(&self.log, from).map_or(0, |index| {
            self.log
                .range(index..)
                .filter(|m| !m.deleted && consumer.filter.matches(&m.subject))
                .count()
        });
        ConsumerInfo {
            durable: durable.to_owned(),
            filter: consumer.filter.as_str().to_owned(),
            ack_pending,
            num_pending: num_pending as u64,
            redelivered,
            delivered_seq: consumer.last_delivered,
        }
    }

    fn read(&self, from_seq: u64, limit: usize) -> Vec<StoredMessage> {
        let from = from_seq.max(self.first_seq());
        let Some(index) = Self::index(&self.log, from) else {
            return Vec::new();
        };
        self.log
            .range(index..)
            .filter(|m| !m.deleted)
            .take(limit)
            .map(|m| StoredMessage {
                subject: m.subject.to_string(),
                payload: m.payload.clone(),
                sequence: m.seq,
            })
            .collect()
    }

    /// Hands the next message out to `durable`, redeliveries first.
    fn pick(&mut self, durable: &str, now: Instant) -> Picked {
        let Some(consumer) = self.consumers.get_mut(durable) else {
            return Picked::Gone;
        };
        let log = &self.log;
        let mut dropped = false;
        let mut picked = None;

        while let Some(&(at, seq)) = consumer.timers.first() {
            if at > now {
                break;
            }
            consumer.timers.pop_first();
            let Some(pending) = consumer.pending.get(&seq).copied() else {
                continue;
            };
            let exhausted = consumer
                .opts
                .max_deliver
                .is_some_and(|max| pending.delivered >= max);
            match Self::get(log, seq) {
                Some(message) if !exhausted => {
                    let delivered = pending.delivered.saturating_add(1);
                    consumer.schedule(seq, deadline(now, consumer.opts.ack_wait), delivered);
                    picked = Some(Picked::Message(message.clone(), delivered));
                    break;
                }
                // Terminated after max_deliver, or dropped by the stream limits.
                _ => {
                    consumer.pending.remove(&seq);
                    dropped = true;
                }
            }
        }

        if picked.is_none() && consumer.pending.len() < consumer.opts.max_ack_pending as usize {
            consumer.cursor = consumer
                .cursor
                .max(log.front().map_or(self.next_seq, |m| m.seq));
            while consumer.cursor < self.next_seq {
                let seq = consumer.cursor;
                consumer.cursor += 1;
                if let Some(message) = Self::get(log, seq)
                    && consumer.filter.matches(&message.subject)
                {
                    consumer.last_delivered = seq;
                    consumer.schedule(seq, deadline(now, consumer.opts.ack_wait), 1);
                    picked = Some(Picked::Message(message.clone(), 1));
                    break;
                }
            }
        }

        let picked =
            picked.unwrap_or_else(|| Picked::Wait(consumer.timers.first().map(|&(at, _)| at)));
        if dropped {
            self.trim();
        }
        picked
    }

    fn ack(&mut self, durable: &str, seq: u64) {
        let Some(consumer) = self.consumers.get_mut(durable) else {
            return;
        };
        let Some(pending) = consumer.pending.remove(&seq) else {
            return;
        };
        consumer.timers.remove(&(pending.deadline, seq));
        if consumer.pending.len() + 1 >= consumer.opts.max_ack_pending as usize {
            // A slot under max_ack_pending opened up.
            consumer.notify.notify_waiters();
        }
        self.trim();
    }

    fn nack(&mut self, durable: &str, seq: u64, delivered: u32, at: Instant) {
        let Some(consumer) = self.consumers.get_mut(durable) else {
            return;
        };
        // Only the latest delivery may give the message back: a stale holder (whose ack_wait
        // ran out and whose message went to someone else) must not cut that delivery short.
        if consumer
            .pending
            .get(&seq)
            .is_some_and(|p| p.delivered == delivered)
        {
            consumer.schedule(seq, at, delivered);
            consumer.notify.notify_waiters();
        }
    }
}

/// The memory side of a [`Subscription`].
pub(crate) struct MemorySubscription {
    shared: Arc<Shared>,
    cell: Arc<StreamCell>,
    durable: Arc<str>,
    notify: Arc<Notify>,
}

impl MemorySubscription {
    pub(crate) async fn next(&mut self) -> Option<Result<Delivery>> {
        loop {
            // Registered before looking at the state, so a publish in between is not missed.
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.shared.closed.load(Ordering::Acquire) {
                return None;
            }
            let picked = lock(&self.cell.state).pick(&self.durable, Instant::now());
            match picked {
                Picked::Message(message, delivered) => {
                    return Some(Ok(self.delivery(message, delivered)));
                }
                Picked::Gone => return None,
                Picked::Wait(Some(at)) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                Picked::Wait(None) => notified.await,
            }
        }
    }

    fn delivery(&self, message: Stored, delivered: u32) -> Delivery {
        Delivery {
            subject: message.subject.to_string(),
            payload: message.payload,
            sequence: message.seq,
            delivered,
            acker: Acker::Memory(MemoryAcker {
                shared: Arc::clone(&self.shared),
                cell: Arc::clone(&self.cell),
                durable: Arc::clone(&self.durable),
                seq: message.seq,
                delivered,
            }),
        }
    }
}

/// Acks and nacks one memory delivery.
pub(crate) struct MemoryAcker {
    shared: Arc<Shared>,
    cell: Arc<StreamCell>,
    durable: Arc<str>,
    seq: u64,
    delivered: u32,
}

impl MemoryAcker {
    pub(crate) fn ack(&self) -> Result<()> {
        self.shared.check_open()?;
        lock(&self.cell.state).ack(&self.durable, self.seq);
        Ok(())
    }

    pub(crate) fn nack(&self, delay: Option<Duration>) -> Result<()> {
        self.shared.check_open()?;
        let at = deadline(Instant::now(), delay.unwrap_or_default());
        lock(&self.cell.state).nack(&self.durable, self.seq, self.delivered, at);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
