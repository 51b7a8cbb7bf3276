//! The advisory lock on an embedded store's database file: every [`Store`](crate::Store) that
//! opens the file (and every backup that reads it) holds it shared, and a restore takes it
//! exclusive, so the file is never replaced under a running strata and a strata never opens a
//! file that is being replaced.
//!
//! The lock is taken on a file of its own next to the database, `<database>.lock`, not on the
//! database: SQLite manages its own POSIX locks on the database file, and where the platform
//! emulates whole-file locks with POSIX locks the two would meet (closing any descriptor of a
//! file drops every POSIX lock the process holds on it). The lock file is created when missing
//! and never removed (removing it would let two processes lock two different files of the same
//! name). The operating system drops the lock when the process exits, however it exits, so a
//! crash never leaves the store locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The suffix of the lock file's name, after the database file's name.
const LOCK_SUFFIX: &str = ".lock";

/// How a [`FileLock`] holds its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Many holders at once: stores and backups.
    Shared,
    /// One holder and no shared one: a restore.
    Exclusive,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another holder has it in a conflicting mode.
    Busy,
    /// The lock file could not be opened or locked.
    Io(std::io::Error),
}

/// A held lock on `<database>.lock`, released by [`FileLock::release`] or on drop.
#[derive(Debug)]
pub(crate) struct FileLock {
    /// `None` once released. A std `Mutex`: it is never held across an await.
    file: Mutex<Option<File>>,
}

impl FileLock {
    /// Takes the lock of the database at `database` in `mode`, without waiting: a conflicting
    /// holder makes it fail at once with [`LockError::Busy`].
    pub(crate) fn acquire(database: &Path, mode: LockMode) -> Result<FileLock, LockError> {
        let path = lock_path(database);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LockError::Io)?;
        let locked = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match locked {
            Ok(()) => Ok(FileLock {
                file: Mutex::new(Some(file)),
            }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy),
            Err(TryLockError::Error(e)) => Err(LockError::Io(e)),
        }
    }

    /// Releases the lock now (closing its file releases it); releasing twice does nothing.
    pub(crate) fn release(&self) {
        let file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(file);
    }
}

/// `<database>.lock`.
pub(crate) fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(LOCK_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_database() -> PathBuf {
        std::env::temp_dir().join(format!("strata-lock-{}.db", uuid::Uuid::new_v4()))
    }

    #[test]
    fn shared_holders_coexist_and_exclude_an_exclusive_one() {
        let db = temp_database();
        let a = FileLock::acquire(&db, LockMode::Shared).unwrap();
        let b = FileLock::acquire(&db, LockMode::Shared).unwrap();
        assert!(matches!(
            FileLock::acquire(&db, LockMode::Exclusive),
            Err(LockError::Busy)
        ));
        a.release();
        assert!(matches!(
            FileLock::acquire(&db, LockMode::Exclusive),
            Err(LockError::Busy)
        ));
        drop(b);
        let exclusive = FileLock::acquire(&db, LockMode::Exclusive).unwrap();
        assert!(matches!(
            FileLock::acquire(&db, LockMode::Shared),
            Err(LockError::Busy)
        ));
        exclusive.release();
        exclusive.release();
        FileLock::acquire(&db, LockMode::Shared).unwrap();
        std::fs::remove_file(lock_path(&db)).unwrap();
    }

    #[test]
    fn the_lock_file_sits_next_to_the_database() {
        assert_eq!(
            lock_path(Path::new("/data/strata.db")),
            PathBuf::from("/data/strata.db.lock")
        );
    }
}
