//! Once-only bookkeeping of event handlers: the `processed_events` table. A handler records the
//! id of the event it applies in the same transaction as its effects ([`claim_event!`]), so a
//! redelivered event (at-least-once delivery) changes nothing the second time.

use crate::StoreError;
use crate::store::{Store, dispatch};

/// Inside a write transaction `$tx`, records that `$handler` processed `$event_id`; evaluates
/// to `true` the first time and `false` when it was recorded before (the caller then rolls
/// back and reports a duplicate). On PostgreSQL a concurrent claim of the same pair waits for
/// the first transaction and then sees its row, so two workers never both apply one event.
macro_rules! claim_event {
    ($tx:ident, $handler:expr, $event_id:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO processed_events (handler, event_id, processed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (handler, event_id) DO NOTHING",
        )
        .bind($handler)
        .bind($event_id)
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1
    };
}
pub(crate) use claim_event;

/// Reads the handlers' bookkeeping. Obtained from [`Store::events`].
#[derive(Clone, Copy, Debug)]
pub struct EventRepo<'a> {
    store: &'a Store,
}

impl<'a> EventRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Whether `handler` has applied the event `event_id`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn processed(&self, handler: &str, event_id: i64) -> Result<bool, StoreError> {
        let found = dispatch!(self.store, pool => {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM processed_events WHERE handler = $1 AND event_id = $2",
            )
            .bind(handler)
            .bind(event_id)
            .fetch_one(pool)
            .await?
        });
        Ok(found > 0)
    }

    /// How many events `handler` has applied.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn count(&self, handler: &str) -> Result<i64, StoreError> {
        let count = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM processed_events WHERE handler = $1")
                .bind(handler)
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }
}
