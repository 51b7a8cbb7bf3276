//! `strata backup FILE` and `strata restore FILE`: the embedded store's database file, copied
//! while it serves and put back while it is stopped (the work is `strata_store`'s
//! [`EmbeddedDatabase`]), with the product images of a local object store in the same file.
//! A PostgreSQL store is refused, with a pointer to its own tools; the images of an S3 bucket
//! are left to the bucket, which keeps its own copies.

use std::path::PathBuf;

use anyhow::Context;
use strata_store::{BackupError, BackupSummary, EmbeddedDatabase};

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
    let images = images(config);
    let summary = match database
        .backup_with_files(&args.file, args.force, images.as_deref())
        .await
    {
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
    print_images(config, &summary);
    Ok(())
}

/// Puts FILE in place of the store and prints what is in place now.
///
/// # Errors
/// A PostgreSQL or in-memory store (exit code 2); a strata running on the store, or a FILE
/// that is not a strata store this build can open (exit code 1).
pub async fn restore(args: &RestoreArgs, config: &Config) -> anyhow::Result<()> {
    let database = database(config)?;
    let images = images(config);
    let summary = database
        .restore_with_files(&args.file, images.as_deref())
        .await
        .with_context(|| {
            format!(
                "cannot restore {} into {}",
                args.file.display(),
                database.path().display()
            )
        })?;
    print_stdout(&format!("restored {} to {summary}\n", args.file.display()));
    print_images(config, &summary);
    Ok(())
}

/// The directory of the product images, when the object store is one (`objects.url` empty
/// or `file:`).
fn images(config: &Config) -> Option<PathBuf> {
    strata_objects::local_dir(&config.objects, &config.store.data_dir)
}

/// Says what became of the product images when the summary does not: left to their S3
/// bucket, or (a restore from a backup without them) left as they were.
fn print_images(config: &Config, summary: &BackupSummary) {
    match (images(config), &summary.files) {
        (None, _) => print_stdout(&format!(
            "product images: not in the backup: they are in the bucket {} (objects.url), \
             which keeps its own copies (use its versioning or replication)\n",
            config.objects.url
        )),
        (Some(dir), None) => print_stdout(&format!(
            "product images: the backup has none; {} is left as it was\n",
            dir.display()
        )),
        (Some(_), Some(_)) => {}
    }
}

/// The database file of the configured store.
fn database(config: &Config) -> anyhow::Result<EmbeddedDatabase> {
    Ok(EmbeddedDatabase::from_url(&config.store.effective_url())?)
}
