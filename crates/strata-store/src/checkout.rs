//! Checkout: the one transaction that turns a cart into an order, and the `idempotency_keys`
//! table that makes it safe to retry.
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
//!
//! Carts kept outside the store (the api's local cart mode) go through
//! [`OrderRepo::checkout_lines`]: the same transaction with the caller's lines in place of
//! step 2; the caller serializes checkouts of one cart and empties it after the commit.

use std::collections::HashMap;

use crate::StoreError;
use crate::coupons::{Coupon, CouponRow, coupon_columns};
use crate::orders::{
    ORDER_PLACED, Order, OrderLine, OrderPlaced, OrderRepo, OrderStatus, PlacedLine, StatusChange,
};
use crate::store::{DbTime, dispatch, retry_on_conflict};

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
    /// The W3C `traceparent` of the checkout's request, kept with its `order.placed` event so
    /// the event's handling continues the same trace.
    pub traceparent: Option<&'a str>,
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

impl OrderRepo<'_> {
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
        self.checkout_from(request, None, price).await
    }

    /// As [`OrderRepo::checkout`], for a cart the store does not keep: `lines` (product id,
    /// quantity) are the cart's lines, read by the caller, who empties the cart after a
    /// placed (not replayed) order. An empty `lines` is [`CheckoutError::EmptyCart`] unless
    /// the key replays an order.
    ///
    /// # Errors
    /// As [`OrderRepo::checkout`].
    pub async fn checkout_lines<E>(
        &self,
        request: CheckoutRequest<'_>,
        lines: &[(i64, i64)],
        price: impl Fn(&[ReservedLine], Option<&Coupon>) -> Result<PricedOrder, E>,
    ) -> Result<CheckoutOutcome, CheckoutError<E>> {
        self.checkout_from(request, Some(lines), price).await
    }

    async fn checkout_from<E>(
        &self,
        request: CheckoutRequest<'_>,
        lines: Option<&[(i64, i64)]>,
        price: impl Fn(&[ReservedLine], Option<&Coupon>) -> Result<PricedOrder, E>,
    ) -> Result<CheckoutOutcome, CheckoutError<E>> {
        let price = &price;
        let settled = retry_on_conflict(
            move || self.try_checkout(request, lines, price),
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
        lines: Option<&[(i64, i64)]>,
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

            // 2. The cart, locked, and its lines, taken (or the caller's lines).
            let mut items: Vec<(i64, i64)> = match lines {
                Some(lines) => lines.to_vec(),
                None => {
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
                    sqlx::query_as(
                        "DELETE FROM cart_items WHERE cart_id = $1 RETURNING product_id, quantity",
                    )
                    .bind(cart)
                    .fetch_all(&mut *tx)
                    .await?
                }
            };
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
            sqlx::query(
                "INSERT INTO outbox (topic, payload, created_at, traceparent) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(ORDER_PLACED)
            .bind(payload)
            .bind(now)
            .bind(request.traceparent)
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
