//! The `Store` handle: one connection pool, SQLite or PostgreSQL, chosen once at start-up from the
//! database URL. Every dialect difference is settled in this crate, so callers hold a `Store` and
//! never ask which backend is behind it.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::carts::CartRepo;
use crate::chat::ChatRepo;
use crate::coupons::CouponRepo;
use crate::lock::{FileLock, LockError, LockMode};
use crate::orders::OrderRepo;
use crate::outbox::OutboxRepo;
use crate::products::{CatalogReads, ProductRepo};
use crate::users::UserRepo;

/// Which SQL dialect a [`Store`] speaks. Exposed for logs, metrics and `/readyz` output, not for
/// branching: queries that differ between dialects live in this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite: a file (or memory) in this process; the embedded mode of `strata up`.
    Sqlite,
    /// PostgreSQL: a server shared by every process; the scaled-out mode.
    Postgres,
}

impl Dialect {
    /// The dialect's lowercase name, as used in URLs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The statement that opens a transaction which will write.
    ///
    /// SQLite's default `BEGIN` is deferred: a transaction that reads and then writes may fail at
    /// once with `SQLITE_BUSY` (without waiting for the busy timeout) when another connection
    /// wrote in between. `BEGIN IMMEDIATE` takes the write lock up front, so writers queue
    /// behind the busy timeout instead.
    pub(crate) fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many times a write transaction is tried when a concurrent one gets in its way
/// ([`StoreError::Conflict`]): enough to ride out a burst, few enough that a stuck database
/// turns into a 503 within a second or so rather than a hung request.
pub(crate) const WRITE_ATTEMPTS: u32 = 5;

/// Runs the transaction `op` until it succeeds, fails for another reason than `is_conflict`,
/// or has been tried [`WRITE_ATTEMPTS`] times. Pauses grow from about 10 ms to 80 ms, with a
/// little jitter so that retrying transactions do not collide again in lock step.
///
/// `op` returns a fresh future per attempt (not an async closure: the futures of those are not
/// provably `Send` across lifetimes yet, and axum needs `Send` handlers).
pub(crate) async fn retry_on_conflict<T, E, F>(
    mut op: impl FnMut() -> F,
    is_conflict: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < WRITE_ATTEMPTS && is_conflict(&e) => {
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::from(d.subsec_nanos() % 5));
                let pause = Duration::from_millis((5 << attempt) + jitter);
                tracing::debug!(attempt, ?pause, "write conflict, retrying the transaction");
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// A timestamp bound as a query parameter, encoded the way each dialect stores timestamps: on
/// SQLite the UTC RFC 3339 text with exactly three fraction digits that the migrations'
/// defaults write (`2026-11-22T10:00:00.123Z`, so text order stays time order), on PostgreSQL
/// a `timestamptz`. sqlx's own `OffsetDateTime` encoding for SQLite writes a variable number of
/// fraction digits, which would break that order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DbTime(pub time::OffsetDateTime);

impl DbTime {
    /// The current time, truncated to milliseconds (the precision both dialects keep).
    pub(crate) fn now() -> Self {
        let now = time::OffsetDateTime::now_utc();
        Self(
            now.replace_nanosecond(u32::from(now.millisecond()) * 1_000_000)
                .unwrap_or(now),
        )
    }

    /// The SQLite text form, in UTC.
    fn sqlite_text(self) -> String {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl sqlx::Type<sqlx::Sqlite> for DbTime {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Sqlite> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        sqlx::Encode::<sqlx::Sqlite>::encode(self.sqlite_text(), buf)
    }
}

impl sqlx::Type<sqlx::Postgres> for DbTime {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <time::OffsetDateTime as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Postgres as sqlx::Database>::ArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        sqlx::Encode::<sqlx::Postgres>::encode_by_ref(&self.0, buf)
    }
}

/// Pool settings that apply to both dialects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Upper bound on open connections. Default 10: enough for a few concurrent requests per
    /// core on PostgreSQL (whose server default allows 100 connections in total, shared by
    /// every api and worker process), and for SQLite, where writes are serialized anyway and
    /// extra connections only serve concurrent readers. An in-memory SQLite database always
    /// uses exactly one connection (see [`Store::connect`]).
    pub max_connections: u32,
    /// How long to wait for a free connection before failing with
    /// [`StoreError::Unavailable`]. Default 5 s: short enough that `/readyz` and requests fail
    /// fast when the backend is gone, long enough to ride out a burst.
    pub acquire_timeout: Duration,
    /// How long one statement may take (`store.statement_timeout_ms`). Default 10 s: far
    /// above any statement strata runs, under the instances' request timeout, so a statement
    /// stuck behind a lock or a pathological plan fails as [`StoreError::Timeout`] (503) and
    /// gives its connection back instead of holding it for as long as the database likes.
    /// - PostgreSQL: the server's `statement_timeout`, set on every connection at start-up;
    ///   the server cancels a statement that runs longer. Migrations run without it.
    /// - SQLite: the busy timeout, the closest SQLite has: how long a statement waits for
    ///   another connection's write lock before it fails as [`StoreError::Conflict`]. SQLite
    ///   cannot cancel a statement that is running; strata's statements there are short.
    pub statement_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// A cheap-to-clone handle on the database: clones share one connection pool (and the read
/// replica's, when there is one).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) backend: Backend,
    /// A read-only PostgreSQL replica for catalog reads ([`Store::with_read_replica`]); the
    /// store inside has neither a replica nor a lock of its own.
    replica: Option<Arc<Store>>,
    /// A SQLite file's shared lock (see [`crate::lock`]), released by [`Store::close`].
    lock: Option<Arc<FileLock>>,
}

/// The pool behind a [`Store`]. Private to the crate: repositories match on it (usually through
/// [`dispatch!`]) so that no caller ever does.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same body against whichever pool the store holds, binding it to `$pool`.
///
/// sqlx's query builders are generic over the database, so SQL that both dialects accept (most
/// of it: `$1` placeholders work in SQLite too) is written once and compiled for each backend.
macro_rules! dispatch {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use dispatch;

impl Store {
    /// Connects to the database named by `url` and returns a handle on its pool.
    ///
    /// - `sqlite://path/to/file.db` (or `sqlite:path`): the file and its directory are created
    ///   when missing; every connection uses WAL journaling (readers do not block the writer),
    ///   `synchronous = NORMAL` (in WAL mode a power cut may lose the last commits but never
    ///   corrupts the file, and commits skip an fsync each),
    ///   [`StoreOptions::statement_timeout`] as the busy timeout, and enforced foreign keys.
    /// - `sqlite::memory:`: a private in-memory database for tests and throwaway runs. It lives
    ///   as long as its one connection, so the pool holds exactly one and never recycles it.
    /// - `postgres://…` or `postgresql://…`: anything sqlx's `PgConnectOptions` accepts (e.g.
    ///   `?options=-c%20search_path%3Dmyschema`); every connection gets
    ///   [`StoreOptions::statement_timeout`] as its `statement_timeout`.
    ///
    /// The first connection is opened here, so a bad URL or an unreachable server fails now
    /// rather than on the first request.
    ///
    /// A SQLite file is held with a shared lock on `<file>.lock` until [`Store::close`] (or the
    /// process's end): any number of stores and backups may have the file open, but
    /// [`EmbeddedDatabase::restore`](crate::EmbeddedDatabase::restore) will not replace it
    /// meanwhile.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedScheme`] or [`StoreError::MissingScheme`] for other URLs,
    /// [`StoreError::CreateDir`] when the SQLite file's directory cannot be created,
    /// [`StoreError::Locked`] while the file is being restored, and
    /// [`StoreError::Unavailable`] or [`StoreError::Database`] when connecting fails.
    pub async fn connect(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let Some((scheme, _)) = url.split_once(':') else {
            return Err(StoreError::MissingScheme);
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url)?;
                Self::connect_sqlite(options, is_in_memory_url(url), &opts).await
            }
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)?;
                Self::connect_postgres(options, &opts).await
            }
            _ => Err(StoreError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            }),
        }
    }

    /// Connects to SQLite with this crate's per-connection settings (see [`Store::connect`]).
    async fn connect_sqlite(
        options: SqliteConnectOptions,
        in_memory: bool,
        opts: &StoreOptions,
    ) -> Result<Store, StoreError> {
        let mut options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(opts.statement_timeout);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(opts.acquire_timeout);
        let mut lock = None;
        if in_memory {
            // The database vanishes with its last connection, so keep one open for good.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            let file = options.get_filename();
            create_parent_dir(file).await?;
            lock = Some(Arc::new(shared_lock(file)?));
            pool = pool.max_connections(opts.max_connections.max(1));
        }
        let pool = pool.connect_with(options).await?;
        Ok(Store {
            backend: Backend::Sqlite(pool),
            replica: None,
            lock,
        })
    }

    /// Connects to PostgreSQL with the given connection options. Tests use it to pin a pool to
    /// a schema through `search_path`.
    pub(crate) async fn connect_postgres(
        options: PgConnectOptions,
        opts: &StoreOptions,
    ) -> Result<Store, StoreError> {
        // In the start-up packet, so it holds from the connection's first statement and costs
        // no round trip; whole milliseconds, at least 1 (0 would turn the limit off).
        let timeout_ms = opts.statement_timeout.as_millis().max(1);
        let options = options.options([("statement_timeout", timeout_ms.to_string())]);
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Store {
            backend: Backend::Postgres(pool),
            replica: None,
            lock: None,
        })
    }

    /// This store, with catalog reads ([`Store::catalog_reads`]) served by `replica`: a
    /// read-only PostgreSQL streaming replica of this store's database. Everything else
    /// (writes, carts, checkout, orders, accounts, and [`Store::products`]) stays on this
    /// store's own pool. A replica lags its primary by the replication delay, so a catalog
    /// read may show a product as it was a moment ago; checkout reads stock on the primary.
    ///
    /// # Errors
    /// [`StoreError::ReplicaNeedsPostgres`] unless both this store and `replica` are
    /// PostgreSQL.
    pub fn with_read_replica(self, replica: Store) -> Result<Store, StoreError> {
        if self.dialect() != Dialect::Postgres || replica.dialect() != Dialect::Postgres {
            return Err(StoreError::ReplicaNeedsPostgres);
        }
        let replica = Store {
            backend: replica.backend,
            replica: None,
            lock: None,
        };
        Ok(Store {
            replica: Some(Arc::new(replica)),
            ..self
        })
    }

    /// True when catalog reads go to a read replica ([`Store::with_read_replica`]).
    pub fn has_read_replica(&self) -> bool {
        self.replica.is_some()
    }

    /// Readiness of the read replica, when there is one: when it answers, it must have every
    /// embedded migration (which reach it through replication), or catalog reads would meet
    /// an older schema. A replica that does not answer is no reason to stop serving: catalog
    /// reads go to the primary meanwhile. `Ok` without a replica.
    ///
    /// # Errors
    /// [`StoreError::MigrationsPending`] when the replica answers without every migration;
    /// errors other than unavailability from querying it.
    pub async fn read_replica_ready(&self) -> Result<(), StoreError> {
        match &self.replica {
            Some(replica) => match replica.ready().await {
                Err(error) if error.is_transient() => Ok(()),
                ready => ready,
            },
            None => Ok(()),
        }
    }

    /// Which dialect this store speaks.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Checks that the backend answers a trivial query: the "backend reachable" half of
    /// `/readyz`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when no connection can be had within the acquire timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// The product catalog, on the primary: writes, and reads that must see them.
    pub fn products(&self) -> ProductRepo<'_> {
        ProductRepo::new(self)
    }

    /// Reads of the catalog that may be served by the read replica when the store has one
    /// ([`Store::with_read_replica`]), and by the primary otherwise or while the replica is
    /// unavailable. What they return may lag the primary by the replication delay.
    pub fn catalog_reads(&self) -> CatalogReads<'_> {
        CatalogReads::new(
            self.replica.as_deref().map(ProductRepo::new),
            ProductRepo::new(self),
        )
    }

    /// Accounts.
    pub fn users(&self) -> UserRepo<'_> {
        UserRepo::new(self)
    }

    /// Shopping carts, by user or anonymous cart cookie.
    pub fn carts(&self) -> CartRepo<'_> {
        CartRepo::new(self)
    }

    /// Coupon rules.
    pub fn coupons(&self) -> CouponRepo<'_> {
        CouponRepo::new(self)
    }

    /// Orders and checkout.
    pub fn orders(&self) -> OrderRepo<'_> {
        OrderRepo::new(self)
    }

    /// Chat rooms, members and messages.
    pub fn chat(&self) -> ChatRepo<'_> {
        ChatRepo::new(self)
    }

    /// Which events the handlers have applied.
    pub fn events(&self) -> crate::EventRepo<'_> {
        crate::EventRepo::new(self)
    }

    /// Customers' notifications.
    pub fn notifications(&self) -> crate::NotificationRepo<'_> {
        crate::NotificationRepo::new(self)
    }

    /// Events waiting to be relayed to the bus.
    pub fn outbox(&self) -> OutboxRepo<'_> {
        OutboxRepo::new(self)
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    ///
    /// On SQLite it first runs `PRAGMA wal_checkpoint(TRUNCATE)`, which copies the write-ahead
    /// log into the database file and empties the log, so a stopped `strata up` leaves one
    /// self-contained file that can be copied or inspected without its `-wal` companion.
    ///
    /// The read replica's pool, if any, is closed too, and a SQLite file's lock released.
    /// Closing an already closed store does nothing.
    ///
    /// # Errors
    /// When the checkpoint cannot run. The pool is closed in every case.
    pub async fn close(&self) -> Result<(), StoreError> {
        let replica = match &self.replica {
            // The replica's store has no replica and no lock of its own.
            Some(replica) => replica.close_pool().await,
            None => Ok(()),
        };
        let closed = self.close_pool().await;
        if let Some(lock) = &self.lock {
            lock.release();
        }
        closed.and(replica)
    }

    async fn close_pool(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) if pool.is_closed() => Ok(()),
            Backend::Sqlite(pool) => {
                let checkpoint = checkpoint_truncate(pool).await;
                pool.close().await;
                checkpoint
            }
            Backend::Postgres(pool) => {
                pool.close().await;
                Ok(())
            }
        }
    }
}

