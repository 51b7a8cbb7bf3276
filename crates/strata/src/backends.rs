//! Connecting the backends a role needs (store, cache, bus) from the configuration, with the
//! start-up steps every process takes: migrate the store, seed it where asked.

use anyhow::Context;
use strata_bus::AnyBus;
use strata_cache::AnyCache;
use strata_core::Config;
use strata_store::{Store, StoreOptions};

/// Whether a process fills an empty catalog with the demo products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// Seed when the catalog is empty (`strata up`, `strata serve api`). The store makes this
    /// safe when several processes start at once against one database.
    IfEmpty,
    /// Leave the data alone (chat, worker).
    Never,
}

/// Connects the store, applies pending migrations and seeds it as asked.
///
/// Every process that uses the store migrates it: migrations are idempotent and serialized by
/// the store (an advisory lock on PostgreSQL), so no role depends on another having started
/// first.
///
/// # Errors
/// When the database cannot be reached, migrated or seeded; the message names the database
/// without its password.
pub async fn store(config: &Config, seed: Seed) -> anyhow::Result<Store> {
    let url = config.store.effective_url();
    let shown = redact(&url);
    let options = StoreOptions {
        max_connections: config.store.max_connections,
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, options)
        .await
        .with_context(|| format!("cannot connect to the store at {shown}"))?;
    if let Err(e) = store.migrate().await {
        close_quietly(&store).await;
        return Err(e).with_context(|| format!("cannot migrate the store at {shown}"));
    }
    if seed == Seed::IfEmpty {
        match store.seed_demo_catalog().await {
            Ok(inserted) => tracing::info!(inserted, store = %shown, "demo catalog checked"),
            Err(e) => {
                close_quietly(&store).await;
                return Err(e).with_context(|| format!("cannot seed the demo catalog at {shown}"));
            }
        }
    }
    tracing::info!(store = %shown, dialect = %store.dialect(), "store ready");
    Ok(store)
}

/// Builds the cache named by `cache.url`.
///
/// # Errors
/// When the URL is not supported or Redis cannot be reached.
pub async fn cache(config: &Config) -> anyhow::Result<AnyCache> {
    let cache = AnyCache::from_url(&config.cache.url, &config.cache.prefix)
        .await
        .with_context(|| format!("cannot open the cache at {}", redact(&config.cache.url)))?;
    tracing::info!(backend = cache.backend(), "cache ready");
    Ok(cache)
}

/// Connects the bus named by `bus.url`.
///
/// # Errors
/// When the URL is not supported or NATS cannot be reached.
pub async fn bus(config: &Config) -> anyhow::Result<AnyBus> {
    let bus = AnyBus::connect(&config.bus.url, &config.bus.namespace)
        .await
        .with_context(|| format!("cannot connect to the bus at {}", redact(&config.bus.url)))?;
    tracing::info!(url = %redact(&config.bus.url), "bus ready");
    Ok(bus)
}

/// Closes the store (on SQLite: checkpoints the WAL into the database file), logging failure.
pub async fn close_store(store: &Store) -> anyhow::Result<()> {
    store.close().await.context("closing the store failed")?;
    tracing::info!("store closed");
    Ok(())
}

async fn close_quietly(store: &Store) {
    if let Err(e) = store.close().await {
        tracing::warn!(error = %e, "closing the store after a failed start-up failed too");
    }
}

/// A URL fit for logs and error messages: the password of `scheme://user:password@host` is
/// replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/shop?x=1"),
            "postgres://app:***@db:5432/shop?x=1"
        );
        assert_eq!(redact("postgres://app@db/shop"), "postgres://app@db/shop");
        assert_eq!(redact("redis://:pw@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact("memory"), "memory");
        assert_eq!(
            redact("sqlite://./strata-data/strata.db"),
            "sqlite://./strata-data/strata.db"
        );
    }
}
