//! The product catalog: the rows `GET /products` and `GET /products/{id}` serve, written on the
//! primary ([`ProductRepo`]) and read, for those pages, where [`CatalogReads`] points (a read
//! replica when there is one).

use serde::Serialize;
use time::OffsetDateTime;

use sqlx::AssertSqlSafe;

use crate::search::{Bind, ProductQuery};
use crate::store::{Store, dispatch};
use crate::{Dialect, Page, StoreError};

/// The columns of a product, in the order of [`Product`]'s fields.
macro_rules! product_columns {
    () => {
        "id, sku, name, description, category, price_cents, stock, created_at, updated_at"
    };
}

/// A product as stored. Money is integer cents, never floating point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Product {
    /// Assigned by the database, increasing, never reused.
    pub id: i64,
    /// The stock keeping unit: the product's stable business key, unique.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text for the product page; may be empty.
    pub description: String,
    /// Lowercase category slug (`books`, `kitchen`, ...), indexed for filtering.
    pub category: String,
    /// Unit price in cents, never negative.
    pub price_cents: i64,
    /// Units on hand, never negative.
    pub stock: i64,
    /// When the row was inserted (UTC); serialized as RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the row last changed (UTC); serialized as RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The fields of a product the caller chooses; the database assigns id and timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewProduct {
    /// Unique business key.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Longer text; may be empty.
    pub description: String,
    /// Category slug.
    pub category: String,
    /// Unit price in cents; the database rejects negative values.
    pub price_cents: i64,
    /// Units on hand; the database rejects negative values.
    pub stock: i64,
}

/// The fields of a product to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New category slug.
    pub category: Option<String>,
    /// New unit price in cents; the database rejects negative values.
    pub price_cents: Option<i64>,
    /// New units on hand; the database rejects negative values.
    pub stock: Option<i64>,
}

impl ProductUpdate {
    /// True when no field would change.
    pub fn is_empty(&self) -> bool {
        self == &ProductUpdate::default()
    }
}

/// One page of products, with what a client needs to draw pagination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProductPage {
    /// The products of this page, in the order asked for (by ascending id by default).
    pub items: Vec<Product>,
    /// How many products exist in total (that match the search, for a search).
    pub total: i64,
    /// The 1-based page number that was asked for.
    pub page: u32,
    /// The page size that was asked for (the last page may hold fewer items).
    pub per_page: u32,
}

/// A category of the catalog and how many products it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CategoryCount {
    /// The category slug.
    pub category: String,
    /// Products in it.
    pub products: i64,
}

/// Reads and writes the `products` table. Obtained from [`Store::products`].
#[derive(Clone, Copy, Debug)]
pub struct ProductRepo<'a> {
    store: &'a Store,
}

impl<'a> ProductRepo<'a> {
    pub(crate) fn new(store: &'a Store) -> Self {
        Self { store }
    }

