//! Backups of the embedded store. [`EmbeddedDatabase::backup`] writes an online, consistent
//! copy of the SQLite file while strata serves (and writes to) it; [`EmbeddedDatabase::restore`]
//! puts such a copy in place of the file, once it has checked it and only while no strata has
//! the store open. A PostgreSQL store has tools of its own for this (`pg_dump`,
//! `pg_basebackup`) and is refused here.
//!
//! Neither leaves a half-written file under the name it writes: each writes a temporary file
//! next to its target, flushes it to disk, renames it over the target (a rename within one
//! directory is atomic) and flushes the directory, so that the rename survives a power cut.
//! The copy is taken with SQLite's `VACUUM INTO`, which reads the database in one read
//! transaction: a snapshot of the committed state, whatever the writers do meanwhile, without
//! blocking them (the store runs in WAL mode).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use crate::lock::{FileLock, LockError, LockMode, lock_path};
use crate::migrate::migrator;
use crate::store::is_in_memory_url;
use crate::{Dialect, StoreError};

/// The tables a summary counts, in the order it shows them: (name, label, count query).
const COUNTED: [(&str, &str, &str); 4] = [
    ("users", "users", "SELECT COUNT(*) FROM users"),
    ("products", "products", "SELECT COUNT(*) FROM products"),
    ("orders", "orders", "SELECT COUNT(*) FROM orders"),
    (
        "chat_messages",
        "chat messages",
        "SELECT COUNT(*) FROM chat_messages",
    ),
];

/// The files SQLite keeps next to a database: its write-ahead log and shared-memory index (WAL
/// mode) and its rollback journal.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// What can go wrong backing up or restoring the embedded store.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store is PostgreSQL.
    #[error(
        "backup and restore are for the embedded SQLite store; this store is PostgreSQL: use \
         its own tools (pg_dump and pg_restore, or pg_basebackup)"
    )]
    Postgres,
    /// The store is an in-memory SQLite database, which has no file.
    #[error("an in-memory SQLite store has no file to back up or restore")]
    InMemory,
    /// The database or backup file to read does not exist.
    #[error("there is no database at {path}")]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The backup file exists, and replacing it was not asked for.
    #[error("{path} exists already")]
    Exists {
        /// The backup file.
        path: PathBuf,
    },
    /// A restore was asked for while a strata has the store open.
    #[error(
        "the store at {path} is in use by a running strata (`strata up` or `strata serve`): \
         stop it before restoring"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
    },
    /// A backup was asked for while a restore replaces the store.
    #[error("the store at {path} is being restored")]
    BeingRestored {
        /// The database file.
        path: PathBuf,
    },
    /// The file to restore is not a SQLite database at all.
    #[error("{path} is not a SQLite database")]
    NotADatabase {
        /// The file to restore.
        path: PathBuf,
    },
    /// The file is a SQLite database that fails its integrity check.
    #[error("{path} is damaged: {detail}")]
    Corrupt {
        /// The file that was checked.
        path: PathBuf,
        /// SQLite's first findings.
        detail: String,
    },
    /// The file is a SQLite database without strata's migration history.
    #[error("{path} is not a strata store: it has no migration history")]
    NotAStore {
        /// The file to restore.
        path: PathBuf,
    },
    /// The file has a migration this build does not know: a newer strata made it.
    #[error(
        "{path} has migration {version}, which this strata does not know: restore it with the \
         strata that made it, or a newer one"
    )]
    UnknownMigration {
        /// The file to restore.
        path: PathBuf,
        /// The unknown migration's version.
        version: i64,
    },
    /// The file's migration history is not a prefix of this build's.
    #[error("{path}: migration {version} {problem}")]
    MigrationMismatch {
        /// The file to restore.
        path: PathBuf,
        /// The migration at fault.
        version: i64,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`create`, `rename … to`, …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    /// True when the error is the caller's configuration or arguments rather than the state
    /// of the files: a PostgreSQL or in-memory store, a backup file that exists.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            BackupError::Postgres | BackupError::InMemory | BackupError::Exists { .. }
        )
    }
}

