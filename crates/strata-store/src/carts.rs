//! Shopping carts: the `carts` and `cart_items` tables. A cart belongs to a user or to the
//! holder of an anonymous cart cookie ([`CartOwner`]); an anonymous cart merges into the user's
//! when both are known ([`CartRepo::merge_anonymous`]).
//!
//! Every write runs in one transaction that first touches the cart's row (`UPDATE carts SET
//! updated_at …`). On PostgreSQL that row lock serializes writers of one cart, so the line
//! limit cannot be overrun by two concurrent adds; on SQLite `BEGIN IMMEDIATE` serializes all
//! writers anyway. Checkout takes the same lock first (see `checkout.rs`).

use serde::Serialize;
use time::OffsetDateTime;

use crate::StoreError;
use crate::store::{Backend, DbTime, Store, dispatch, retry_on_conflict};

/// Most units of one product on one cart or order line (also a CHECK in the schema).
pub const MAX_LINE_QUANTITY: u32 = 99;
/// Most distinct products in one cart (and so in one order).
pub const MAX_CART_LINES: usize = 50;

/// Whose cart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CartOwner<'a> {
    /// A signed-in user, by id.
    User(i64),
    /// An anonymous visitor, by the token in their cart cookie.
    Anonymous(&'a str),
}

/// One line of a cart with the product's current catalog data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CartLine {
    /// The product.
    pub product_id: i64,
    /// Its sku.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its current unit price in cents.
    pub unit_price_cents: i64,
    /// Units on hand now (checkout may still find fewer).
    pub stock: i64,
    /// Units in the cart, `1..=99`.
    pub quantity: i64,
    /// When the line was first added (lines are listed in this order).
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// Why a cart change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// No product has this id.
    #[error("no product with id {0}")]
    UnknownProduct(i64),
    /// The product is not in the cart (to change or remove).
    #[error("product {0} is not in the cart")]
    NotInCart(i64),
    /// A new line would exceed [`MAX_CART_LINES`].
    #[error("a cart holds at most {MAX_CART_LINES} different products")]
    TooManyLines,
    /// The line would hold more than [`MAX_LINE_QUANTITY`] units (or fewer than one).
    #[error(
        "a cart line holds 1 to {MAX_LINE_QUANTITY} units; product {product_id} would have {quantity}"
    )]
    QuantityOutOfRange {
        /// The product.
        product_id: i64,
        /// The quantity the line would have had.
        quantity: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CartError {
    fn is_conflict(&self) -> bool {
        matches!(self, CartError::Store(StoreError::Conflict(_)))
    }
}

impl From<sqlx::Error> for CartError {
    fn from(e: sqlx::Error) -> Self {
        CartError::Store(e.into())
    }
}

/// What [`CartRepo::merge_anonymous`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeOutcome {
    /// Whether an anonymous cart was found (and is now deleted).
    pub found: bool,
    /// Lines added to, or added onto, the user's cart.
    pub merged: usize,
    /// Lines whose summed quantity was capped at [`MAX_LINE_QUANTITY`].
    pub capped: usize,
    /// Lines left out because the user's cart was full ([`MAX_CART_LINES`]).
    pub dropped: usize,
}

/// Carts written by one batch of [`CartRepo::preload_anonymous`].
pub const PRELOAD_BATCH: u64 = 100_000;

/// Reads and writes carts. Obtained from [`Store::carts`].
#[derive(Clone, Copy, Debug)]
pub struct CartRepo<'a> {
    store: &'a Store,
}

/// Selects the lines of the cart owned by `$1`, given the owner column.
macro_rules! lines_sql {
    ($owner_column:literal) => {
        concat!(
            "SELECT ci.product_id, p.sku, p.name, p.price_cents AS unit_price_cents, p.stock, ",
            "ci.quantity, ci.added_at FROM cart_items ci ",
            "JOIN carts c ON c.id = ci.cart_id JOIN products p ON p.id = ci.product_id ",
            "WHERE c.",
            $owner_column,
            " = $1 ORDER BY ci.added_at, ci.product_id"
        )
    };
}

