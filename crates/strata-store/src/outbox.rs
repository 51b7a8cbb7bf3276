//! The transactional outbox: events written in the same transaction as the change they
//! announce (checkout writes `order.placed`), relayed to the bus later by the worker, which
//! stamps `sent_at`. Delivery is at least once; consumers are idempotent.

use serde::Serialize;
use time::OffsetDateTime;

use crate::StoreError;
use crate::store::{DbTime, Store, dispatch};

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
