//! The dead-letter stream: events a handler gave up on, kept for an operator.
//!
//! A handler's delivery that fails `max_deliveries` times (or at once, for a malformed event)
//! is published on `dlq.<handler>` (the `dlq` family's stream) as a [`DeadLetter`] and then
//! acknowledged, so it stops looping. `strata events dlq list` reads the stream;
//! `strata events dlq replay [ID…]` publishes each event again on its original subject and
//! deletes it from the stream. Replaying is safe because every handler is idempotent: handlers
//! that had applied the event ignore it, the one that failed applies it now.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_bus::{AnyBus, Bus, BusError};
use time::OffsetDateTime;

/// The family of the dead-letter stream.
pub const DLQ_FAMILY: &str = "dlq";

/// Most dead letters one listing returns.
pub const MAX_LIST: usize = 1000;

/// One event a handler gave up on, as stored in the dead-letter stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The handler that gave up.
    pub handler: String,
    /// The subject the event was published on.
    pub subject: String,
    /// Its sequence in its own stream.
    pub sequence: u64,
    /// How many times it was delivered to the handler.
    pub deliveries: u32,
    /// The handler's last error.
    pub error: String,
    /// When the handler gave up.
    #[serde(with = "time::serde::rfc3339")]
    pub failed_at: OffsetDateTime,
    /// The event's payload as published (UTF-8, as every strata event is JSON).
    pub payload: String,
}

/// A dead letter with its id (its sequence in the dead-letter stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The id `dlq replay` takes.
    pub id: u64,
    /// The dead letter.
    #[serde(flatten)]
    pub letter: DeadLetter,
}

/// What a replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Ids published again and removed from the stream.
    pub replayed: Vec<u64>,
    /// Ids asked for that are not in the stream.
    pub missing: Vec<u64>,
}

/// Publishes `letter` on `dlq.<handler>`.
///
/// # Errors
/// When the bus does not confirm the write (the delivery is then left unacked and retried).
pub async fn send(bus: &AnyBus, letter: &DeadLetter) -> Result<u64, BusError> {
    let payload = serde_json::to_vec(letter).unwrap_or_default();
    bus.publish(
        &format!("{DLQ_FAMILY}.{}", letter.handler),
        Bytes::from(payload),
    )
    .await
}

/// Up to `limit` dead letters from id `from` on, oldest first. Entries that are not dead
/// letters (written by something else) are skipped.
///
/// # Errors
/// When the bus cannot be read.
pub async fn list(bus: &AnyBus, from: u64, limit: usize) -> Result<Vec<Listed>, BusError> {
    let stored = bus
        .read(DLQ_FAMILY, from.max(1), limit.min(MAX_LIST))
        .await?;
    Ok(stored
        .into_iter()
        .filter_map(|m| {
            let letter = serde_json::from_slice(&m.payload).ok()?;
            Some(Listed {
                id: m.sequence,
                letter,
            })
        })
        .collect())
}

/// Replays the dead letters `ids` (every one in the stream when empty): each event is
/// published again on its subject, then removed from the dead-letter stream.
///
/// # Errors
/// When the bus fails; ids replayed before the failure are gone from the stream.
pub async fn replay(bus: &AnyBus, ids: &[u64]) -> Result<Replayed, BusError> {
    let mut out = Replayed::default();
    let letters: Vec<Listed> = if ids.is_empty() {
        let mut all = Vec::new();
        let mut from = 1;
        loop {
            let page = list(bus, from, MAX_LIST).await?;
            let Some(last) = page.last() else { break };
            from = last.id + 1;
            all.extend(page);
        }
        all
    } else {
        let mut found = Vec::with_capacity(ids.len());
        for &id in ids {
            match list(bus, id, 1).await?.pop() {
                Some(letter) if letter.id == id => found.push(letter),
                _ => out.missing.push(id),
            }
        }
        found
    };
    for letter in letters {
        bus.publish(
            &letter.letter.subject,
            Bytes::from(letter.letter.payload.into_bytes()),
        )
        .await?;
        bus.delete(DLQ_FAMILY, letter.id).await?;
        out.replayed.push(letter.id);
    }
    Ok(out)
}
