//! Helpers for tests, in this crate and in every crate that needs a real store: a fresh SQLite
//! file or a fresh PostgreSQL schema per test, removed again when the test ends (even when it
//! panics), plus schema introspection for the dialect equivalence test and a shop for
//! event-pipeline tests ([`pipeline`]).
//!
//! Enabled by the `testing` feature; another crate turns it on in its dev-dependencies:
//! `strata-store = { workspace = true, features = ["testing"] }`.
//!
//! ```no_run
//! # async fn demo() {
//! use strata_core::testkit::{POSTGRES, require_service};
//! use strata_store::testing;
//!
//! // SQLite: always available.
//! let (store, _file) = testing::fresh_sqlite().await;
//! store.migrate().await.unwrap();
//!
//! // PostgreSQL: skipped (loudly) on a laptop without a server, a failure under CI=true.
//! let Some(url) = require_service(POSTGRES) else { return };
//! let (store, _schema) = testing::fresh_postgres(&url).await.unwrap();
//! store.migrate().await.unwrap();
//! # }
//! ```

mod introspect;
pub mod pipeline;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

pub use introspect::{Column, ForeignKey, Index, Schema, Table};

use crate::UserRole;
use crate::store::{Backend, Store, dispatch};
use crate::{StoreError, StoreOptions};

/// Pool settings for test stores: a handful of connections each, so many tests can run in
/// parallel against one PostgreSQL server (100 connections by default).
fn test_options() -> StoreOptions {
    StoreOptions {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(10),
        ..StoreOptions::default()
    }
}

/// Creates a schema named `s_<uuid>` in the database at `base_url` and returns a store whose
/// connections all work in it (their `search_path` is that schema), unmigrated.
///
/// Tests get isolation without creating a database each (which is slow and needs more
/// privileges); the guard drops the schema with everything in it.
///
/// # Errors
/// When the server cannot be reached or refuses to create the schema.
pub async fn fresh_postgres(base_url: &str) -> Result<(Store, TestSchemaGuard), StoreError> {
    fresh_postgres_with(base_url, test_options()).await
}

/// As [`fresh_postgres`], with the given pool settings.
///
/// # Errors
/// As [`fresh_postgres`].
pub async fn fresh_postgres_with(
    base_url: &str,
    store_options: StoreOptions,
) -> Result<(Store, TestSchemaGuard), StoreError> {
    let base = PgConnectOptions::from_str(base_url)?;
    let schema = format!("s_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&base).await?;
    // The name is ours (a prefix and hex digits), so formatting it into SQL is safe.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let guard = TestSchemaGuard {
        base: base.clone(),
        schema: schema.clone(),
    };
    let options = base.options([("search_path", schema.as_str())]);
    let store = Store::connect_postgres(options, &store_options).await?;
    Ok((store, guard))
}

/// Drops its PostgreSQL schema (`DROP SCHEMA … CASCADE`) when dropped.
#[derive(Debug)]
pub struct TestSchemaGuard {
    base: PgConnectOptions,
    schema: String,
}

impl TestSchemaGuard {
    /// The schema's name, `s_<uuid>`.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Drop for TestSchemaGuard {
    fn drop(&mut self) {
        // Drop cannot await, and blocking on the test's own runtime would deadlock a
        // current-thread runtime; a short-lived thread with its own runtime does the work.
        let base = self.base.clone();
        let sql = format!(
            "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE",
            self.schema
        );
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let mut conn = PgConnection::connect_with(&base)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.close().await.map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test schema {}: {e}", self.schema),
            Err(_) => eprintln!("warning: dropping test schema {} panicked", self.schema),
        }
    }
}

