//! The transactional outbox: events written in the same transaction as the change they
//! announce (checkout writes `order.placed`), relayed to the bus later by the worker, which
//! stamps `sent_at`. Delivery is at least once; consumers are idempotent.
//!
//! # Relaying ([`OutboxRepo::relay`])
//! A batch of unsent events is read in id order, handed to the caller to publish, and the
//! prefix the bus confirmed is stamped `sent_at`. An event is stamped only after the bus
//! confirmed it, so a relay that dies in between publishes it again later (a duplicate the
//! consumers absorb), never loses it.
//! - PostgreSQL: the batch is read `FOR UPDATE SKIP LOCKED` inside a transaction held until the
//!   stamps commit, so several relays (one per worker process) share the outbox without
//!   publishing the same event twice in normal running.
//! - SQLite: no row locks; the batch is read, published, then stamped, without holding the
//!   database's single write lock across the publish (checkouts would queue behind it). Run
//!   one relay per SQLite database (`strata up` does).

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
                "SELECT id, topic, payload, created_at, sent_at FROM outbox \
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
                "SELECT id, topic, payload, created_at, sent_at FROM outbox \
                 WHERE topic = $1 ORDER BY id",
            )
            .bind(topic)
            .fetch_all(pool)
            .await?
        });
        Ok(messages)
    }

    /// Relays up to `limit` unsent events (see the module docs): `publish` receives them in id
    /// order and returns how many of them, from the first, the bus confirmed, and the error
    /// that stopped it, if any. Those are stamped sent. Returns the number stamped and
    /// `publish`'s error.
    ///
    /// # Errors
    /// When the database fails; the events then stay unsent (and may have been published:
    /// they will be again).
    pub async fn relay<F, Fut, E>(
        &self,
        limit: u32,
        publish: F,
    ) -> Result<(usize, Option<E>), StoreError>
    where
        F: FnOnce(Vec<OutboxMessage>) -> Fut,
        Fut: Future<Output = (Vec<i64>, Option<E>)>,
    {
        macro_rules! select_unsent {
            () => {
                "SELECT id, topic, payload, created_at, sent_at FROM outbox \
                 WHERE sent_at IS NULL ORDER BY id LIMIT $1"
            };
        }
        match &self.store.backend {
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let batch: Vec<OutboxMessage> =
                    sqlx::query_as(concat!(select_unsent!(), " FOR UPDATE SKIP LOCKED"))
                        .bind(i64::from(limit))
                        .fetch_all(&mut *tx)
                        .await?;
                if batch.is_empty() {
                    tx.rollback().await?;
                    return Ok((0, None));
                }
                let (sent, error) = publish(batch).await;
                if !sent.is_empty() {
                    sqlx::query("UPDATE outbox SET sent_at = $2 WHERE id = ANY($1)")
                        .bind(&sent)
                        .bind(DbTime::now())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok((sent.len(), error))
            }
            Backend::Sqlite(pool) => {
                let batch: Vec<OutboxMessage> = sqlx::query_as(select_unsent!())
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?;
                if batch.is_empty() {
                    return Ok((0, None));
                }
                let (sent, error) = publish(batch).await;
                if !sent.is_empty() {
                    let now = DbTime::now();
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                    for id in &sent {
                        sqlx::query("UPDATE outbox SET sent_at = $2 WHERE id = $1")
                            .bind(id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
                Ok((sent.len(), error))
            }
        }
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