impl From<sqlx::Error> for BackupError {
    fn from(err: sqlx::Error) -> Self {
        BackupError::Store(StoreError::from(err))
    }
}

/// What a backup wrote, or a restore put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// The file written: the backup, or the restored database.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The newest migration applied in it (0 when none is).
    pub schema_version: i64,
    /// The newest migration this build knows. When `schema_version` is older, the next start
    /// of strata applies the rest.
    pub latest_version: i64,
    /// Rows of the main tables it has, as `(label, rows)`: users, products, orders, chat
    /// messages.
    pub rows: Vec<(&'static str, i64)>,
    /// The files of a directory saved with the database, or put back from it (the local
    /// object store's product images); `None` when none were asked for or the backup has none.
    pub files: Option<SavedFiles>,
}

/// The files of a directory a backup holds (see [`EmbeddedDatabase::backup_with_files`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedFiles {
    /// The directory they were read from, or put back into.
    pub dir: PathBuf,
    /// How many files.
    pub files: u64,
    /// Their sizes added up, in bytes.
    pub bytes: u64,
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} bytes, schema version {}",
            self.path.display(),
            self.bytes,
            self.schema_version
        )?;
        if self.schema_version < self.latest_version {
            write!(
                f,
                " (this strata migrates it to {} on start)",
                self.latest_version
            )?;
        }
        for (label, rows) in &self.rows {
            write!(f, ", {label} {rows}")?;
        }
        if let Some(saved) = &self.files {
            write!(
                f,
                ", {} files of {} ({} bytes)",
                saved.files,
                saved.dir.display(),
                saved.bytes
            )?;
        }
        Ok(())
    }
}

/// The database file of an embedded (SQLite) store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedDatabase {
    path: PathBuf,
}