/// Creates a store on a new SQLite file `strata-store-<uuid>.db` in the system's temporary
/// directory, unmigrated. The guard deletes the file and its `-wal`/`-shm`/`.lock` companions.
///
/// # Panics
/// When the file cannot be created: a broken test machine, not a test failure to handle.
pub async fn fresh_sqlite() -> (Store, TempFileGuard) {
    let path = std::env::temp_dir().join(format!("strata-store-{}.db", Uuid::new_v4()));
    let guard = TempFileGuard { path };
    let url = format!("sqlite://{}", guard.path.display());
    match Store::connect(&url, test_options()).await {
        Ok(store) => (store, guard),
        Err(e) => panic!("cannot create test database {}: {e}", guard.path.display()),
    }
}

/// Deletes a SQLite database file and its companions when dropped.
#[derive(Debug)]
pub struct TempFileGuard {
    path: PathBuf,
}

impl TempFileGuard {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The write-ahead log next to the database file.
    pub fn wal_path(&self) -> PathBuf {
        companion(&self.path, "-wal")
    }
}

impl Drop for TempFileGuard {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
            // Missing companions are normal (no WAL after a clean close).
            let _ = std::fs::remove_file(companion(&self.path, suffix));
        }
    }
}

/// `path` with `suffix` appended to its file name, as SQLite names its companion files.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Executes test-only SQL (fixtures, deliberate schema drift) on whichever backend the store
/// has, and returns the number of rows affected. Only `'static` text is accepted, as with sqlx:
/// tests do not build SQL from data.
///
/// # Errors
/// When the statement fails.
pub async fn execute(store: &Store, sql: &'static str) -> Result<u64, StoreError> {
    let affected = dispatch!(store, pool => {
        sqlx::raw_sql(sql).execute(pool).await?.rows_affected()
    });
    Ok(affected)
}

/// Makes sure an account with exactly the id `id` exists and has `role` (created as
/// `user<id>@example.test`, display name `User <id>`), for tests that sign their own tokens
/// for chosen ids: the roles that decide what a caller may do are read from the store.
/// Explicit ids bypass PostgreSQL's identity sequence, so a store used this way should not
/// also register accounts the ordinary way.
///
/// # Errors
/// When the statement fails.
pub async fn account(store: &Store, id: i64, role: UserRole) -> Result<(), StoreError> {
    let email = format!("user{id}@example.test");
    let name = format!("User {id}");
    macro_rules! upsert {
        ($override:literal) => {
            concat!(
                "INSERT INTO users (id, email, display_name, password_hash, role) ",
                $override,
                "VALUES ($1, $2, $3, 'not a password hash', $4) ",
                "ON CONFLICT (id) DO UPDATE SET role = excluded.role"
            )
        };
    }
    match &store.backend {
        Backend::Sqlite(pool) => {
            sqlx::query(upsert!(""))
                .bind(id)
                .bind(email)
                .bind(name)
                .bind(role.as_str())
                .execute(pool)
                .await?;
        }
        Backend::Postgres(pool) => {
            // The id is an identity column: an explicit one must override it.
            sqlx::query(upsert!("OVERRIDING SYSTEM VALUE "))
                .bind(id)
                .bind(email)
                .bind(name)
                .bind(role.as_str())
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Applies the embedded migrations up to and including `version` only, so upgrade tests can
/// fill a schema as an older build left it and then migrate the rest.
///
/// # Errors
/// [`StoreError::Migrate`] when a migration fails.
pub async fn migrate_to(store: &Store, version: i64) -> Result<(), StoreError> {
    let migrator = crate::migrate::migrator(store.dialect());
    dispatch!(store, pool => migrator.run_to(version, pool).await?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_append_to_the_file_name() {
        assert_eq!(
            companion(Path::new("/tmp/a.db"), "-wal"),
            PathBuf::from("/tmp/a.db-wal")
        );
    }

    #[tokio::test]
    async fn sqlite_guard_removes_the_file() {
        let (store, guard) = fresh_sqlite().await;
        store.migrate().await.unwrap();
        let path = guard.path().to_path_buf();
        assert!(path.exists());
        store.close().await.unwrap();
        drop(guard);
        assert!(!path.exists());
    }
}