/// Creates the owner's cart if needed, locks its row and yields its id (in `$tx`).
macro_rules! lock_cart {
    ($tx:expr, $owner:expr) => {{
        let now = DbTime::now();
        let (insert, touch) = match $owner {
            CartOwner::User(_) => (
                "INSERT INTO carts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING",
                "UPDATE carts SET updated_at = $2 WHERE user_id = $1 RETURNING id",
            ),
            CartOwner::Anonymous(_) => (
                "INSERT INTO carts (anon_token) VALUES ($1) ON CONFLICT (anon_token) DO NOTHING",
                "UPDATE carts SET updated_at = $2 WHERE anon_token = $1 RETURNING id",
            ),
        };
        match $owner {
            CartOwner::User(id) => sqlx::query(insert).bind(id),
            CartOwner::Anonymous(token) => sqlx::query(insert).bind(token.to_owned()),
        }
        .execute(&mut *$tx)
        .await?;
        let id: i64 = match $owner {
            CartOwner::User(id) => sqlx::query_scalar(touch).bind(id),
            CartOwner::Anonymous(token) => sqlx::query_scalar(touch).bind(token.to_owned()),
        }
        .bind(now)
        .fetch_one(&mut *$tx)
        .await?;
        id
    }};
}

impl<'a> CartRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// The owner's cart lines, oldest first; empty when the owner has no cart.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn lines(&self, owner: CartOwner<'_>) -> Result<Vec<CartLine>, StoreError> {
        let lines = dispatch!(self.store, pool => {
            match owner {
                CartOwner::User(id) => {
                    sqlx::query_as(lines_sql!("user_id")).bind(id).fetch_all(pool).await?
                }
                CartOwner::Anonymous(token) => {
                    sqlx::query_as(lines_sql!("anon_token")).bind(token).fetch_all(pool).await?
                }
            }
        });
        Ok(lines)
    }

    /// Adds `n` anonymous carts when the store holds no cart at all, and returns how many it
    /// added (0 when it held some): the lab's `carts.preload` in shared mode, so that the store
    /// holds as many carts as a local-mode instance preloads, without a million requests.
    /// Each cart gets a random 128-bit token and 1 to 3 lines of one unit among the first ten
    /// products (by id), like a local instance's preloaded carts. Written in batches of
    /// [`PRELOAD_BATCH`] carts, each batch its own statements, so no statement meets the
    /// statement timeout; a crash part-way leaves the carts written so far (and the next
    /// start, finding carts, adds none).
    ///
    /// # Errors
    /// When the database cannot be queried or written.
    pub async fn preload_anonymous(&self, n: u64) -> Result<u64, StoreError> {
        if n == 0 {
            return Ok(0);
        }
        let held: Option<i64> = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT id FROM carts LIMIT 1").fetch_optional(pool).await?
        });
        if held.is_some() {
            return Ok(0);
        }
        let mut added = 0;
        while added < n {
            let batch = (n - added).min(PRELOAD_BATCH);
            let count = i64::try_from(batch).unwrap_or(i64::MAX);
            let base: i64 = dispatch!(self.store, pool => {
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM carts")
                    .fetch_one(pool)
                    .await?
            });
            match &self.store.backend {
                Backend::Sqlite(pool) => {
                    sqlx::query(
                        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k \
                         WHERE i < $1) INSERT INTO carts (anon_token) \
                         SELECT lower(hex(randomblob(16))) FROM k",
                    )
                    .bind(count)
                    .execute(pool)
                    .await?;
                }
                Backend::Postgres(pool) => {
                    sqlx::query(
                        "INSERT INTO carts (anon_token) \
                         SELECT md5(random()::text || i::text) FROM generate_series(1, $1) AS i",
                    )
                    .bind(count)
                    .execute(pool)
                    .await?;
                }
            }
            dispatch!(self.store, pool => {
                sqlx::query(
                    "INSERT INTO cart_items (cart_id, product_id, quantity) \
                     SELECT c.id, p.id, 1 FROM carts c \
                     CROSS JOIN (SELECT 0 AS n UNION ALL SELECT 1 UNION ALL SELECT 2) k \
                     JOIN (SELECT id, ROW_NUMBER() OVER (ORDER BY id) - 1 AS r \
                           FROM products ORDER BY id LIMIT 10) p ON p.r = (c.id + k.n) % 10 \
                     WHERE c.id > $1 AND k.n <= c.id % 3",
                )
                .bind(base)
                .execute(pool)
                .await?;
            });
            added += batch;
        }
        Ok(added)
    }

    /// Whether an anonymous cart with this token exists.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn anonymous_exists(&self, token: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT id FROM carts WHERE anon_token = $1")
                .bind(token)
                .fetch_optional(pool)
                .await?
        });
        Ok(found.is_some())
    }

    /// Adds `quantity` units of a product: onto its line when there is one, else as a new line.
    /// Creates the owner's cart when it has none.
    ///
    /// # Errors
    /// [`CartError::UnknownProduct`], [`CartError::QuantityOutOfRange`] when the line would
    /// leave `1..=99`, [`CartError::TooManyLines`] for a 51st product, or the store's error.
    pub async fn add(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        quantity: u32,
    ) -> Result<(), CartError> {
        retry_on_conflict(
            move || self.write_line(owner, product_id, LineChange::Add(quantity)),
            CartError::is_conflict,
        )
        .await
    }

    /// Sets a line's quantity; 0 removes the line.
    ///
    /// # Errors
    /// [`CartError::NotInCart`] when the product has no line, [`CartError::QuantityOutOfRange`]
    /// above 99, or the store's error.
    pub async fn set(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        quantity: u32,
    ) -> Result<(), CartError> {
        retry_on_conflict(
            move || self.write_line(owner, product_id, LineChange::Set(quantity)),
            CartError::is_conflict,
        )
        .await
    }

    /// Removes a product's line.
    ///
    /// # Errors
    /// [`CartError::NotInCart`] when the product has no line, or the store's error.
    pub async fn remove(&self, owner: CartOwner<'_>, product_id: i64) -> Result<(), CartError> {
        self.set(owner, product_id, 0).await
    }

    /// One cart write in one transaction (see the module docs for the locking).
    async fn write_line(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        change: LineChange,
    ) -> Result<(), CartError> {
        let begin = self.store.dialect().begin_write();
        dispatch!(self.store, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let cart_id = lock_cart!(tx, owner);
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT quantity FROM cart_items WHERE cart_id = $1 AND product_id = $2",
            )
            .bind(cart_id)
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await?;
            let wanted = match (change, current) {
                (LineChange::Add(q), current) => current.unwrap_or(0) + i64::from(q),
                (LineChange::Set(_), None) => return Err(CartError::NotInCart(product_id)),
                (LineChange::Set(q), Some(_)) => i64::from(q),
            };
            if wanted > i64::from(MAX_LINE_QUANTITY) || (wanted < 1 && current.is_none()) {
                return Err(CartError::QuantityOutOfRange {
                    product_id,
                    quantity: wanted,
                });
            }
            if current.is_none() {
                let exists: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM products WHERE id = $1")
                        .bind(product_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if exists.is_none() {
                    return Err(CartError::UnknownProduct(product_id));
                }
                let lines: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM cart_items WHERE cart_id = $1")
                        .bind(cart_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if lines >= MAX_CART_LINES as i64 {
                    return Err(CartError::TooManyLines);
                }
                sqlx::query(
                    "INSERT INTO cart_items (cart_id, product_id, quantity, added_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(cart_id)
                .bind(product_id)
                .bind(wanted)
                .bind(DbTime::now())
                .execute(&mut *tx)
                .await?;
            } else if wanted == 0 {
                sqlx::query("DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2")
                    .bind(cart_id)
                    .bind(product_id)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "UPDATE cart_items SET quantity = $3 WHERE cart_id = $1 AND product_id = $2",
                )
                .bind(cart_id)
                .bind(product_id)
                .bind(wanted)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Moves the anonymous cart `token` into user `user_id`'s cart and deletes it. Quantities of
    /// a product in both add up, capped at [`MAX_LINE_QUANTITY`]; anonymous lines that would
    /// make the user's cart exceed [`MAX_CART_LINES`] are left out. Nothing happens (and
    /// `found` is false) when no anonymous cart has this token.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn merge_anonymous(
        &self,
        token: &str,
        user_id: i64,
    ) -> Result<MergeOutcome, StoreError> {
        retry_on_conflict(
            move || self.try_merge(token, user_id),
            |e| matches!(e, StoreError::Conflict(_)),
        )
        .await
    }

    async fn try_merge(&self, token: &str, user_id: i64) -> Result<MergeOutcome, StoreError> {
        let begin = self.store.dialect().begin_write();
        let mut outcome = MergeOutcome::default();
        dispatch!(self.store, pool => {
            let mut tx = pool.begin_with(begin).await?;
            // Locks the anonymous cart, so two concurrent merges cannot both move it.
            let anonymous: Option<i64> = sqlx::query_scalar(
                "UPDATE carts SET updated_at = $2 WHERE anon_token = $1 RETURNING id",
            )
            .bind(token)
            .bind(DbTime::now())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(anonymous) = anonymous else {
                return Ok(outcome);
            };
            outcome.found = true;
            let user_cart = lock_cart!(tx, CartOwner::User(user_id));
            let moving: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT product_id, quantity FROM cart_items WHERE cart_id = $1 \
                 ORDER BY added_at, product_id",
            )
            .bind(anonymous)
            .fetch_all(&mut *tx)
            .await?;
            let mut lines: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM cart_items WHERE cart_id = $1",
            )
            .bind(user_cart)
            .fetch_one(&mut *tx)
            .await?;
            let max = i64::from(MAX_LINE_QUANTITY);
            for (product_id, quantity) in moving {
                let current: Option<i64> = sqlx::query_scalar(
                    "SELECT quantity FROM cart_items WHERE cart_id = $1 AND product_id = $2",
                )
                .bind(user_cart)
                .bind(product_id)
                .fetch_optional(&mut *tx)
                .await?;
                match current {
                    Some(current) => {
                        let sum = current + quantity;
                        if sum > max {
                            outcome.capped += 1;
                        }
                        sqlx::query(
                            "UPDATE cart_items SET quantity = $3 \
                             WHERE cart_id = $1 AND product_id = $2",
                        )
                        .bind(user_cart)
                        .bind(product_id)
                        .bind(sum.min(max))
                        .execute(&mut *tx)
                        .await?;
                        outcome.merged += 1;
                    }
                    None if lines >= MAX_CART_LINES as i64 => outcome.dropped += 1,
                    None => {
                        sqlx::query(
                            "INSERT INTO cart_items (cart_id, product_id, quantity, added_at) \
                             VALUES ($1, $2, $3, $4)",
                        )
                        .bind(user_cart)
                        .bind(product_id)
                        .bind(quantity.min(max))
                        .bind(DbTime::now())
                        .execute(&mut *tx)
                        .await?;
                        lines += 1;
                        outcome.merged += 1;
                    }
                }
            }
            // The anonymous cart's lines go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM carts WHERE id = $1")
                .bind(anonymous)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(outcome)
    }
}

/// What a cart write does to one line.
#[derive(Clone, Copy, Debug)]
enum LineChange {
    /// Add units (creating the line when absent).
    Add(u32),
    /// Set the units of an existing line; 0 removes it.
    Set(u32),
}
