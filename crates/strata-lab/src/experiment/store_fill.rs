//! Fills a stateless deployment's embedded store with anonymous carts in two statements, so
//! that its start-up can be measured with as many carts as a stateful instance holds: a
//! million carts made over HTTP would take longer than the whole lab.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::LabError;

/// Adds `n` anonymous carts of one line each (product `1 + id % 10`) to the SQLite store at
/// `database`, which the api has created and migrated.
///
/// # Errors
/// [`LabError::Experiment`] when the store cannot be opened or written.
pub(crate) async fn add_carts(database: &Path, n: u64) -> Result<(), LabError> {
    let fail = |e: sqlx::Error| LabError::experiment("fill the store", e.to_string());
    let url = format!("sqlite://{}", database.display());
    // Two statements that each take seconds by design: not worth a slow-statement warning.
    let mut conn = SqliteConnectOptions::from_str(&url)
        .map_err(fail)?
        .disable_statement_logging()
        .connect()
        .await
        .map_err(fail)?;
    let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM carts")
        .fetch_one(&mut conn)
        .await
        .map_err(fail)?;
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1) \
         INSERT INTO carts (anon_token) SELECT printf('%032x', ?2 + i) FROM k",
    )
    .bind(n)
    .bind(base)
    .execute(&mut conn)
    .await
    .map_err(fail)?;
    sqlx::query(
        "INSERT INTO cart_items (cart_id, product_id, quantity) \
         SELECT id, id % 10 + 1, 1 FROM carts WHERE id > ?1",
    )
    .bind(base)
    .execute(&mut conn)
    .await
    .map_err(fail)?;
    conn.close().await.map_err(fail)
}