impl EmbeddedDatabase {
    /// The database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The database file a store URL names (`sqlite://strata-data/strata.db`).
    ///
    /// # Errors
    /// [`BackupError::Postgres`] for a PostgreSQL URL, [`BackupError::InMemory`] for an
    /// in-memory SQLite one, and [`StoreError::MissingScheme`] or
    /// [`StoreError::UnsupportedScheme`] (as [`BackupError::Store`]) for anything else.
    pub fn from_url(url: &str) -> Result<Self, BackupError> {
        let Some((scheme, _)) = url.split_once(':') else {
            return Err(StoreError::MissingScheme.into());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Err(BackupError::Postgres),
            "sqlite" if is_in_memory_url(url) => Err(BackupError::InMemory),
            "sqlite" => {
                let options = SqliteConnectOptions::from_str(url).map_err(StoreError::from)?;
                Ok(Self::new(options.get_filename()))
            }
            _ => Err(StoreError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            }
            .into()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the database to `dest`, while strata may be serving and
    /// writing to it, and returns what it wrote. The copy is written to a temporary file next
    /// to `dest`, checked as a restore would check it, flushed to disk and only then renamed
    /// to `dest`, so `dest` is never a partial file. The copy is compact (`VACUUM INTO`) and
    /// in rollback-journal mode; a store opened on it turns WAL back on.
    ///
    /// # Errors
    /// [`BackupError::Exists`] when `dest` exists and `replace` is false;
    /// [`BackupError::Missing`] when there is no database; [`BackupError::BeingRestored`]
    /// during a restore; I/O and database errors otherwise. On error `dest` is as it was.
    pub async fn backup(&self, dest: &Path, replace: bool) -> Result<BackupSummary, BackupError> {
        self.backup_with_files(dest, replace, None).await
    }

    /// As [`EmbeddedDatabase::backup`], and saves in the same file every file under `files`
    /// (the local object store's directory: product images), when given. A file whose name
    /// starts with `.` (a write in progress) is left out, as are symbolic links; a missing
    /// directory is saved as an empty one. The files are read after the database's snapshot,
    /// one by one: a file replaced meanwhile is saved as it is when read.
    ///
    /// # Errors
    /// As [`EmbeddedDatabase::backup`]; I/O errors reading the files, and a path below
    /// `files` that is not UTF-8.
    pub async fn backup_with_files(
        &self,
        dest: &Path,
        replace: bool,
        files: Option<&Path>,
    ) -> Result<BackupSummary, BackupError> {
        // Looked for before the lock, whose file would otherwise be made in a directory
        // that may not even exist.
        if !exists(&self.path)? {
            return Err(BackupError::Missing {
                path: self.path.clone(),
            });
        }
        let _lock = self.lock(LockMode::Shared)?;
        if !replace && exists(dest)? {
            return Err(BackupError::Exists {
                path: dest.to_path_buf(),
            });
        }
        let partial = PartialFile::next_to(dest, "partial")?;
        vacuum_into(&self.path, partial.path()).await?;
        let saved = match files {
            Some(dir) => Some(save_files(partial.path(), dir).await?),
            None => None,
        };
        sync_file(partial.path()).await?;
        let mut summary = inspect(partial.path(), &self.path).await?;
        summary.files = saved;
        if !replace && exists(dest)? {
            return Err(BackupError::Exists {
                path: dest.to_path_buf(),
            });
        }
        partial.persist(dest).await?;
        summary.path = dest.to_path_buf();
        Ok(summary)
    }

    /// Replaces the database with a copy of `source` (a file `backup` wrote, or the database
    /// file of a stopped store) and returns what is now in place.
    ///
    /// It takes the store's lock exclusively before it writes anything, so it fails at once
    /// while any strata has the store open, and no strata can open it until the restore is
    /// done. Then it copies
    /// `source` to a temporary file next to the database and checks that copy: a SQLite
    /// database, `PRAGMA integrity_check` clean, with a migration history that is a prefix of
    /// this build's migrations (an older store is migrated forward by the next start; a newer
    /// one is refused). Only then does it remove the database's stale `-wal`, `-shm` and
    /// `-journal` files (a write-ahead log left next to another database would be replayed
    /// into it) and rename the copy over the database. The data directory is created when
    /// missing. `source` itself is only read.
    ///
    /// # Errors
    /// [`BackupError::InUse`] while a strata has the store open; [`BackupError::Missing`],
    /// [`BackupError::NotADatabase`], [`BackupError::Corrupt`], [`BackupError::NotAStore`],
    /// [`BackupError::UnknownMigration`] or [`BackupError::MigrationMismatch`] for a source
    /// that does not pass the checks, with the database left as it was; I/O errors otherwise.
    pub async fn restore(&self, source: &Path) -> Result<BackupSummary, BackupError> {
        self.restore_with_files(source, None).await
    }

    /// As [`EmbeddedDatabase::restore`], and puts the files `source` holds (see
    /// [`EmbeddedDatabase::backup_with_files`]) in place of the directory `files`, when given
    /// and when `source` has them (`summary.files` says whether it had). They are written to
    /// a new directory next to `files` first, then the database is put in place, then the new
    /// directory replaces the old one (two renames). The restored database keeps no copy
    /// of them.
    ///
    /// # Errors
    /// As [`EmbeddedDatabase::restore`]; I/O errors writing the files, and
    /// [`BackupError::Corrupt`] for a saved path that would leave the directory.
    pub async fn restore_with_files(
        &self,
        source: &Path,
        files: Option<&Path>,
    ) -> Result<BackupSummary, BackupError> {
        if !exists(source)? {
            return Err(BackupError::Missing {
                path: source.to_path_buf(),
            });
        }
        create_dir(parent_dir(&self.path)).await?;
        let lock = self.lock(LockMode::Exclusive)?;
        let partial = PartialFile::next_to(&self.path, "restore")?;
        tokio::fs::copy(source, partial.path())
            .await
            .map_err(|e| io("copy", source, e))?;
        sync_file(partial.path()).await?;
        let mut summary = inspect(partial.path(), source).await?;
        let staged = match files {
            Some(dir) => take_files(partial.path(), source, dir).await?,
            None => None,
        };
        // Checking may have left journal files of the copy behind: not part of what is put in
        // place.
        remove_companions(partial.path()).await?;
        remove_companions(&self.path).await?;
        partial.persist(&self.path).await?;
        if let Some(staged) = staged {
            summary.files = Some(staged.put_in_place().await?);
        }
        lock.release();
        summary.path = self.path.clone();
        Ok(summary)
    }

    /// Takes the store's lock in `mode`.
    fn lock(&self, mode: LockMode) -> Result<FileLock, BackupError> {
        FileLock::acquire(&self.path, mode).map_err(|e| match (e, mode) {
            (LockError::Busy, LockMode::Exclusive) => BackupError::InUse {
                path: self.path.clone(),
            },
            (LockError::Busy, LockMode::Shared) => BackupError::BeingRestored {
                path: self.path.clone(),
            },
            (LockError::Io(source), _) => io("lock", &lock_path(&self.path), source),
        })
    }
}

/// Copies the database at `database` into the new file `target` with `VACUUM INTO`.
async fn vacuum_into(database: &Path, target: &Path) -> Result<(), BackupError> {
    let target_text = target.to_str().ok_or_else(|| {
        io(
            "write",
            target,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "SQLite needs the path in UTF-8",
            ),
        )
    })?;
    // The journal mode is left as the file has it: this connection only reads.
    let options = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let copied = sqlx::query("VACUUM INTO $1")
        .bind(target_text)
        .execute(&mut conn)
        .await;
    conn.close().await?;
    copied?;
    Ok(())
}

/// Checks the SQLite file at `file` as a restore needs it (see
/// [`EmbeddedDatabase::restore`]) and summarizes it. Errors name `shown`, the file the caller
/// knows (`file` is a temporary copy of it).
async fn inspect(file: &Path, shown: &Path) -> Result<BackupSummary, BackupError> {
    let options = SqliteConnectOptions::new()
        .filename(file)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| classify(e, shown))?;
    let checked = check(&mut conn, shown).await;
    conn.close().await?;
    let (schema_version, rows) = checked?;
    let bytes = tokio::fs::metadata(file)
        .await
        .map_err(|e| io("read", file, e))?
        .len();
    Ok(BackupSummary {
        path: file.to_path_buf(),
        bytes,
        schema_version,
        latest_version: known_migrations().last().map_or(0, |(version, _)| *version),
        rows,
        files: None,
    })
}

