//! Customers' notifications: one per status change of their orders, written by the worker's
//! notification handler (once per event, see [`crate::events`]) and read by the api.

use serde::Serialize;
use time::OffsetDateTime;

use crate::events::claim_event;
use crate::orders::OrderStatus;
use crate::store::{DbTime, Store, dispatch, retry_on_conflict};
use crate::{Applied, Page, StoreError};

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Increasing, never reused.
    pub id: i64,
    /// The order it is about.
    pub order_id: i64,
    /// The status the order entered.
    pub kind: OrderStatus,
    /// A sentence for the customer.
    pub message: String,
    /// When the order entered the status.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One page of a user's notifications, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotificationPage {
    /// The notifications of this page.
    pub items: Vec<Notification>,
    /// How many the user has in total.
    pub total: i64,
    /// The 1-based page number asked for.
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
}

/// What [`NotificationRepo::record`] is asked to write.
#[derive(Clone, Copy, Debug)]
pub struct NewNotification<'a> {
    /// The handler writing it (keys the once-only bookkeeping).
    pub handler: &'a str,
    /// The event it comes from (its outbox id).
    pub event_id: i64,
    /// The customer.
    pub user_id: i64,
    /// The order.
    pub order_id: i64,
    /// The status the order entered.
    pub kind: OrderStatus,
    /// A sentence for the customer.
    pub message: &'a str,
    /// When the order entered the status (the event's time, not the handler's): notifications
    /// list in the order the changes happened, whatever order the handler saw them in.
    pub at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct NotificationRow {
    id: i64,
    order_id: i64,
    kind: String,
    message: String,
    created_at: OffsetDateTime,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;
    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            order_id: row.order_id,
            kind: OrderStatus::parse(&row.kind)?,
            message: row.message,
            created_at: row.created_at,
        })
    }
}

/// Writes and reads notifications. Obtained from [`Store::notifications`].
#[derive(Clone, Copy, Debug)]
pub struct NotificationRepo<'a> {
    store: &'a Store,
}

impl<'a> NotificationRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Records a notification once per `(handler, event_id)`. [`Applied::Skipped`] when the
    /// order does not exist or is not the user's (the event is still marked processed).
    ///
    /// # Errors
    /// When the database fails ([`StoreError::Conflict`] after the retries).
    pub async fn record(&self, new: NewNotification<'_>) -> Result<Applied, StoreError> {
        retry_on_conflict(
            move || self.try_record(new),
            |e| matches!(e, StoreError::Conflict(_)),
        )
        .await
    }

    async fn try_record(&self, new: NewNotification<'_>) -> Result<Applied, StoreError> {
        let begin = self.store.dialect().begin_write();
        let now = DbTime::now();
        let at = DbTime(new.at);
        let applied = dispatch!(self.store, pool => {
            let mut tx = pool.begin_with(begin).await?;
            if !claim_event!(tx, new.handler, new.event_id, now) {
                tx.rollback().await?;
                return Ok(Applied::Duplicate);
            }
            let written = sqlx::query(
                "INSERT INTO notifications (user_id, order_id, kind, message, event_id, created_at) \
                 SELECT $1, $2, $3, $4, $5, $6 \
                 WHERE EXISTS (SELECT 1 FROM orders WHERE id = $2 AND user_id = $1) \
                 ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(new.user_id)
            .bind(new.order_id)
            .bind(new.kind.as_str())
            .bind(new.message)
            .bind(new.event_id)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if written == 1 { Applied::Done } else { Applied::Skipped }
        });
        Ok(applied)
    }

    /// One page of a user's notifications, newest status change first.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn list_for_user(
        &self,
        user_id: i64,
        page: Page,
    ) -> Result<NotificationPage, StoreError> {
        let (total, rows): (i64, Vec<NotificationRow>) = dispatch!(self.store, pool => {
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query_as(
                "SELECT id, order_id, kind, message, created_at FROM notifications \
                 WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            )
            .bind(user_id)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            (total, rows)
        });
        Ok(NotificationPage {
            items: rows
                .into_iter()
                .map(Notification::try_from)
                .collect::<Result<_, _>>()?,
            total,
            page: page.page(),
            per_page: page.per_page(),
        })
    }

    /// Every notification about one order, oldest status change first (for tests and
    /// inspection).
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn for_order(&self, order_id: i64) -> Result<Vec<Notification>, StoreError> {
        let rows: Vec<NotificationRow> = dispatch!(self.store, pool => {
            sqlx::query_as(
                "SELECT id, order_id, kind, message, created_at FROM notifications \
                 WHERE order_id = $1 ORDER BY created_at, id",
            )
            .bind(order_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(Notification::try_from).collect()
    }

    /// How many notifications exist, and how many distinct (order, kind) pairs they cover: the
    /// two are equal when no status change was notified twice.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn count(&self) -> Result<(i64, i64), StoreError> {
        let counts = dispatch!(self.store, pool => {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM notifications), \
                 (SELECT COUNT(*) FROM (SELECT DISTINCT order_id, kind FROM notifications) d)",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(counts)
    }
}
