//! Orders: the `orders`, `order_lines` and `order_status_history` tables, read by the api and
//! moved along their life by the worker's event handlers ([`OrderRepo::advance`]). The
//! transaction that creates an order from a cart, with the `idempotency_keys` table, is in
//! `checkout.rs`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::events::claim_event;
use crate::store::{DbTime, Store, dispatch, retry_on_conflict};
use crate::{Page, StoreError};

/// The outbox topic of a new order.
pub const ORDER_PLACED: &str = "order.placed";
/// The outbox topic of an order whose payment the provider approved.
pub const ORDER_PAID: &str = "order.paid";
/// The outbox topic of an order whose payment the provider declined (its stock went back).
pub const ORDER_PAYMENT_FAILED: &str = "order.payment_failed";
/// The outbox topic of an order handed to the carrier.
pub const ORDER_SHIPPED: &str = "order.shipped";

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Checked out: stock reserved, not paid yet.
    Placed,
    /// Payment confirmed.
    Paid,
    /// Payment declined: the order ends here and its stock went back.
    PaymentFailed,
    /// Handed to the carrier.
    Shipped,
    /// Cancelled; its stock went back.
    Cancelled,
}

impl OrderStatus {
    /// The status as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::PaymentFailed => "payment_failed",
            Self::Shipped => "shipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// True for the statuses an order never leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Self::PaymentFailed | Self::Shipped | Self::Cancelled)
    }

    pub(crate) fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "placed" => Self::Placed,
            "paid" => Self::Paid,
            "payment_failed" => Self::PaymentFailed,
            "shipped" => Self::Shipped,
            "cancelled" => Self::Cancelled,
            other => {
                return Err(StoreError::Database(sqlx::Error::Decode(
                    format!("unknown order status {other:?}").into(),
                )));
            }
        })
    }
}

/// An order with its lines and status history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Increasing, never reused.
    pub id: i64,
    /// Who placed it.
    pub user_id: i64,
    /// Where it is now.
    pub status: OrderStatus,
    /// The region it was taxed for.
    pub region: String,
    /// That region's tax rate in basis points.
    pub tax_rate_bps: i64,
    /// The coupon applied, if any.
    pub coupon_code: Option<String>,
    /// Sum of the line totals, in cents.
    pub subtotal_cents: i64,
    /// The coupon's discount, in cents.
    pub discount_cents: i64,
    /// Tax, in cents.
    pub tax_cents: i64,
    /// `subtotal − discount + tax`, in cents.
    pub total_cents: i64,
    /// When it was placed.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When its status last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Its lines, in the order they were written.
    pub lines: Vec<OrderLine>,
    /// Every status it has had, oldest first.
    pub history: Vec<StatusChange>,
}

/// One line of an order, at the price quoted at checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderLine {
    /// The product.
    pub product_id: i64,
    /// Its sku at checkout.
    pub sku: String,
    /// Its name at checkout.
    pub name: String,
    /// Unit price in cents at checkout.
    pub unit_price_cents: i64,
    /// Units.
    pub quantity: i64,
    /// Quantity-tier discount on the line, in cents.
    pub discount_cents: i64,
    /// `unit_price × quantity − discount`, in cents.
    pub total_cents: i64,
}

/// A status an order entered, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    /// The status entered.
    pub status: OrderStatus,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One page of orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderPage {
    /// The orders of this page.
    pub items: Vec<Order>,
    /// How many orders there are in total.
    pub total: i64,
    /// The 1-based page number asked for.
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
}

/// Which orders [`OrderRepo::list`] returns: those passing every filter given (none given:
/// every order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    /// Only this customer's orders.
    pub user_id: Option<i64>,
    /// Only the orders now in this status.
    pub status: Option<OrderStatus>,
}

/// The payload of an `order.placed` outbox event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// The new order.
    pub order_id: i64,
    /// Who placed it.
    pub user_id: i64,
    /// What it costs, in cents.
    pub total_cents: i64,
    /// What it reserved.
    pub lines: Vec<PlacedLine>,
    /// When it was placed.
    #[serde(with = "time::serde::rfc3339")]
    pub placed_at: OffsetDateTime,
}

/// A line of an [`OrderPlaced`] event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLine {
    /// The product.
    pub product_id: i64,
    /// Units reserved.
    pub quantity: i64,
}

/// The payload of the events that follow `order.placed` (`order.paid`,
/// `order.payment_failed`, `order.shipped`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    /// The order.
    pub order_id: i64,
    /// Its customer.
    pub user_id: i64,
    /// The status it entered.
    pub status: OrderStatus,
    /// What it costs, in cents.
    pub total_cents: i64,
    /// When it entered the status.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What an event handler's transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The effects were written, with the event recorded as processed.
    Done,
    /// The handler had processed this event before: nothing was written.
    Duplicate,
    /// The order was not in the status the event expects (or does not exist): only the event
    /// was recorded as processed, so it is not looked at again.
    Skipped,
}

