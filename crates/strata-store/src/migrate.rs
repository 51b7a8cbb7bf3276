//! Embedded schema migrations, one directory per dialect (`migrations/sqlite`,
//! `migrations/postgres`) with the same versions in both, and the check `/readyz` uses to tell
//! whether they have all been applied.

use std::collections::HashMap;

use sqlx::migrate::Migrator;

use crate::store::{Backend, Store, dispatch};
use crate::{Dialect, StoreError};

/// SQLite migrations, embedded at compile time.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
/// PostgreSQL migrations, embedded at compile time.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// sqlx's bookkeeping table, created by the first `migrate()`.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// The embedded migrations of one dialect.
pub(crate) fn migrator(dialect: Dialect) -> &'static Migrator {
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

impl Store {
    /// Applies the embedded migrations that have not been applied yet.
    ///
    /// Safe to call from every process at start-up: already applied migrations are skipped
    /// (after checking that their checksum still matches), and on PostgreSQL an advisory lock
    /// keeps two processes from migrating at once.
    ///
    /// On PostgreSQL the migrations run without the store's statement timeout (a migration
    /// may rewrite a large table), on a connection of their own that is closed afterwards
    /// rather than handed back to the pool without its limit.
    ///
    /// # Errors
    /// [`StoreError::Migrate`] when a migration fails or an applied one was edited afterwards.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = migrator(self.dialect());
        match &self.backend {
            Backend::Sqlite(pool) => migrator.run(pool).await?,
            Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?.detach();
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut connection)
                    .await?;
                let migrated = migrator.run(&mut connection).await;
                if let Err(e) = sqlx::Connection::close(connection).await {
                    tracing::debug!(error = %e, "closing the migration connection failed");
                }
                migrated?;
            }
        }
        Ok(())
    }

    /// Readiness of the store: it answers and every embedded migration is applied.
    ///
    /// # Errors
    /// [`StoreError::MigrationsPending`] when the schema is behind, or why the database could not
    /// be queried.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.ping().await?;
        if self.migrations_applied().await? {
            Ok(())
        } else {
            Err(StoreError::MigrationsPending)
        }
    }

    /// True when every embedded migration has been applied successfully with its current
    /// checksum: the "migrations done" half of `/readyz`. False on a fresh database, and on one
    /// migrated by an older build that lacks this build's newest migration.
    ///
    /// # Errors
    /// When the database cannot be queried.
    pub async fn migrations_applied(&self) -> Result<bool, StoreError> {
        let table_exists: bool = match &self.backend {
            Backend::Sqlite(pool) => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1)",
            )
            .bind(MIGRATIONS_TABLE)
            .fetch_one(pool)
            .await?,
            // to_regclass resolves through search_path, as the migrator does.
            Backend::Postgres(pool) => {
                sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                    .bind(MIGRATIONS_TABLE)
                    .fetch_one(pool)
                    .await?
            }
        };
        if !table_exists {
            return Ok(false);
        }
        let applied: Vec<(i64, Vec<u8>)> = dispatch!(self, pool => {
            sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await?
        });
        let applied: HashMap<i64, Vec<u8>> = applied.into_iter().collect();
        Ok(migrator(self.dialect())
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .all(|m| applied.get(&m.version).map(Vec::as_slice) == Some(&*m.checksum)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both dialects must evolve in lock step: same versions, same descriptions, in order.
    #[test]
    fn dialects_have_the_same_migration_versions() {
        let versions = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        let sqlite = versions(&SQLITE);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, versions(&POSTGRES));
    }
}