    /// One page of products ordered by id, with the total count.
    ///
    /// The count and the page are two statements, not one snapshot: under concurrent inserts
    /// `total` may be off by the rows inserted in between, which pagination tolerates.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn list(&self, page: Page) -> Result<ProductPage, StoreError> {
        let total = self.count().await?;
        let items: Vec<Product> = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products ORDER BY id LIMIT $1 OFFSET $2"
            ))
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(pool)
            .await?
        });
        Ok(ProductPage {
            items,
            total,
            page: page.page(),
            per_page: page.per_page(),
        })
    }

    /// One page of the products that match `query`, in its order, with the number of matches.
    ///
    /// As with [`ProductRepo::list`], the count and the page are two statements.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn search(&self, query: &ProductQuery) -> Result<ProductPage, StoreError> {
        let sql = query.to_sql(self.store.dialect());
        let count_sql = format!("SELECT COUNT(*) {}", sql.from_where);
        let page_sql = format!(
            concat!("SELECT ", product_columns!(), " {} {} LIMIT {} OFFSET {}"),
            sql.from_where,
            sql.order_by,
            query.page.limit(),
            query.page.offset()
        );
        // The product columns are unqualified: only `products p` is in the FROM clause.
        let (total, items): (i64, Vec<Product>) = dispatch!(self.store, pool => {
            let mut count = sqlx::query_scalar(AssertSqlSafe(count_sql));
            for value in &sql.binds[..sql.where_binds] {
                count = match value {
                    Bind::Text(text) => count.bind(text.clone()),
                    Bind::Int(n) => count.bind(*n),
                };
            }
            let total = count.fetch_one(pool).await?;
            let mut page = sqlx::query_as(AssertSqlSafe(page_sql));
            for value in &sql.binds {
                page = match value {
                    Bind::Text(text) => page.bind(text.clone()),
                    Bind::Int(n) => page.bind(*n),
                };
            }
            (total, page.fetch_all(pool).await?)
        });
        Ok(ProductPage {
            items,
            total,
            page: query.page.page(),
            per_page: query.page.per_page(),
        })
    }

    /// Changes the given fields of product `id` (and its `updated_at`); returns the product as
    /// stored afterwards, or `None` when no product has this id.
    ///
    /// # Errors
    /// [`StoreError::Constraint`] when the new price or stock is negative (`Check`).
    pub async fn update(
        &self,
        id: i64,
        patch: &ProductUpdate,
    ) -> Result<Option<Product>, StoreError> {
        // COALESCE keeps a column whose new value is NULL (not given). `updated_at` is written
        // by each dialect's own clock, in the format of its other timestamps.
        macro_rules! update_sql {
            ($now:literal) => {
                concat!(
                    "UPDATE products SET name = COALESCE($1, name), ",
                    "description = COALESCE($2, description), ",
                    "category = COALESCE($3, category), ",
                    "price_cents = COALESCE($4, price_cents), ",
                    "stock = COALESCE($5, stock), updated_at = ",
                    $now,
                    " WHERE id = $6 RETURNING ",
                    product_columns!()
                )
            };
        }
        let sql = match self.store.dialect() {
            Dialect::Sqlite => update_sql!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"),
            Dialect::Postgres => update_sql!("now()"),
        };
        let product = dispatch!(self.store, pool => {
            sqlx::query_as(sql)
                .bind(patch.name.as_deref())
                .bind(patch.description.as_deref())
                .bind(patch.category.as_deref())
                .bind(patch.price_cents)
                .bind(patch.stock)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(product)
    }

    /// The product with this id, or `None`.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn get(&self, id: i64) -> Result<Option<Product>, StoreError> {
        let product = dispatch!(self.store, pool => {
            sqlx::query_as(concat!("SELECT ", product_columns!(), " FROM products WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(product)
    }

    /// How many products exist.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn count(&self) -> Result<i64, StoreError> {
        let count = dispatch!(self.store, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM products")
                .fetch_one(pool)
                .await?
        });
        Ok(count)
    }

    /// Every category with its number of products, by slug.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn categories(&self) -> Result<Vec<CategoryCount>, StoreError> {
        let categories = dispatch!(self.store, pool => {
            sqlx::query_as(
                "SELECT category, COUNT(*) AS products FROM products \
                 GROUP BY category ORDER BY category",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(categories)
    }

    /// Up to `limit` other products bought in the same orders as product `id` (lines of the
    /// orders that have a line of `id`), the most often bought with it first, ties by id.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn bought_with(&self, id: i64, limit: i64) -> Result<Vec<Product>, StoreError> {
        // `order_lines_product_id_idx` finds the orders of `id` without reading every line.
        let products = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products JOIN (SELECT b.product_id, COUNT(*) AS together ",
                "FROM order_lines a JOIN order_lines b ",
                "ON b.order_id = a.order_id AND b.product_id <> a.product_id ",
                "WHERE a.product_id = $1 GROUP BY b.product_id) t ON t.product_id = id ",
                "ORDER BY t.together DESC, id LIMIT $2"
            ))
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(products)
    }

    /// Up to `limit` products of `category` other than `id`, by id.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn in_category(
        &self,
        category: &str,
        id: i64,
        limit: i64,
    ) -> Result<Vec<Product>, StoreError> {
        let products = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE category = $1 AND id <> $2 ORDER BY id LIMIT $3"
            ))
            .bind(category)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(products)
    }

    /// Inserts a product and returns it as stored.
    ///
    /// # Errors
    /// [`StoreError::Constraint`] when the sku exists (`Unique`) or the price or stock is
    /// negative (`Check`, constraint `products_price_nonneg` or `products_stock_nonneg`).
    pub async fn insert(&self, new: &NewProduct) -> Result<Product, StoreError> {
        let product = dispatch!(self.store, pool => {
            sqlx::query_as(concat!(
                "INSERT INTO products (sku, name, description, category, price_cents, stock) ",
                "VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                product_columns!()
            ))
            .bind(&new.sku)
            .bind(&new.name)
            .bind(&new.description)
            .bind(&new.category)
            .bind(new.price_cents)
            .bind(new.stock)
            .fetch_one(pool)
            .await?
        });
        Ok(product)
    }
}

