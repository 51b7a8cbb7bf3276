//! Orders and checkout: the `orders`, `order_lines`, `order_status_history` and
//! `idempotency_keys` tables, and the one transaction that turns a cart into an order.
//!
//! # The checkout transaction ([`OrderRepo::checkout`])
//! 1. Claim the idempotency key: `INSERT … ON CONFLICT (user_id, idempotency_key) DO NOTHING`.
//!    When the row exists already, this is a replay: the same request fingerprint returns the
//!    stored order, another one is refused. A concurrent replay blocks on the uncommitted key
//!    (PostgreSQL waits for the inserting transaction; SQLite runs one writer at a time) and
//!    then reads the winner's order, so one key never makes two orders.
//! 2. Lock the cart (`UPDATE carts … RETURNING id`, the lock cart writes take too) and take
//!    its lines with `DELETE … RETURNING`: a second checkout of the same cart finds it empty.
//! 3. Reserve stock line by line, in product id order (one lock order for every transaction,
//!    so concurrent checkouts cannot deadlock), with the conditional update
//!    `UPDATE products SET stock = stock - q WHERE id = p AND stock >= q RETURNING …`. No row
//!    means not enough stock: the transaction rolls back and nothing was sold. Stock can never
//!    go below zero, whatever the concurrency.
//! 4. Price the reserved lines (at the prices the update returned, under the row lock) with the
//!    caller's pricing function, and write the order, its lines, its first status and an
//!    `order.placed` outbox event; point the idempotency key at the order; commit.
//!
//! SQLite opens the transaction with `BEGIN IMMEDIATE` (writers queue on the busy timeout
//! instead of failing); PostgreSQL runs it at READ COMMITTED, where the conditional update
//! re-checks the stock of a row another checkout just changed. A conflict that still happens
//! (deadlock, serialization failure, SQLite busy past its timeout) reruns the whole
//! transaction a few times. A failed checkout leaves no trace: the key is released with the
//! rollback, so the client may retry with the same key.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::coupons::{Coupon, CouponRow, coupon_columns};
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When its status last changed.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Its lines, in the order they were written.
    pub lines: Vec<OrderLine>,
    /// Every status it has had, oldest first.
    pub history: Vec<StatusChange>,
}

/// One line of an order, at the price quoted at checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatusChange {
    /// The status entered.
    pub status: OrderStatus,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// One page of orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

/// What a checkout is asked to do.
#[derive(Clone, Copy, Debug)]
pub struct CheckoutRequest<'a> {
    /// The buyer, whose cart is checked out.
    pub user_id: i64,
    /// The client's `Idempotency-Key`.
    pub idempotency_key: &'a str,
    /// The canonical form of the request body: a replay must carry the same one.
    pub fingerprint: &'a str,
    /// The coupon code asked for, normalized; looked up inside the transaction.
    pub coupon_code: Option<&'a str>,
}

/// A cart line whose stock is reserved, at the product's price read under the row lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedLine {
    /// The product.
    pub product_id: i64,
    /// Its sku.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its unit price in cents.
    pub unit_price_cents: i64,
    /// Units reserved.
    pub quantity: i64,
}

/// The price of an order, as the pricing function computed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedOrder {
    /// The region taxed.
    pub region: String,
    /// Its tax rate in basis points.
    pub tax_rate_bps: i64,
    /// The coupon applied (`None` when none was).
    pub coupon_code: Option<String>,
    /// Sum of the line totals.
    pub subtotal_cents: i64,
    /// The coupon discount.
    pub discount_cents: i64,
    /// Tax.
    pub tax_cents: i64,
    /// `subtotal − discount + tax`.
    pub total_cents: i64,
    /// One per reserved line (any order).
    pub lines: Vec<PricedLine>,
}

/// The price of one reserved line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PricedLine {
    /// The product; must match a reserved line.
    pub product_id: i64,
    /// Must equal the reserved line's price.
    pub unit_price_cents: i64,
    /// Must equal the reserved line's quantity.
    pub quantity: i64,
    /// Quantity-tier discount, in cents.
    pub discount_cents: i64,
    /// Line total, in cents.
    pub total_cents: i64,
}

