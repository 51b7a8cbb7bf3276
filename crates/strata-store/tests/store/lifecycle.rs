//! Connecting, migrating, readiness and shutdown.

use std::time::{Duration, Instant};
use strata_core::testkit::{POSTGRES, require_service};
use strata_store::testing::{self, Schema};

use strata_store::{Dialect, Store, StoreError, StoreOptions};

use crate::harness::{both_dialects, migrated};

both_dialects!(
    migrations_applied_only_after_migrate,
    migrate_twice_is_a_noop,
    ping_answers,
);

async fn migrations_applied_only_after_migrate(store: &Store) {
    assert!(!store.migrations_applied().await.unwrap());
    migrated(store).await;
    assert!(store.migrations_applied().await.unwrap());
}

async fn migrate_twice_is_a_noop(store: &Store) {
    migrated(store).await;
    let seeded = store.seed_demo_catalog().await.unwrap();
    let before = Schema::introspect(store).await.unwrap();

    store.migrate().await.expect("second migrate succeeds");

    assert_eq!(Schema::introspect(store).await.unwrap(), before);
    assert_eq!(store.products().count().await.unwrap(), seeded as i64);
    assert!(store.migrations_applied().await.unwrap());
}

async fn ping_answers(store: &Store) {
    store.ping().await.unwrap();
}

#[tokio::test]
async fn migrations_applied_is_false_when_a_migration_is_missing() {
    let (store, _guard) = testing::fresh_sqlite().await;
    migrated(&store).await;
    // As if this build had one more migration than the database has seen.
    testing::execute(&store, "DELETE FROM _sqlx_migrations WHERE version = 1")
        .await
        .unwrap();
    assert!(!store.migrations_applied().await.unwrap());
}

#[tokio::test]
async fn close_leaves_a_checkpointed_sqlite_file() {
    let (store, guard) = testing::fresh_sqlite().await;
    assert_eq!(store.dialect(), Dialect::Sqlite);
    migrated(&store).await;
    let seeded = store.seed_demo_catalog().await.unwrap();
    let wal = guard.wal_path();
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(wal_len > 0, "writes should have gone to the WAL first");

    store.close().await.unwrap();

    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "{} still holds {wal_len} bytes", wal.display());
    assert!(store.ping().await.is_err(), "the pool is closed");

    // The main file alone holds everything: a copy without companions has the products.
    let copy = std::env::temp_dir().join(format!("strata-store-copy-{}.db", uuid::Uuid::new_v4()));
    std::fs::copy(guard.path(), &copy).unwrap();
    let reopened = Store::connect(
        &format!("sqlite://{}", copy.display()),
        StoreOptions::default(),
    )
    .await
    .unwrap();
    let count = reopened.products().count().await;
    reopened.close().await.unwrap();
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
    }
    assert_eq!(count.unwrap(), seeded as i64);
}

#[tokio::test]
async fn postgres_url_connects_through_store_connect() {
    let Some(url) = require_service(POSTGRES) else {
        return;
    };
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    assert_eq!(store.dialect(), Dialect::Postgres);
    store.ping().await.unwrap();
    store.close().await.unwrap();
    // `postgresql://` is the same scheme.
    let alias = url.replacen("postgres://", "postgresql://", 1);
    let store = Store::connect(&alias, StoreOptions::default())
        .await
        .unwrap();
    store.ping().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let opts = StoreOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..StoreOptions::default()
    };
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = Store::connect("postgres://postgres@127.0.0.1:1/test", opts)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn a_connection_the_server_terminated_is_unavailable_not_a_bug() {
    let Some(url) = require_service(POSTGRES) else {
        return;
    };
    // One connection, not checked before use: the next statement meets the termination.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // What a stopping server does to its connections (SQLSTATE 57P01, admin shutdown).
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&admin)
        .await
        .unwrap();
    let error = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    let error = strata_store::StoreError::from(error);
    assert!(
        error.is_transient(),
        "{error:?} should be unavailable (503)"
    );
}

/// A statement that runs past `statement_timeout` is cancelled by PostgreSQL and comes back
/// as [`StoreError::Timeout`], transient (the api answers 503), while migrations, which may
/// take longer, are not bound by it.
#[tokio::test]
async fn a_statement_past_the_statement_timeout_is_a_transient_timeout() {
    let Some(url) = require_service(POSTGRES) else {
        return;
    };
    let (store, _schema) = testing::fresh_postgres_with(
        &url,
        StoreOptions {
            statement_timeout: Duration::from_millis(200),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let started = Instant::now();
    let err = testing::execute(&store, "SELECT pg_sleep(3)")
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, StoreError::Timeout(_)), "{err:?}");
    assert!(err.is_transient(), "{err:?}");
    assert!(took < Duration::from_secs(2), "cancelled after {took:?}");
    // The connection is still good, and quick statements are untouched.
    testing::execute(&store, "SELECT pg_sleep(0.01)")
        .await
        .unwrap();
    store.close().await.unwrap();
}
