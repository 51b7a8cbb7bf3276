//! The transactional outbox: events written in the same transaction as the change they
//! announce (checkout writes `order.placed`), relayed to the bus later by the worker, which
//! stamps `sent_at`. Delivery is at least once; consumers are idempotent. Each event keeps the
//! trace context (`traceparent`) of the work that wrote it, which travels on with it.
//!
//! # Relaying ([`OutboxRepo::relay`])
//! Three steps, none of which holds a transaction or a row lock while the bus is waited for:
//! 1. *Claim*: one statement (its own short transaction) takes up to a batch of unsent,
//!    unclaimed events in id order and sets their `claimed_until` lease. On PostgreSQL the
//!    candidates are picked `FOR UPDATE SKIP LOCKED`, so relays claiming at the same moment
//!    take different events; a claimed event is skipped by every other relay until its
//!    lease ends. On SQLite the statement runs under the database's single write lock.
//! 2. *Publish*, by the caller, outside any transaction.
//! 3. *Stamp*: one statement sets `sent_at` on the events the bus confirmed (a prefix of the
//!    batch, in id order); another gives up the claims on the rest, so any relay publishes
//!    them next round.
//!
//! An event is stamped only after the bus confirmed it, so a relay that dies in between
//! publishes it again later, or another relay does once the claim has expired (a duplicate
//! the consumers absorb), never loses it. Checkouts and handlers writing new events never
//! wait for a relay's publish.

use std::future::Future;

use serde::Serialize;
use time::OffsetDateTime;

use crate::StoreError;
use crate::store::{Backend, DbTime, Store, dispatch};

/// One event in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OutboxMessage {
    /// Increasing: relaying in id order keeps the events of one order in order.
    pub id: i64,
    /// The bus subject (`order.placed`).
    pub topic: String,
    /// The event as JSON text.
    pub payload: String,
    /// When the change committed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the relay published it; `None` while pending.
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    /// The W3C `traceparent` of the work that wrote it (a checkout's request, a handler's
    /// run), which the relay passes on with the event; `None` when it had none.
    pub traceparent: Option<String>,
}

/// Reads and stamps the outbox. Obtained from [`Store::outbox`].
#[derive(Clone, Copy, Debug)]
pub struct OutboxRepo<'a> {
    store: &'a Store,
}