/// The catalog's reads that may be served by a read replica: what the api's product pages,
/// lists and searches show. Obtained from [`Store::catalog_reads`]; it has no writes, and its
/// results may lag the primary by the replication delay (stock shown is advisory: checkout
/// reserves it on the primary). They come from the primary when there is no replica or the
/// replica cannot answer now (down, unreachable, restarting): a replica outage moves the
/// catalog's reads to the primary, it does not fail them.
#[derive(Clone, Copy, Debug)]
pub struct CatalogReads<'a> {
    replica: Option<ProductRepo<'a>>,
    primary: ProductRepo<'a>,
}

impl<'a> CatalogReads<'a> {
    /// Reads through `replica` when there is one, else (or when it is unavailable) `primary`.
    pub(crate) fn new(replica: Option<ProductRepo<'a>>, primary: ProductRepo<'a>) -> Self {
        Self { replica, primary }
    }

    /// `op` on the replica, and on the primary when there is no replica or it is unavailable.
    async fn read<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(ProductRepo<'a>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        if let Some(replica) = self.replica {
            match op(replica).await {
                Err(error) if error.is_transient() => {
                    tracing::debug!(%error, "read replica unavailable; reading the primary");
                }
                answer => return answer,
            }
        }
        op(self.primary).await
    }

    /// As [`ProductRepo::get`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn get(&self, id: i64) -> Result<Option<Product>, StoreError> {
        self.read(|products| async move { products.get(id).await })
            .await
    }

    /// As [`ProductRepo::list`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn list(&self, page: Page) -> Result<ProductPage, StoreError> {
        self.read(|products| async move { products.list(page).await })
            .await
    }

    /// As [`ProductRepo::search`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn search(&self, query: &ProductQuery) -> Result<ProductPage, StoreError> {
        self.read(|products| async move { products.search(query).await })
            .await
    }

    /// As [`ProductRepo::categories`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn categories(&self) -> Result<Vec<CategoryCount>, StoreError> {
        self.read(|products| async move { products.categories().await })
            .await
    }

    /// As [`ProductRepo::bought_with`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn bought_with(&self, id: i64, limit: i64) -> Result<Vec<Product>, StoreError> {
        self.read(|products| async move { products.bought_with(id, limit).await })
            .await
    }

    /// As [`ProductRepo::in_category`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn in_category(
        &self,
        category: &str,
        id: i64,
        limit: i64,
    ) -> Result<Vec<Product>, StoreError> {
        self.read(|products| async move { products.in_category(category, id, limit).await })
            .await
    }

    /// As [`ProductRepo::count`].
    ///
    /// # Errors
    /// When neither the replica nor the primary can be queried.
    pub async fn count(&self) -> Result<i64, StoreError> {
        self.read(|products| async move { products.count().await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_serialize_as_rfc3339() {
        let product = Product {
            id: 7,
            sku: "BOOK-001".into(),
            name: "Pocket Cookbook".into(),
            description: String::new(),
            category: "books".into(),
            price_cents: 1299,
            stock: 3,
            // 2026-11-22T10:00:00.123Z and an hour and a half later.
            created_at: OffsetDateTime::from_unix_timestamp_nanos(1_795_341_600_123_000_000)
                .unwrap(),
            updated_at: OffsetDateTime::from_unix_timestamp(1_795_341_600 + 5_400).unwrap(),
        };
        let json = serde_json::to_value(&product).unwrap();
        assert_eq!(json["created_at"], "2026-11-22T10:00:00.123Z");
        assert_eq!(json["updated_at"], "2026-11-22T11:30:00Z");
        assert_eq!(json["price_cents"], 1299);
    }
}
