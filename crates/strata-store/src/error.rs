//! The store's error type: what went wrong, classified so callers can map it (a constraint
//! violation is the client's fault, an unreachable backend is worth a retry) without looking at
//! driver-specific codes.

use std::path::PathBuf;

use sqlx::error::ErrorKind;

/// Everything that can go wrong in `strata-store`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names a scheme this crate cannot serve.
    #[error(
        "unsupported database URL scheme {scheme:?}: expected sqlite:, postgres: or postgresql:"
    )]
    UnsupportedScheme {
        /// The scheme as written in the URL (the part before the first `:`).
        scheme: String,
    },
    /// The database URL has no scheme at all. The URL itself is not repeated: it may hold a
    /// password.
    #[error("database URL has no scheme: expected sqlite:, postgres: or postgresql:")]
    MissingScheme,
    /// The directory that should hold the SQLite file could not be created.
    #[error("cannot create directory {path} for the SQLite database: {source}")]
    CreateDir {
        /// The directory we tried to create.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite file is locked exclusively: `strata restore` is replacing it.
    #[error("the store at {path} is being restored; start again once the restore is done")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The lock file next to the SQLite file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A read replica was given to a store that is not PostgreSQL, or is not PostgreSQL itself.
    #[error("a read replica needs PostgreSQL, for both the primary and the replica")]
    ReplicaNeedsPostgres,
    /// A write broke a named constraint (unique, check, foreign key, not null).
    #[error("{kind} constraint {constraint:?} violated")]
    Constraint {
        /// Which kind of constraint.
        kind: ConstraintKind,
        /// The constraint's name where the backend reports it (PostgreSQL always, SQLite for
        /// named CHECK constraints), otherwise the backend's description (e.g. `products.sku`).
        constraint: String,
        /// The driver's error, kept for logs.
        #[source]
        source: sqlx::Error,
    },
    /// The backend could not be reached or no connection was free in time: retrying later may
    /// succeed, and /readyz should report not ready.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The schema is behind the code: some embedded migrations are not applied yet.
    #[error("database migrations are not all applied")]
    MigrationsPending,
    /// A statement ran past the store's statement timeout (PostgreSQL `57014`, see
    /// `StoreOptions::statement_timeout`) and was cancelled: the database is overloaded or
    /// a lock is held too long. Worth trying again later (503), not a bug.
    #[error("statement timed out: {0}")]
    Timeout(#[source] sqlx::Error),
    /// Any other database error (bad SQL, decode failure, ...): a bug or an unexpected state.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A concurrent transaction got in the way: a PostgreSQL serialization failure, deadlock or
    /// lock timeout, or SQLite still busy or locked after its busy timeout. Running the whole
    /// transaction again may succeed; repositories retry a few times before returning it.
    #[error("conflict with a concurrent transaction: {0}")]
    Conflict(#[source] sqlx::Error),
}

impl StoreError {
    /// True when the operation may succeed if tried again later (backend unreachable, pool
    /// exhausted), so a caller can answer 503 rather than 500.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::Timeout(_)
        )
    }

    /// True when a write broke a UNIQUE (or primary key) constraint: the client asked for
    /// something that exists already (an email that is taken, a duplicate sku).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Constraint {
                kind: ConstraintKind::Unique,
                ..
            }
        )
    }
}

/// The kind of a violated constraint, as reported by either backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintKind {
    /// A UNIQUE or PRIMARY KEY constraint.
    Unique,
    /// A CHECK constraint.
    Check,
    /// A FOREIGN KEY constraint.
    ForeignKey,
    /// A NOT NULL constraint.
    NotNull,
}

impl std::fmt::Display for ConstraintKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConstraintKind::Unique => "unique",
            ConstraintKind::Check => "check",
            ConstraintKind::ForeignKey => "foreign key",
            ConstraintKind::NotNull => "not null",
        })
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if is_conflict(db.as_ref()) => StoreError::Conflict(err),
            sqlx::Error::Database(db) if is_statement_timeout(db.as_ref()) => {
                StoreError::Timeout(err)
            }
            sqlx::Error::Database(db) if is_unavailable(db.as_ref()) => {
                StoreError::Unavailable(err)
            }
            sqlx::Error::Database(db) => {
                let kind = match db.kind() {
                    ErrorKind::UniqueViolation => ConstraintKind::Unique,
                    ErrorKind::CheckViolation => ConstraintKind::Check,
                    ErrorKind::ForeignKeyViolation => ConstraintKind::ForeignKey,
                    ErrorKind::NotNullViolation => ConstraintKind::NotNull,
                    _ => return StoreError::Database(err),
                };
                let constraint = db
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| sqlite_constraint_subject(db.message()));
                StoreError::Constraint {
                    kind,
                    constraint,
                    source: err,
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            _ => StoreError::Database(err),
        }
    }
}

/// True for errors that a retry of the whole transaction may cure: PostgreSQL SQLSTATEs
/// `40001` (serialization failure), `40P01` (deadlock) and `55P03` (lock not available), SQLite
/// primary result codes `SQLITE_BUSY` (5) and `SQLITE_LOCKED` (6) with any extended code.
fn is_conflict(db: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite reports extended result codes; the primary code is the low byte.
        code.parse::<i32>()
            .is_ok_and(|extended| matches!(extended & 0xff, 5 | 6))
    } else {
        matches!(code.as_ref(), "40001" | "40P01" | "55P03")
    }
}

/// True for PostgreSQL's `57014` (query canceled), which `statement_timeout` raises.
fn is_statement_timeout(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
        && db.code().is_some_and(|code| code == "57014")
}

/// True for PostgreSQL errors that say the server cannot serve now, not that the statement is
/// wrong: class `08` (connection exception), `53300` (too many connections), `57P01`–`57P03`
/// (the server is shutting down, crashed, or starting up). A stopped or restarting server
/// sends these to the connections it had; the request is worth sending again later (503).
fn is_unavailable(db: &dyn sqlx::error::DatabaseError) -> bool {
    if db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_none()
    {
        return false;
    }
    db.code().is_some_and(|code| {
        code.starts_with("08") || matches!(code.as_ref(), "53300" | "57P01" | "57P02" | "57P03")
    })
}

/// SQLite does not report constraint names separately; its messages read
/// `CHECK constraint failed: products_price_nonneg` or `UNIQUE constraint failed: products.sku`.
/// The part after the colon is the most precise subject we have.
fn sqlite_constraint_subject(message: &str) -> String {
    message
        .split_once(": ")
        .map_or(message, |(_, subject)| subject)
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_messages_yield_the_constraint_subject() {
        assert_eq!(
            sqlite_constraint_subject("CHECK constraint failed: products_price_nonneg"),
            "products_price_nonneg"
        );
        assert_eq!(
            sqlite_constraint_subject("UNIQUE constraint failed: products.sku"),
            "products.sku"
        );
        assert_eq!(sqlite_constraint_subject("odd message"), "odd message");
    }

    #[test]
    fn pool_timeouts_are_transient_and_decode_errors_are_not() {
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn unsupported_scheme_names_the_scheme() {
        let err = StoreError::UnsupportedScheme {
            scheme: "mysql".into(),
        };
        assert!(err.to_string().contains("\"mysql\""), "{err}");
    }
}
