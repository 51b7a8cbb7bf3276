//! Connecting the backends a role needs (store, cache, bus, object store) from the
//! configuration, with the start-up steps every process takes: migrate the store, seed it where
//! asked.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use anyhow::Context;
use strata_api::auth::{PasswordParams, ThrottleSettings};
use strata_api::{AdminBootstrap, AuthSettings};
use strata_bus::{AnyBus, BusOptions};
use strata_cache::{AnyCache, RedisOptions};
use strata_core::auth::{InvalidKey, TokenKey};
use strata_core::config::Secret;
use strata_objects::AnyObjects;
use strata_store::{Store, StoreOptions};

/// The file under `store.data_dir` where `strata up` keeps the JWT secret it generated.
pub const JWT_SECRET_FILE: &str = "jwt.secret";

/// Whether a process fills an empty catalog with the demo products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seed {
    /// Seed when the catalog is empty (`strata up`, `strata serve api`). The store makes this
    /// safe when several processes start at once against one database.
    IfEmpty,
    /// Leave the data alone (chat, worker).
    Never,
}

/// The pool settings of `[store]`, for the primary and the read replica alike.
fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        max_connections: config.store.max_connections,
        statement_timeout: Duration::from_millis(config.store.statement_timeout_ms),
        ..StoreOptions::default()
    }
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
    let options = store_options(config);
    let store = Store::connect(&url, options)
        .await
        .with_context(|| format!("cannot connect to the store at {shown}"))?;
    if let Err(e) = store.migrate().await {
        close_quietly(&store).await;
        return Err(e).with_context(|| format!("cannot migrate the store at {shown}"));
    }
    if seed == Seed::IfEmpty {
        match store.seed_demo_catalog().await {
            Ok(inserted) => tracing::debug!(inserted, store = %shown, "demo catalog checked"),
            Err(e) => {
                close_quietly(&store).await;
                return Err(e).with_context(|| format!("cannot seed the demo catalog at {shown}"));
            }
        }
    }
    tracing::info!(store = %shown, dialect = %store.dialect(), "store ready");
    Ok(store)
}

/// The store of a process that runs the api: [`store`], seeded when empty, and with the read
/// replica of `store.read_url` when one is configured (the api's catalog reads go there; the
/// other roles never read from it).
///
/// # Errors
/// As [`store`]; and when the replica cannot be reached (the primary is closed again).
pub async fn api_store(config: &Config) -> anyhow::Result<Store> {
    let store = store(config, Seed::IfEmpty).await?;
    let read_url = &config.store.read_url;
    if read_url.is_empty() {
        return Ok(store);
    }
    let shown = redact(read_url);
    let options = store_options(config);
    let replica = match Store::connect(read_url, options).await {
        Ok(replica) => replica,
        Err(e) => {
            close_quietly(&store).await;
            return Err(e)
                .with_context(|| format!("cannot connect to the read replica at {shown}"));
        }
    };
    let with_replica = store
        .clone()
        .with_read_replica(replica.clone())
        .with_context(|| format!("cannot read the catalog from {shown}"));
    match with_replica {
        Ok(store) => {
            tracing::info!(replica = %shown, "catalog reads go to the read replica");
            Ok(store)
        }
        Err(e) => {
            close_quietly(&replica).await;
            close_quietly(&store).await;
            Err(e)
        }
    }
}

/// The api's authentication settings from `[auth]` and `[admin]`, around `jwt_secret` (the
/// configured one, or the one `strata up` keeps in its data directory).
pub fn api_auth(config: &Config, jwt_secret: Secret) -> AuthSettings {
    let auth = &config.auth;
    let admin = &config.admin;
    AuthSettings {
        jwt_secret,
        key_id: auth.key_id.clone(),
        token_ttl: Duration::from_secs(auth.token_ttl_secs),
        password: PasswordParams {
            memory_kib: auth.password_memory_kib,
            iterations: auth.password_iterations,
            ..PasswordParams::default()
        },
        throttle: ThrottleSettings::default(),
        admin: (!admin.email.is_empty()).then(|| AdminBootstrap {
            email: admin.email.clone(),
            password: admin.password.clone(),
        }),
    }
}

/// The key that checks session tokens signed with `secret` under `auth.key_id`: what the
/// gateway's rate limits keyed on `jwt_subject` tell users apart with.
///
/// # Errors
/// When the secret is shorter than 32 bytes or the key id empty.
pub fn token_key(config: &Config, secret: &Secret) -> Result<TokenKey, InvalidKey> {
    TokenKey::new(secret.expose().as_bytes(), &config.auth.key_id)
}