impl<'a> OutboxRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Up to `limit` events not yet sent, oldest first.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn unsent(&self, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let messages = dispatch!(self.store, pool => {
            sqlx::query_as(
                "SELECT id, topic, payload, created_at, sent_at, traceparent FROM outbox \
                 WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        Ok(messages)
    }

    /// All events of a topic, oldest first, sent or not (for tests and inspection).
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn by_topic(&self, topic: &str) -> Result<Vec<OutboxMessage>, StoreError> {
        let messages = dispatch!(self.store, pool => {
            sqlx::query_as(
                "SELECT id, topic, payload, created_at, sent_at, traceparent FROM outbox \
                 WHERE topic = $1 ORDER BY id",
            )
            .bind(topic)
            .fetch_all(pool)
            .await?
        });
        Ok(messages)
    }

    /// Relays up to `limit` unsent events (see the module docs): claims them for `lease`,
    /// hands them to `publish` in id order, which returns the ids of those, from the first,
    /// that the bus confirmed, and the error that stopped it, if any; those are stamped sent
    /// and the others' claims given up. Returns the number stamped and `publish`'s error.
    ///
    /// `lease` must be longer than a publish can take: a relay whose claim ran out may see
    /// another relay publish the same events (duplicates, absorbed by the consumers).
    /// Dropping the returned future mid-publish stamps nothing; the claims then run out.
    ///
    /// # Errors
    /// When the database fails; the events then stay unsent (and may have been published:
    /// they will be again).
    pub async fn relay<F, Fut, E>(
        &self,
        limit: u32,
        lease: std::time::Duration,
        publish: F,
    ) -> Result<(usize, Option<E>), StoreError>
    where
        F: FnOnce(Vec<OutboxMessage>) -> Fut,
        Fut: Future<Output = (Vec<i64>, Option<E>)>,
    {
        let mut batch = self.claim(limit, lease).await?;
        if batch.is_empty() {
            return Ok((0, None));
        }
        // RETURNING gives no order; publishing does.
        batch.sort_unstable_by_key(|message| message.id);
        let claimed: Vec<i64> = batch.iter().map(|message| message.id).collect();
        let (sent, error) = publish(batch).await;
        let unsent: Vec<i64> = claimed
            .into_iter()
            .filter(|id| !sent.contains(id))
            .collect();
        self.stamp(&sent).await?;
        self.unclaim(&unsent).await?;
        Ok((sent.len(), error))
    }

    /// Claims up to `limit` unsent events whose claim (if any) has expired, for `lease`.
    async fn claim(
        &self,
        limit: u32,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let now = DbTime::now();
        let lease = time::Duration::try_from(lease).unwrap_or(time::Duration::MAX);
        let until = DbTime(now.0.saturating_add(lease));
        macro_rules! claim {
            ($lock:literal) => {
                concat!(
                    "UPDATE outbox SET claimed_until = $2 WHERE id IN (",
                    "SELECT id FROM outbox WHERE sent_at IS NULL ",
                    "AND (claimed_until IS NULL OR claimed_until < $3) ",
                    "ORDER BY id LIMIT $1",
                    $lock,
                    ") RETURNING id, topic, payload, created_at, sent_at, traceparent"
                )
            };
        }
        let batch = match &self.store.backend {
            Backend::Postgres(pool) => {
                sqlx::query_as(claim!(" FOR UPDATE SKIP LOCKED"))
                    .bind(i64::from(limit))
                    .bind(until)
                    .bind(now)
                    .fetch_all(pool)
                    .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_as(claim!(""))
                    .bind(i64::from(limit))
                    .bind(until)
                    .bind(now)
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(batch)
    }

    /// Stamps the events `ids` sent, in one statement.
    async fn stamp(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = DbTime::now();
        match &self.store.backend {
            Backend::Postgres(pool) => {
                sqlx::query("UPDATE outbox SET sent_at = $2 WHERE id = ANY($1)")
                    .bind(ids)
                    .bind(now)
                    .execute(pool)
                    .await?;
            }
            Backend::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE outbox SET sent_at = $2 WHERE id IN (SELECT value FROM json_each($1))",
                )
                .bind(json_ids(ids))
                .bind(now)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Gives up the claims on the events `ids`, so that the next round of any relay takes them.
    async fn unclaim(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        match &self.store.backend {
            Backend::Postgres(pool) => {
                sqlx::query(
                    "UPDATE outbox SET claimed_until = NULL WHERE id = ANY($1) AND sent_at IS NULL",
                )
                .bind(ids)
                .execute(pool)
                .await?;
            }
            Backend::Sqlite(pool) => {
                sqlx::query(
                    "UPDATE outbox SET claimed_until = NULL \
                     WHERE id IN (SELECT value FROM json_each($1)) AND sent_at IS NULL",
                )
                .bind(json_ids(ids))
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// How many events wait to be relayed, and when the oldest of them was written.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn pending(&self) -> Result<(i64, Option<OffsetDateTime>), StoreError> {
        let row = dispatch!(self.store, pool => {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE sent_at IS NULL",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(row)
    }

    /// Deletes events sent before `sent_before`; returns how many.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn prune(&self, sent_before: OffsetDateTime) -> Result<u64, StoreError> {
        let deleted = dispatch!(self.store, pool => {
            sqlx::query("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1")
                .bind(DbTime(sent_before))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted)
    }

    /// Stamps an event as sent; false when it was already stamped or does not exist.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn mark_sent(&self, id: i64) -> Result<bool, StoreError> {
        let stamped = dispatch!(self.store, pool => {
            sqlx::query("UPDATE outbox SET sent_at = $2 WHERE id = $1 AND sent_at IS NULL")
                .bind(id)
                .bind(DbTime::now())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(stamped == 1)
    }
}

/// Ids as a JSON array, for SQLite's `json_each` (it has no array parameters).
fn json_ids(ids: &[i64]) -> String {
    let items: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("[{}]", items.join(","))
}