/// A status change asked of [`OrderRepo::advance`] by an event handler.
#[derive(Clone, Copy, Debug)]
pub struct Transition<'a> {
    /// The handler (its name keys the once-only bookkeeping).
    pub handler: &'a str,
    /// The event being handled (its outbox id).
    pub event_id: i64,
    /// The order to move.
    pub order_id: i64,
    /// The status the order must be in.
    pub from: OrderStatus,
    /// The status it moves to.
    pub to: OrderStatus,
    /// The W3C `traceparent` of the handler's run, kept with the event that announces the
    /// new status so the trace goes on with it.
    pub traceparent: Option<&'a str>,
}

/// The outbox topic that announces an order entering `status`.
pub fn status_topic(status: OrderStatus) -> Option<&'static str> {
    match status {
        OrderStatus::Placed => Some(ORDER_PLACED),
        OrderStatus::Paid => Some(ORDER_PAID),
        OrderStatus::PaymentFailed => Some(ORDER_PAYMENT_FAILED),
        OrderStatus::Shipped => Some(ORDER_SHIPPED),
        OrderStatus::Cancelled => None,
    }
}

/// An `orders` row.
#[derive(sqlx::FromRow)]
struct OrderRow {
    id: i64,
    user_id: i64,
    status: String,
    region: String,
    tax_rate_bps: i64,
    coupon_code: Option<String>,
    subtotal_cents: i64,
    discount_cents: i64,
    tax_cents: i64,
    total_cents: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// The columns of [`OrderRow`].
macro_rules! order_columns {
    () => {
        "id, user_id, status, region, tax_rate_bps, coupon_code, subtotal_cents, \
         discount_cents, tax_cents, total_cents, created_at, updated_at"
    };
}

/// The `WHERE` condition of [`OrderFilter`]: `$1` the user id, `$2` the status, each NULL
/// when not filtered on.
macro_rules! order_filter {
    () => {
        "($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2)"
    };
}

/// An `order_lines` row with its order.
#[derive(sqlx::FromRow)]
struct LineRow {
    order_id: i64,
    #[sqlx(flatten)]
    line: OrderLine,
}

/// An `order_status_history` row.
#[derive(sqlx::FromRow)]
struct HistoryRow {
    order_id: i64,
    status: String,
    at: OffsetDateTime,
}

/// Reads orders and runs checkouts. Obtained from [`Store::orders`].
#[derive(Clone, Copy, Debug)]
pub struct OrderRepo<'a> {
    pub(crate) store: &'a Store,
}