/// The JWT secret of `strata up`: `auth.jwt_secret` when configured, otherwise the one kept in
/// `<data_dir>/jwt.secret`, generated there (32 random bytes from the OS, hex-encoded, file
/// mode 0600) on first start. Kept, so tokens stay valid across restarts; per data directory,
/// so two stacks on one machine do not accept each other's tokens.
///
/// # Errors
/// When the file cannot be read or created, or holds fewer than 32 bytes.
pub fn up_jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    if !config.auth.jwt_secret.is_empty() {
        return Ok(config.auth.jwt_secret.clone());
    }
    let path = config.store.data_dir.join(JWT_SECRET_FILE);
    let secret = match read_secret(&path)? {
        Some(secret) => secret,
        None => create_secret(&path)?,
    };
    anyhow::ensure!(
        secret.len() >= strata_api::auth::MIN_SECRET_BYTES,
        "{} holds fewer than {} bytes: delete it to have a new secret generated",
        path.display(),
        strata_api::auth::MIN_SECRET_BYTES
    );
    Ok(Secret::new(secret))
}

fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read the JWT secret {}", path.display())),
    }
}

/// Writes a fresh secret to `path`, which must not exist (another process that raced us to
/// it wins, and its secret is used).
fn create_secret(path: &Path) -> anyhow::Result<String> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the OS random generator failed: {e}"))?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{secret}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot write the JWT secret {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a JWT secret");
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(path)?
            .with_context(|| format!("{} vanished while being created", path.display())),
        Err(e) => {
            Err(e).with_context(|| format!("cannot create the JWT secret {}", path.display()))
        }
    }
}

/// Builds the cache named by `cache.url`.
///
/// # Errors
/// When the URL is not supported or Redis cannot be reached.
pub async fn cache(config: &Config) -> anyhow::Result<AnyCache> {
    let redis = RedisOptions {
        timeout: Duration::from_millis(config.cache.timeout_ms),
        breaker_failures: config.cache.breaker_failures,
        breaker_cooldown: Duration::from_millis(config.cache.breaker_cooldown_ms),
    };
    let cache = AnyCache::from_url_with(&config.cache.url, &config.cache.prefix, redis)
        .await
        .with_context(|| format!("cannot open the cache at {}", redact(&config.cache.url)))?;
    tracing::info!(backend = cache.backend(), "cache ready");
    Ok(cache)
}

/// Opens the object store of product images named by `objects.url` (empty: the directory
/// `<store.data_dir>/objects`) and, on a store that seeds the demo catalog, stores the demo
/// products' generated pictures that are missing there.
///
/// # Errors
/// When the URL is not supported, the directory cannot be created, the S3 bucket does not
/// answer, or the pictures cannot be stored.
pub async fn objects(config: &Config, store: &Store, seed: Seed) -> anyhow::Result<AnyObjects> {
    let shown = if config.objects.url.is_empty() {
        strata_objects::default_dir(&config.store.data_dir)
            .display()
            .to_string()
    } else {
        config.objects.url.clone()
    };
    let objects = AnyObjects::open(&config.objects, &config.store.data_dir)
        .await
        .with_context(|| format!("cannot open the object store at {shown}"))?;
    if seed == Seed::IfEmpty {
        strata_api::seed_demo_images(store, &objects)
            .await
            .with_context(|| format!("cannot store the demo images at {shown}"))?;
    }
    tracing::info!(backend = objects.backend(), at = %shown, "object store ready");
    Ok(objects)
}

/// Connects the bus named by `bus.url`.
///
/// # Errors
/// When the URL is not supported or NATS cannot be reached.
pub async fn bus(config: &Config) -> anyhow::Result<AnyBus> {
    let options = BusOptions {
        replicas: config.bus.replicas,
    };
    let bus = AnyBus::connect_with(&config.bus.url, &config.bus.namespace, &options)
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

/// The settings of a worker from the `[worker]` section. `relay` says whether this worker runs
/// the outbox relay (on top of `worker.relay`).
pub fn worker_settings(
    config: &Config,
    instance: String,
    listen: std::net::SocketAddr,
    relay: bool,
    fulfilment_delay: Duration,
) -> strata_worker::WorkerSettings {
    let w = &config.worker;
    strata_worker::WorkerSettings {
        instance,
        listen,
        admin_token: w.admin_token.clone(),
        request_timeout: Duration::from_millis(w.request_timeout_ms),
        pipeline: strata_worker::PipelineSettings {
            concurrency: w.concurrency,
            max_deliveries: w.max_deliveries,
            retry_base: Duration::from_millis(w.retry_base_ms),
            retry_max: Duration::from_millis(w.retry_max_ms),
            ack_wait: Duration::from_millis(w.ack_wait_ms),
            relay: w.relay && relay,
            relay_batch: w.relay_batch,
            relay_interval: Duration::from_millis(w.relay_interval_ms),
            outbox_retention: Duration::from_secs(w.outbox_retention_secs),
            payments: strata_worker::SimulatedPayments {
                decline_rate: w.payment_decline_rate,
                error_rate: w.payment_error_rate,
                latency: Duration::from_millis(w.payment_latency_ms),
                ..strata_worker::SimulatedPayments::default()
            },
            fulfilment_delay: w
                .fulfilment_delay_ms
                .map_or(fulfilment_delay, Duration::from_millis),
            ..strata_worker::PipelineSettings::default()
        },
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