/// What a successful checkout returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutOutcome {
    /// The order.
    pub order: Order,
    /// True when the key had made this order before: nothing was reserved this time.
    pub replayed: bool,
}

/// Why a checkout did not place an order. `E` is the pricing function's error.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError<E> {
    /// The cart has no lines.
    #[error("the cart is empty")]
    EmptyCart,
    /// A product has less stock than the cart asks for.
    #[error("only {available} of `{name}` (product {product_id}) in stock, {requested} asked for")]
    OutOfStock {
        /// The product.
        product_id: i64,
        /// Its name.
        name: String,
        /// Units in the cart.
        requested: i64,
        /// Units on hand.
        available: i64,
    },
    /// The idempotency key was used before with another request body.
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    /// The pricing function refused the order.
    #[error("pricing failed: {0}")]
    Pricing(E),
    /// The pricing function's result does not match the reserved lines: a bug.
    #[error("priced lines do not match the reserved lines: {0}")]
    PricingMismatch(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<sqlx::Error> for CheckoutError<E> {
    fn from(e: sqlx::Error) -> Self {
        CheckoutError::Store(e.into())
    }
}

/// What the checkout transaction settled on. A new order is assembled from what the
/// transaction wrote (no read back after the commit); a replay names the order to read.
enum Settled {
    Placed(Box<Order>),
    Replayed(i64),
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
    store: &'a Store,
}

impl<'a> OrderRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// Turns the user's cart into an order in one transaction (see the module docs), pricing
    /// the reserved lines with `price`, which also receives the coupon asked for (`None` when
    /// none was asked for or the code names no coupon). Replays of the key return the order it
    /// made, with `replayed` set.
    ///
    /// # Errors
    /// [`CheckoutError::EmptyCart`], [`CheckoutError::OutOfStock`],
    /// [`CheckoutError::IdempotencyKeyReused`], [`CheckoutError::Pricing`] (nothing is written
    /// in these cases), or the store's error ([`StoreError::Conflict`] after the retries).
    pub async fn checkout<E>(
        &self,
        request: CheckoutRequest<'_>,
        price: impl Fn(&[ReservedLine], Option<&Coupon>) -> Result<PricedOrder, E>,
    ) -> Result<CheckoutOutcome, CheckoutError<E>> {
        let price = &price;
        let settled = retry_on_conflict(
            move || self.try_checkout(request, price),
            |e| matches!(e, CheckoutError::Store(StoreError::Conflict(_))),
        )
        .await?;
        match settled {
            Settled::Placed(order) => Ok(CheckoutOutcome {
                order: *order,
                replayed: false,
            }),
            Settled::Replayed(id) => {
                let order = self.get(id).await?.ok_or_else(|| {
                    CheckoutError::Store(StoreError::Database(sqlx::Error::RowNotFound))
                })?;
                Ok(CheckoutOutcome {
                    order,
                    replayed: true,
                })
            }
        }
    }

    async fn try_checkout<E>(
        &self,
        request: CheckoutRequest<'_>,
        price: &impl Fn(&[ReservedLine], Option<&Coupon>) -> Result<PricedOrder, E>,
    ) -> Result<Settled, CheckoutError<E>> {
        let begin = self.store.dialect().begin_write();
        let now = DbTime::now();
        let settled = dispatch!(self.store, pool => {
            let mut tx = pool.begin_with(begin).await?;

            // 1. The idempotency key.
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, idempotency_key, request_fingerprint, \
                 created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, idempotency_key) DO NOTHING",
            )
            .bind(request.user_id)
            .bind(request.idempotency_key)
            .bind(request.fingerprint)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !claimed {
                let (fingerprint, order_id): (String, Option<i64>) = sqlx::query_as(
                    "SELECT request_fingerprint, order_id FROM idempotency_keys \
                     WHERE user_id = $1 AND idempotency_key = $2",
                )
                .bind(request.user_id)
                .bind(request.idempotency_key)
                .fetch_one(&mut *tx)
                .await?;
                tx.rollback().await?;
                if fingerprint != request.fingerprint {
                    return Err(CheckoutError::IdempotencyKeyReused);
                }
                // Committed keys always point at their order (set in the same transaction).
                let order_id = order_id.ok_or_else(|| {
                    CheckoutError::Store(StoreError::Database(sqlx::Error::Decode(
                        "idempotency key without an order".into(),
                    )))
                })?;
                return Ok(Settled::Replayed(order_id));
            }

            // 2. The cart, locked, and its lines, taken.
            let cart: Option<i64> = sqlx::query_scalar(
                "UPDATE carts SET updated_at = $2 WHERE user_id = $1 RETURNING id",
            )
            .bind(request.user_id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(cart) = cart else {
                return Err(CheckoutError::EmptyCart);
            };
            let mut items: Vec<(i64, i64)> = sqlx::query_as(
                "DELETE FROM cart_items WHERE cart_id = $1 RETURNING product_id, quantity",
            )
            .bind(cart)
            .fetch_all(&mut *tx)
            .await?;
            if items.is_empty() {
                return Err(CheckoutError::EmptyCart);
            }
            items.sort_unstable();

            // 3. Stock, reserved by conditional updates in product id order.
            let mut reserved = Vec::with_capacity(items.len());
            for (product_id, quantity) in items {
                let row: Option<(String, String, i64)> = sqlx::query_as(
                    "UPDATE products SET stock = stock - $2 WHERE id = $1 AND stock >= $2 \
                     RETURNING sku, name, price_cents",
                )
                .bind(product_id)
                .bind(quantity)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((sku, name, unit_price_cents)) = row else {
                    let (name, available): (String, i64) =
                        sqlx::query_as("SELECT name, stock FROM products WHERE id = $1")
                            .bind(product_id)
                            .fetch_optional(&mut *tx)
                            .await?
                            .unwrap_or_default();
                    return Err(CheckoutError::OutOfStock {
                        product_id,
                        name,
                        requested: quantity,
                        available,
                    });
                };
                reserved.push(ReservedLine {
                    product_id,
                    sku,
                    name,
                    unit_price_cents,
                    quantity,
                });
            }

            // 4. The price, the order, its event.
            let coupon = match request.coupon_code {
                Some(code) => {
                    let row: Option<CouponRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        coupon_columns!(),
                        " FROM coupons WHERE code = $1"
                    ))
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?;
                    row.map(Coupon::try_from).transpose()?
                }
                None => None,
            };
            let priced = price(&reserved, coupon.as_ref()).map_err(CheckoutError::Pricing)?;
            let lines = match_lines(&reserved, &priced)?;

            let order_id: i64 = sqlx::query_scalar(
                "INSERT INTO orders (user_id, status, region, tax_rate_bps, coupon_code, \
                 subtotal_cents, discount_cents, tax_cents, total_cents, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
            )
            .bind(request.user_id)
            .bind(OrderStatus::Placed.as_str())
            .bind(&priced.region)
            .bind(priced.tax_rate_bps)
            .bind(priced.coupon_code.as_deref())
            .bind(priced.subtotal_cents)
            .bind(priced.discount_cents)
            .bind(priced.tax_cents)
            .bind(priced.total_cents)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for (position, (line, price)) in (1_i64..).zip(&lines) {
                sqlx::query(
                    "INSERT INTO order_lines (order_id, position, product_id, sku, name, \
                     unit_price_cents, quantity, discount_cents, total_cents) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(order_id)
                .bind(position)
                .bind(line.product_id)
                .bind(&line.sku)
                .bind(&line.name)
                .bind(line.unit_price_cents)
                .bind(line.quantity)
                .bind(price.discount_cents)
                .bind(price.total_cents)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("INSERT INTO order_status_history (order_id, status, at) VALUES ($1, $2, $3)")
                .bind(order_id)
                .bind(OrderStatus::Placed.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let event = OrderPlaced {
                order_id,
                user_id: request.user_id,
                total_cents: priced.total_cents,
                lines: reserved
                    .iter()
                    .map(|l| PlacedLine {
                        product_id: l.product_id,
                        quantity: l.quantity,
                    })
                    .collect(),
                placed_at: now.0,
            };
            let payload = serde_json::to_string(&event).map_err(|e| {
                CheckoutError::Store(StoreError::Database(sqlx::Error::Encode(e.into())))
            })?;
            sqlx::query("INSERT INTO outbox (topic, payload, created_at) VALUES ($1, $2, $3)")
                .bind(ORDER_PLACED)
                .bind(payload)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE idempotency_keys SET order_id = $3 \
                 WHERE user_id = $1 AND idempotency_key = $2",
            )
            .bind(request.user_id)
            .bind(request.idempotency_key)
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Settled::Placed(Box::new(Order {
                id: order_id,
                user_id: request.user_id,
                status: OrderStatus::Placed,
                region: priced.region.clone(),
                tax_rate_bps: priced.tax_rate_bps,
                coupon_code: priced.coupon_code.clone(),
                subtotal_cents: priced.subtotal_cents,
                discount_cents: priced.discount_cents,
                tax_cents: priced.tax_cents,
                total_cents: priced.total_cents,
                created_at: now.0,
                updated_at: now.0,
                lines: lines
                    .iter()
                    .map(|(line, price)| OrderLine {
                        product_id: line.product_id,
                        sku: line.sku.clone(),
                        name: line.name.clone(),
                        unit_price_cents: line.unit_price_cents,
                        quantity: line.quantity,
                        discount_cents: price.discount_cents,
                        total_cents: price.total_cents,
                    })
                    .collect(),
                history: vec![StatusChange {
                    status: OrderStatus::Placed,
                    at: now.0,
                }],
            }))
        });
        Ok(settled)
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
        let (total, rows, lines, history): (i64, Vec<OrderRow>, Vec<LineRow>, Vec<HistoryRow>) = dispatch!(self.store, pool => {
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query_as(concat!(
                "SELECT ", order_columns!(),
                " FROM orders WHERE user_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(user_id)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            let lines = sqlx::query_as(
                "SELECT order_id, product_id, sku, name, unit_price_cents, quantity, \
                 discount_cents, total_cents FROM order_lines WHERE order_id IN \
                 (SELECT id FROM orders WHERE user_id = $1 ORDER BY id DESC \
                  LIMIT $2 OFFSET $3) ORDER BY order_id, position",
            )
            .bind(user_id)
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?;
            let history = sqlx::query_as(
                "SELECT order_id, status, at FROM order_status_history WHERE order_id IN \
                 (SELECT id FROM orders WHERE user_id = $1 ORDER BY id DESC \
                  LIMIT $2 OFFSET $3) ORDER BY order_id, id",
            )
            .bind(user_id)
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
                sqlx::query("INSERT INTO outbox (topic, payload, created_at) VALUES ($1, $2, $3)")
                    .bind(topic)
                    .bind(payload)
                    .bind(now)
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

/// Pairs every reserved line with its price, checking that the pricing function priced exactly
/// the reserved lines at their prices and quantities.
fn match_lines<'r, E>(
    reserved: &'r [ReservedLine],
    priced: &PricedOrder,
) -> Result<Vec<(&'r ReservedLine, PricedLine)>, CheckoutError<E>> {
    let mismatch = |what: String| Err(CheckoutError::PricingMismatch(what));
    if priced.lines.len() != reserved.len() {
        return mismatch(format!(
            "{} priced lines for {} reserved",
            priced.lines.len(),
            reserved.len()
        ));
    }
    let by_product: HashMap<i64, PricedLine> =
        priced.lines.iter().map(|l| (l.product_id, *l)).collect();
    let mut out = Vec::with_capacity(reserved.len());
    for line in reserved {
        let Some(price) = by_product.get(&line.product_id) else {
            return mismatch(format!("product {} not priced", line.product_id));
        };
        if price.unit_price_cents != line.unit_price_cents || price.quantity != line.quantity {
            return mismatch(format!("product {} priced differently", line.product_id));
        }
        out.push((line, *price));
    }
    Ok(out)
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