/// True for `sqlite::memory:`, `sqlite://:memory:` and `…?mode=memory` URLs, which have no file
/// to prepare. Read from the URL because sqlx keeps the flag private (and cannot rebuild a URL
/// from in-memory options).
pub(crate) fn is_in_memory_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|pair| pair == "mode=memory")
}

/// Takes the shared lock of the SQLite file at `file`.
fn shared_lock(file: &Path) -> Result<FileLock, StoreError> {
    FileLock::acquire(file, LockMode::Shared).map_err(|e| match e {
        LockError::Busy => StoreError::Locked {
            path: file.to_path_buf(),
        },
        LockError::Io(source) => StoreError::Lock {
            path: crate::lock::lock_path(file),
            source,
        },
    })
}

/// Creates the directory that will hold the SQLite file, so `sqlite://strata-data/strata.db`
/// works on a fresh checkout.
async fn create_parent_dir(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })
        }
        _ => Ok(()),
    }
}

/// Checkpoints the WAL into the main file and truncates it to zero bytes.
async fn checkpoint_truncate(pool: &SqlitePool) -> Result<(), StoreError> {
    // Columns: busy (1 when a reader or writer prevented a full checkpoint), log frames,
    // checkpointed frames.
    let (busy, _log, _done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(pool)
        .await?;
    if busy != 0 {
        tracing::warn!("SQLite WAL checkpoint on close was blocked by a busy connection");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_scheme_is_named_in_the_error() {
        let err = Store::connect("mysql://localhost/db", StoreOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::UnsupportedScheme { scheme } if scheme == "mysql"),
            "{err:?}"
        );
        assert!(err.to_string().contains("mysql"), "{err}");
    }

    #[tokio::test]
    async fn url_without_scheme_is_rejected() {
        let err = Store::connect("just-a-file.db", StoreOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::MissingScheme), "{err:?}");
    }

    #[tokio::test]
    async fn memory_database_survives_across_calls() {
        let store = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(store.dialect(), Dialect::Sqlite);
        store.migrate().await.unwrap();
        store.ping().await.unwrap();
        // A second pool connection would see an empty database; one connection sees the table.
        assert_eq!(store.products().count().await.unwrap(), 0);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_connections_get_the_documented_pragmas() {
        let dir = std::env::temp_dir().join(format!("strata-store-{}", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}", dir.join("pragmas.db").display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        let Backend::Sqlite(pool) = &store.backend else {
            panic!("not SQLite")
        };
        let mut conn = pool.acquire().await.unwrap();
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        // 1 = NORMAL.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        drop(conn);
        assert_eq!(
            (journal.as_str(), foreign_keys, synchronous, busy_ms),
            ("wal", 1, 1, 10_000),
            "the busy timeout is the statement timeout"
        );
        store.close().await.unwrap();
        store.close().await.expect("closing twice is harmless");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn sqlite_file_and_its_directory_are_created() {
        let dir = std::env::temp_dir().join(format!("strata-store-{}", uuid::Uuid::new_v4()));
        let file = dir.join("nested").join("strata.db");
        let url = format!("sqlite://{}", file.display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.ping().await.unwrap();
        assert!(file.exists(), "{} was not created", file.display());
        store.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_being_restored_is_not_opened_and_a_closed_store_lets_go_of_it() {
        let dir = std::env::temp_dir().join(format!("strata-store-{}", uuid::Uuid::new_v4()));
        let file = dir.join("strata.db");
        let url = format!("sqlite://{}", file.display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        assert!(matches!(
            FileLock::acquire(&file, LockMode::Exclusive),
            Err(LockError::Busy)
        ));
        store.close().await.unwrap();

        let restoring = FileLock::acquire(&file, LockMode::Exclusive).unwrap();
        let err = Store::connect(&url, StoreOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Locked { path } if *path == file),
            "{err:?}"
        );
        assert!(err.to_string().contains("being restored"), "{err}");
        drop(restoring);
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.close().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn only_postgres_takes_a_read_replica() {
        let primary = Store::connect("sqlite::memory:", StoreOptions::default())
            .await
            .unwrap();
        let replica = primary.clone();
        let err = primary.with_read_replica(replica).unwrap_err();
        assert!(matches!(err, StoreError::ReplicaNeedsPostgres), "{err:?}");
    }

    #[test]
    fn memory_urls_are_recognized() {
        assert!(is_in_memory_url("sqlite::memory:"));
        assert!(is_in_memory_url("sqlite://:memory:"));
        assert!(is_in_memory_url("sqlite://shared?mode=memory&cache=shared"));
        assert!(!is_in_memory_url("sqlite://strata-data/strata.db"));
        assert!(!is_in_memory_url("sqlite:memory.db"));
    }

    #[test]
    fn dialect_names() {
        assert_eq!(Dialect::Sqlite.to_string(), "sqlite");
        assert_eq!(Dialect::Postgres.as_str(), "postgres");
    }
}