/// The checks of [`inspect`] on an open connection: the schema version and the row counts.
async fn check(
    conn: &mut SqliteConnection,
    shown: &Path,
) -> Result<(i64, Vec<(&'static str, i64)>), BackupError> {
    let report: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(e, shown))?;
    if report != ["ok"] {
        return Err(BackupError::Corrupt {
            path: shown.to_path_buf(),
            detail: report.into_iter().take(3).collect::<Vec<_>>().join("; "),
        });
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(e, shown))?;
    if !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(BackupError::NotAStore {
            path: shown.to_path_buf(),
        });
    }
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| classify(e, shown))?;
    let schema_version = check_history(&applied, &known_migrations()).map_err(|e| e.at(shown))?;
    let mut rows = Vec::new();
    for (table, label, count) in COUNTED {
        if tables.iter().any(|t| t == table) {
            let n: i64 = sqlx::query_scalar(count)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| classify(e, shown))?;
            rows.push((label, n));
        }
    }
    Ok((schema_version, rows))
}

/// This build's SQLite migrations, `(version, checksum)`, in order.
fn known_migrations() -> Vec<(i64, &'static [u8])> {
    migrator(Dialect::Sqlite)
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| (m.version, &*m.checksum))
        .collect()
}

/// What is wrong with a migration history, before it is tied to a file.
#[derive(Debug, PartialEq, Eq)]
enum HistoryError {
    Unknown(i64),
    Mismatch(i64, &'static str),
}

impl HistoryError {
    fn at(self, path: &Path) -> BackupError {
        let path = path.to_path_buf();
        match self {
            HistoryError::Unknown(version) => BackupError::UnknownMigration { path, version },
            HistoryError::Mismatch(version, problem) => BackupError::MigrationMismatch {
                path,
                version,
                problem,
            },
        }
    }
}

/// Checks that `applied` (`(version, checksum, success)` by version, from `_sqlx_migrations`)
/// is a prefix of `known`: the first n known migrations, each applied successfully with the
/// same checksum. Returns the newest applied version (0 for none).
fn check_history(
    applied: &[(i64, Vec<u8>, bool)],
    known: &[(i64, &[u8])],
) -> Result<i64, HistoryError> {
    for (i, (version, checksum, success)) in applied.iter().enumerate() {
        let Some(&(expected, expected_checksum)) = known.get(i) else {
            return Err(HistoryError::Unknown(*version));
        };
        if *version != expected {
            return Err(if known.iter().any(|(v, _)| v == version) {
                // A known later one is there while `expected` is not.
                HistoryError::Mismatch(expected, "is missing while later ones are applied")
            } else {
                HistoryError::Unknown(*version)
            });
        }
        if !success {
            return Err(HistoryError::Mismatch(
                *version,
                "failed when it was applied",
            ));
        }
        if checksum.as_slice() != expected_checksum {
            return Err(HistoryError::Mismatch(
                *version,
                "differs from this strata's (its checksum does not match)",
            ));
        }
    }
    Ok(applied.last().map_or(0, |(version, _, _)| *version))
}

/// Maps a database error met while checking `shown` to what it says about the file.
fn classify(err: sqlx::Error, shown: &Path) -> BackupError {
    if let sqlx::Error::Database(db) = &err {
        // SQLite reports extended result codes; the primary code is the low byte.
        let primary = db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        match primary {
            // SQLITE_NOTADB
            Some(26) => {
                return BackupError::NotADatabase {
                    path: shown.to_path_buf(),
                };
            }
            // SQLITE_CORRUPT
            Some(11) => {
                return BackupError::Corrupt {
                    path: shown.to_path_buf(),
                    detail: db.message().to_owned(),
                };
            }
            _ => {}
        }
    }
    err.into()
}

/// A temporary file next to a target, removed (with any journal files of its own) on drop
/// unless [`PartialFile::persist`] renamed it over the target.
#[derive(Debug)]
struct PartialFile {
    path: PathBuf,
    persisted: bool,
}

impl PartialFile {
    /// `.<target name>.<purpose>-<pid>` in the target's directory, which must exist; a stale
    /// one from an earlier run of this pid is removed.
    fn next_to(target: &Path, purpose: &str) -> Result<PartialFile, BackupError> {
        let Some(name) = target.file_name() else {
            return Err(io(
                "write",
                target,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            ));
        };
        let dir = parent_dir(target);
        if !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            return Err(io(
                "write into",
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            ));
        }
        let path = dir.join(format!(
            ".{}.{purpose}-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let partial = PartialFile {
            path,
            persisted: false,
        };
        partial.remove();
        Ok(partial)
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file over `target` and flushes the directory.
    async fn persist(mut self, target: &Path) -> Result<(), BackupError> {
        tokio::fs::rename(&self.path, target)
            .await
            .map_err(|e| io("rename a temporary file to", target, e))?;
        self.persisted = true;
        sync_dir(parent_dir(target)).await
    }

    fn remove(&self) {
        // Missing files are the normal case.
        let _ = std::fs::remove_file(&self.path);
        for suffix in COMPANIONS {
            let _ = std::fs::remove_file(companion(&self.path, suffix));
        }
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.persisted {
            self.remove();
        }
    }
}

/// `path` with `suffix` appended to its file name, as SQLite names its companion files.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes the `-wal`, `-shm` and `-journal` files of the database at `path`.
async fn remove_companions(path: &Path) -> Result<(), BackupError> {
    for suffix in COMPANIONS {
        let file = companion(path, suffix);
        match tokio::fs::remove_file(&file).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", &file, e)),
        }
    }
    Ok(())
}

/// The table of a backup that holds the files saved with the database, `strata_backup_files`
/// (written out in the queries below, which must be literals): each file's path below the
/// directory (`/`-separated) and its bytes. Never in a store: a restore drops it.
const FILES_TABLE: &str = "strata_backup_files";

/// Saves the files under `dir` into the table [`FILES_TABLE`] of the database `database`.
async fn save_files(database: &Path, dir: &Path) -> Result<SavedFiles, BackupError> {
    let files = list_files(dir).await?;
    let options = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let mut saved = SavedFiles {
        dir: dir.to_path_buf(),
        files: 0,
        bytes: 0,
    };
    let written = async {
        let mut tx = conn.begin().await?;
        sqlx::query(
            "CREATE TABLE strata_backup_files (path TEXT PRIMARY KEY NOT NULL, bytes BLOB NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (name, path) in files {
            let bytes = match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                // Removed since it was listed: not there to save.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("read", &path, e)),
            };
            saved.files += 1;
            saved.bytes += bytes.len() as u64;
            sqlx::query("INSERT INTO strata_backup_files (path, bytes) VALUES ($1, $2)")
            .bind(name)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok::<(), BackupError>(())
    }
    .await;
    conn.close().await?;
    written.map(|()| saved)
}

/// The regular files under `dir`, as (`/`-separated path below `dir`, path), skipping names
/// that start with `.` and symbolic links; none when `dir` does not exist.
async fn list_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let mut found = Vec::new();
    let mut todo = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, at)) = todo.pop() {
        let mut entries = match tokio::fs::read_dir(&at).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => {
                return Ok(found);
            }
            Err(e) => return Err(io("read the directory", &at, e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io("read the directory", &at, e))?
        {
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(io(
                    "save",
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "a name not in UTF-8"),
                ));
            };
            if name.starts_with('.') {
                continue;
            }
            let kind = entry
                .file_type()
                .await
                .map_err(|e| io("read the type of", &path, e))?;
            let relative = format!("{prefix}{name}");
            if kind.is_dir() {
                todo.push((format!("{relative}/"), path));
            } else if kind.is_file() {
                found.push((relative, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A saved path as a relative path that stays below the directory it is restored into:
/// `/`-separated names, none empty, `.` or `..`, and none with a backslash or NUL.
fn safe_relative(saved: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for name in saved.split('/') {
        if name.is_empty() || name == "." || name == ".." || name.contains(['\\', '\0']) {
            return None;
        }
        path.push(name);
    }
    Some(path)
}

/// Files taken out of a backup into a new directory next to the one they replace.
#[derive(Debug)]
struct StagedFiles {
    staging: PathBuf,
    saved: SavedFiles,
    in_place: bool,
}

impl Drop for StagedFiles {
    /// Files staged and never put in place (the restore failed after them) are removed.
    fn drop(&mut self) {
        if !self.in_place {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

impl StagedFiles {
    /// Replaces the directory with the staged one: the old one is renamed aside, the new one
    /// renamed in, the old one removed.
    async fn put_in_place(mut self) -> Result<SavedFiles, BackupError> {
        let dir = &self.saved.dir;
        let old = sibling(dir, "old")?;
        let _ = tokio::fs::remove_dir_all(&old).await;
        let had = exists(dir)?;
        if had {
            tokio::fs::rename(dir, &old)
                .await
                .map_err(|e| io("move aside", dir, e))?;
        }
        tokio::fs::rename(&self.staging, dir)
            .await
            .map_err(|e| io("rename the restored files to", dir, e))?;
        self.in_place = true;
        sync_dir(parent_dir(dir)).await?;
        if had {
            tokio::fs::remove_dir_all(&old)
                .await
                .map_err(|e| io("remove", &old, e))?;
        }
        Ok(self.saved.clone())
    }
}

/// `.<name>.<purpose>-<pid>` next to the directory `dir`.
fn sibling(dir: &Path, purpose: &str) -> Result<PathBuf, BackupError> {
    let name = dir.file_name().ok_or_else(|| {
        io(
            "restore into",
            dir,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory name"),
        )
    })?;
    Ok(parent_dir(dir).join(format!(
        ".{}.{purpose}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes the files the backup copy `database` holds into a new directory next to `dir`, and
/// drops them from the copy; `None` when it holds none. Errors name `shown`.
async fn take_files(
    database: &Path,
    shown: &Path,
    dir: &Path,
) -> Result<Option<StagedFiles>, BackupError> {
    let options = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    let staging = sibling(dir, "restore")?;
    let taken = async {
        let has: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        )
        .bind(FILES_TABLE)
        .fetch_one(&mut conn)
        .await?;
        if has == 0 {
            return Ok(None);
        }
        let _ = tokio::fs::remove_dir_all(&staging).await;
        create_dir(&staging).await?;
        let mut saved = SavedFiles {
            dir: dir.to_path_buf(),
            files: 0,
            bytes: 0,
        };
        // One file at a time, in path order: memory holds one image, not all of them.
        let mut after = String::new();
        loop {
            let row: Option<(String, Vec<u8>)> = sqlx::query_as(
                "SELECT path, bytes FROM strata_backup_files WHERE path > $1 ORDER BY path LIMIT 1",
            )
            .bind(&after)
            .fetch_optional(&mut conn)
            .await?;
            let Some((name, bytes)) = row else { break };
            let relative = safe_relative(&name).ok_or_else(|| BackupError::Corrupt {
                path: shown.to_path_buf(),
                detail: format!("a saved file's path leaves its directory: {name:?}"),
            })?;
            let target = staging.join(relative);
            create_dir(parent_dir(&target)).await?;
            tokio::fs::write(&target, &bytes)
                .await
                .map_err(|e| io("write", &target, e))?;
            sync_file(&target).await?;
            saved.files += 1;
            saved.bytes += bytes.len() as u64;
            after = name;
        }
        sqlx::query("DROP TABLE strata_backup_files")
            .execute(&mut conn)
            .await?;
        sqlx::query("VACUUM").execute(&mut conn).await?;
        Ok::<_, BackupError>(Some(StagedFiles {
            staging: staging.clone(),
            saved,
            in_place: false,
        }))
    }
    .await;
    conn.close().await?;
    if taken.is_err() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
    }
    taken
}

/// The directory of `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn exists(path: &Path) -> Result<bool, BackupError> {
    path.try_exists().map_err(|e| io("look for", path, e))
}

async fn create_dir(dir: &Path) -> Result<(), BackupError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io("create the directory", dir, e))
}

/// Flushes a file's content to disk.
async fn sync_file(path: &Path) -> Result<(), BackupError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io("open", path, e))?;
    file.sync_all().await.map_err(|e| io("flush", path, e))
}

/// Flushes a directory, so that a rename into it is on disk. Not every platform can open a
/// directory for this; those rely on their file system's ordering.
async fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    {
        let handle = tokio::fs::File::open(dir)
            .await
            .map_err(|e| io("open the directory", dir, e))?;
        handle
            .sync_all()
            .await
            .map_err(|e| io("flush the directory", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> BackupError {
    BackupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [(i64, &[u8]); 3] = [(1, b"a"), (2, b"b"), (3, b"c")];

    fn applied(rows: &[(i64, &[u8], bool)]) -> Vec<(i64, Vec<u8>, bool)> {
        rows.iter().map(|(v, c, s)| (*v, c.to_vec(), *s)).collect()
    }

    #[test]
    fn a_prefix_of_the_known_migrations_passes() {
        assert_eq!(check_history(&[], &KNOWN), Ok(0));
        assert_eq!(
            check_history(&applied(&[(1, b"a", true), (2, b"b", true)]), &KNOWN),
            Ok(2)
        );
        assert_eq!(
            check_history(
                &applied(&[(1, b"a", true), (2, b"b", true), (3, b"c", true)]),
                &KNOWN
            ),
            Ok(3)
        );
    }

    #[test]
    fn newer_gapped_failed_or_edited_histories_are_refused() {
        let newer = applied(&[
            (1, b"a", true),
            (2, b"b", true),
            (3, b"c", true),
            (4, b"d", true),
        ]);
        assert_eq!(check_history(&newer, &KNOWN), Err(HistoryError::Unknown(4)));
        let foreign = applied(&[(1, b"a", true), (7, b"x", true)]);
        assert_eq!(
            check_history(&foreign, &KNOWN),
            Err(HistoryError::Unknown(7))
        );
        let gap = applied(&[(1, b"a", true), (3, b"c", true)]);
        assert!(matches!(
            check_history(&gap, &KNOWN),
            Err(HistoryError::Mismatch(2, _))
        ));
        let failed = applied(&[(1, b"a", true), (2, b"b", false)]);
        assert!(matches!(
            check_history(&failed, &KNOWN),
            Err(HistoryError::Mismatch(2, _))
        ));
        let edited = applied(&[(1, b"z", true)]);
        assert!(matches!(
            check_history(&edited, &KNOWN),
            Err(HistoryError::Mismatch(1, _))
        ));
    }

    #[test]
    fn store_urls_name_their_file_or_are_refused() {
        assert_eq!(
            EmbeddedDatabase::from_url("sqlite://./strata-data/strata.db")
                .unwrap()
                .path(),
            Path::new("./strata-data/strata.db")
        );
        assert!(matches!(
            EmbeddedDatabase::from_url("postgres://u@h/db"),
            Err(BackupError::Postgres)
        ));
        assert!(matches!(
            EmbeddedDatabase::from_url("postgresql://u@h/db"),
            Err(BackupError::Postgres)
        ));
        assert!(matches!(
            EmbeddedDatabase::from_url("sqlite::memory:"),
            Err(BackupError::InMemory)
        ));
        assert!(matches!(
            EmbeddedDatabase::from_url("mysql://h/db"),
            Err(BackupError::Store(StoreError::UnsupportedScheme { .. }))
        ));
        assert!(BackupError::Postgres.to_string().contains("pg_dump"));
        assert!(BackupError::Postgres.is_usage());
        assert!(
            !BackupError::InUse {
                path: PathBuf::from("x")
            }
            .is_usage()
        );
    }

    #[test]
    fn saved_paths_stay_below_their_directory() {
        assert_eq!(
            safe_relative("products/7~obj"),
            Some(PathBuf::from("products").join("7~obj"))
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "a\\..\\b",
            "a\0b",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_summary_names_the_file_its_version_and_its_rows() {
        let summary = BackupSummary {
            path: PathBuf::from("/b/strata.bak"),
            bytes: 4096,
            schema_version: 3,
            latest_version: 5,
            rows: vec![("users", 2), ("orders", 7)],
            files: None,
        };
        assert_eq!(
            summary.to_string(),
            "/b/strata.bak: 4096 bytes, schema version 3 (this strata migrates it to 5 on \
             start), users 2, orders 7"
        );
        let with_files = BackupSummary {
            files: Some(SavedFiles {
                dir: PathBuf::from("/d/objects"),
                files: 3,
                bytes: 900,
            }),
            ..summary
        };
        assert!(
            with_files
                .to_string()
                .ends_with("orders 7, 3 files of /d/objects (900 bytes)"),
            "{with_files}"
        );
    }
}