impl<'a> OrderRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The order with this id, with its lines and history, or `None`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn get(&self, id: i64) -> Result<Option<Order>, StoreError> {
        let (row, lines, history): (OrderRow, Vec<LineRow>, Vec<HistoryRow>) = dispatch!(self.store, pool => {
            // One connection for the three reads: one pool checkout instead of three.
            let mut conn = pool.acquire().await?;
            let row = sqlx::query_as(concat!(
                "SELECT ", order_columns!(), " FROM orders WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let lines = sqlx::query_as(
                "SELECT order_id, product_id, sku, name, unit_price_cents, quantity, \
                 discount_cents, total_cents FROM order_lines WHERE order_id = $1 \
                 ORDER BY position",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            let history = sqlx::query_as(
                "SELECT order_id, status, at FROM order_status_history WHERE order_id = $1 \
                 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            (row, lines, history)
        });
        Ok(assemble(vec![row], lines, history)?.pop())
    }

    /// One page of a user's orders, newest first, with the user's order count.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn list_for_user(&self, user_id: i64, page: Page) -> Result<OrderPage, StoreError> {
        let filter = OrderFilter {
            user_id: Some(user_id),
            status: None,
        };
        self.list(filter, page).await
    }

    /// One page of the orders that pass `filter`, newest first, with how many pass it.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn list(&self, filter: OrderFilter, page: Page) -> Result<OrderPage, StoreError> {
        let user_id = filter.user_id;
        let status = filter.status.map(OrderStatus::as_str);
        // An absent filter is a NULL parameter that passes every row: one statement per read
        // for every combination of filters.
        let (total, rows, lines, history): (i64, Vec<OrderRow>, Vec<LineRow>, Vec<HistoryRow>) = dispatch!(self.store, pool => {
            let total = sqlx::query_scalar(concat!(
                "SELECT COUNT(*) FROM orders WHERE ", order_filter!()
            ))
            .bind(user_id)
            .bind(status)
            .fetch_one(pool)
            .await?;
            let rows = sqlx::query_as(concat!(
                "SELECT ", order_columns!(), " FROM orders WHERE ", order_filter!(),
                " ORDER BY id DESC LIMIT $3 OFFSET $4"
            ))
            .bind(user_id)
            .bind(status)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            let lines = sqlx::query_as(concat!(
                "SELECT order_id, product_id, sku, name, unit_price_cents, quantity, \
                 discount_cents, total_cents FROM order_lines WHERE order_id IN \
                 (SELECT id FROM orders WHERE ", order_filter!(), " ORDER BY id DESC \
                  LIMIT $3 OFFSET $4) ORDER BY order_id, position"
            ))
            .bind(user_id)
            .bind(status)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            let history = sqlx::query_as(concat!(
                "SELECT order_id, status, at FROM order_status_history WHERE order_id IN \
                 (SELECT id FROM orders WHERE ", order_filter!(), " ORDER BY id DESC \
                  LIMIT $3 OFFSET $4) ORDER BY order_id, id"
            ))
            .bind(user_id)
            .bind(status)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            (total, rows, lines, history)
        });
        Ok(OrderPage {
            items: assemble(rows, lines, history)?,
            total,
            page: page.page(),
            per_page: page.per_page(),
        })
    }

    /// Moves an order along its life on behalf of an event handler, once per
    /// `(handler, event_id)`, in one transaction: record the event as processed; move the order
    /// from `step.from` to `step.to` (a conditional update, so an order that moved on is left
    /// alone); on `payment_failed` put its stock back; append the status to its history; write
    /// the event that announces the new status to the outbox.
    ///
    /// # Errors
    /// When the database fails ([`StoreError::Conflict`] after the retries).
    pub async fn advance(&self, step: Transition<'_>) -> Result<Applied, StoreError> {
        retry_on_conflict(
            move || self.try_advance(step),
            |e| matches!(e, StoreError::Conflict(_)),
        )
        .await
    }

    async fn try_advance(&self, step: Transition<'_>) -> Result<Applied, StoreError> {
        let begin = self.store.dialect().begin_write();
        let now = DbTime::now();
        let topic = status_topic(step.to);
        let applied = dispatch!(self.store, pool => {
            let mut tx = pool.begin_with(begin).await?;
            if !claim_event!(tx, step.handler, step.event_id, now) {
                tx.rollback().await?;
                return Ok(Applied::Duplicate);
            }
            let moved: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE orders SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2 \
                 RETURNING user_id, total_cents",
            )
            .bind(step.order_id)
            .bind(step.from.as_str())
            .bind(step.to.as_str())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((user_id, total_cents)) = moved else {
                tx.commit().await?;
                return Ok(Applied::Skipped);
            };
            if step.to == OrderStatus::PaymentFailed {
                // Product id order, the lock order checkout uses: no deadlock between them.
                let lines: Vec<(i64, i64)> = sqlx::query_as(
                    "SELECT product_id, quantity FROM order_lines WHERE order_id = $1 \
                     ORDER BY product_id",
                )
                .bind(step.order_id)
                .fetch_all(&mut *tx)
                .await?;
                for (product_id, quantity) in lines {
                    sqlx::query("UPDATE products SET stock = stock + $2 WHERE id = $1")
                        .bind(product_id)
                        .bind(quantity)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query("INSERT INTO order_status_history (order_id, status, at) VALUES ($1, $2, $3)")
                .bind(step.order_id)
                .bind(step.to.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if let Some(topic) = topic {
                let event = OrderStatusChanged {
                    order_id: step.order_id,
                    user_id,
                    status: step.to,
                    total_cents,
                    at: now.0,
                };
                let payload = serde_json::to_string(&event)
                    .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))?;
                sqlx::query(
                    "INSERT INTO outbox (topic, payload, created_at, traceparent) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(topic)
                .bind(payload)
                .bind(now)
                .bind(step.traceparent)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Applied::Done
        });
        Ok(applied)
    }

    /// How many orders are in each status (all users), for operators and tests.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn count_by_status(&self) -> Result<HashMap<OrderStatus, i64>, StoreError> {
        let rows: Vec<(String, i64)> = dispatch!(self.store, pool => {
            sqlx::query_as("SELECT status, COUNT(*) FROM orders GROUP BY status")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(status, n)| Ok((OrderStatus::parse(&status)?, n)))
            .collect()
    }

    /// How many orders exist (all users).
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let count = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM orders").fetch_one(pool).await?
        });
        Ok(count)
    }
}

/// Builds orders from their rows, keeping the order of `rows`.
fn assemble(
    rows: Vec<OrderRow>,
    lines: Vec<LineRow>,
    history: Vec<HistoryRow>,
) -> Result<Vec<Order>, StoreError> {
    let mut lines_of: HashMap<i64, Vec<OrderLine>> = HashMap::new();
    for row in lines {
        lines_of.entry(row.order_id).or_default().push(row.line);
    }
    let mut history_of: HashMap<i64, Vec<StatusChange>> = HashMap::new();
    for row in history {
        history_of
            .entry(row.order_id)
            .or_default()
            .push(StatusChange {
                status: OrderStatus::parse(&row.status)?,
                at: row.at,
            });
    }
    rows.into_iter()
        .map(|row| {
            Ok(Order {
                id: row.id,
                user_id: row.user_id,
                status: OrderStatus::parse(&row.status)?,
                region: row.region,
                tax_rate_bps: row.tax_rate_bps,
                coupon_code: row.coupon_code,
                subtotal_cents: row.subtotal_cents,
                discount_cents: row.discount_cents,
                tax_cents: row.tax_cents,
                total_cents: row.total_cents,
                created_at: row.created_at,
                updated_at: row.updated_at,
                lines: lines_of.remove(&row.id).unwrap_or_default(),
                history: history_of.remove(&row.id).unwrap_or_default(),
            })
        })
        .collect()
}
