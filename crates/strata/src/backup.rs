//! `strata backup FILE` and `strata restore FILE`: the embedded store's database file, copied
//! while it serves and put back while it is stopped (the work is `strata_store`'s
//! [`EmbeddedDatabase`]). A PostgreSQL store is refused, with a pointer to its own tools.

use anyhow::Context;
use strata_store::{BackupError, EmbeddedDatabase};

use crate::cli::{BackupArgs, RestoreArgs};
use crate::config::Config;
use crate::up::print_stdout;

/// Writes the copy and prints what it wrote: path, size, schema version, rows per table.
///
/// # Errors
/// A PostgreSQL or in-memory store, or an existing FILE without `--force` (exit code 2); no
/// database, a restore in progress, or a failed copy (exit code 1).
pub async fn backup(args: &BackupArgs, config: &Config) -> anyhow::Result<()> {
    let database = database(config)?;
    let summary = match database.backup(&args.file, args.force).await {
        Ok(summary) => summary,
        Err(e @ BackupError::Exists { .. }) => {
            return Err(anyhow::Error::new(e).context("not replacing a file without --force"));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "cannot back up the store at {}",
                database.path().display()
            )));
        }
    };
    print_stdout(&format!("wrote {summary}\n"));
    Ok(())
}

/// Puts FILE in place of the store and prints what is in place now.
///
/// # Errors
/// A PostgreSQL or in-memory store (exit code 2); a strata running on the store, or a FILE
/// that is not a strata store this build can open (exit code 1).
pub async fn restore(args: &RestoreArgs, config: &Config) -> anyhow::Result<()> {
    let database = database(config)?;
    let summary = database.restore(&args.file).await.with_context(|| {
        format!(
            "cannot restore {} into {}",
            args.file.display(),
            database.path().display()
        )
    })?;
    print_stdout(&format!("restored {} to {summary}\n", args.file.display()));
    Ok(())
}

/// The database file of the configured store.
fn database(config: &Config) -> anyhow::Result<EmbeddedDatabase> {
    Ok(EmbeddedDatabase::from_url(&config.store.effective_url())?)
}
