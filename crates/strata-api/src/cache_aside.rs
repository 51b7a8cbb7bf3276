//! Cache-aside reads: look in the cache, fall back to the loader (the store) on a miss, then
//! fill the cache for the next request; and the catalog version that invalidates them.
//!
//! The cache is a hint, never the truth: any cache error is logged, counted and treated as a
//! miss, so a cache outage slows reads down but never fails them. Values are stored as the
//! encoded JSON body, so a hit is served without decoding or re-encoding anything.
//!
//! # Invalidation: the catalog version
//!
//! Every catalog key embeds the current *catalog version* (`catalog:version`, a random token):
//! `catalog:<version>:product:<id>`, `catalog:<version>:products:<query>`. A catalog write
//! commits to the store first, then sets a fresh version, so every product and list key
//! written before is unreachable at once (they expire by their TTL). This covers what a write
//! can change — the product itself and every page or search it appears in, or now should —
//! without tracking which pages held which product.
//!
//! It also closes the race of plain delete-on-write: a reader that missed, loaded the *old*
//! row, and fills the cache just after the writer's delete would leave a stale entry behind.
//! Here a reader takes the version *before* loading; if a write commits after that, the
//! reader's fill goes under a version that is already dead. And when the version key is
//! missing (first use, eviction), a reader sets a new one before loading, so the same holds.
//! Hence a client never reads a price older than its own write, through any instance that
//! shares the cache: all instances of `strata up` share one memory cache, and scaled-out
//! processes share Redis. (`strata serve api` with `cache.url = "memory"` keeps one cache
//! per process, which another process's write cannot reach: run Redis when serving more than
//! one api process.) When the cache cannot be written at the moment of a write, the stale
//! entries live until their TTL (`cache.ttl_secs`). With a read replica (`store.read_url`)
//! the loaders read the replica, which may not have replayed the write yet: a load within the
//! replication delay fills the new version with the older row, until its TTL.
//!
//! # Carts: one generation per owner
//!
//! The priced cart (`GET /api/v1/cart`) is cached per owner (`user:<id>` or `anon:<token>`)
//! the same way, with a per-owner *cart generation* in place of the catalog version:
//! `cart:<owner>:<generation>:<catalog version>:<pricing>`. Every cart write, merge and
//! checkout deletes the owner's generation key (`cart:<owner>:gen`) after its commit, so the
//! next read sets a fresh generation and reads the store; a reader that loaded before the
//! commit fills under the dead generation. The catalog version in the key makes a price
//! change reach cached carts too. Stock shown on cart lines is, as on product pages, as of
//! the fill (checkout reads the store, so this never oversells).

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use strata_cache::{AnyCache, Cache};

use crate::ApiError;

/// What one cache lookup found: `hit`, `miss` or `error` (the `result` label).
type Outcome = &'static str;
const HIT: Outcome = "hit";
const MISS: Outcome = "miss";
const ERROR: Outcome = "error";

/// Where the catalog version lives.
pub(crate) const CATALOG_VERSION_KEY: &str = "catalog:version";

/// How long the catalog version lives without a write: far longer than any entry keyed by it
/// (`cache.ttl_secs`, a minute by default), so it does not expire under them; when it does
/// expire (or is evicted), the next reader sets a new one and the catalog is read afresh.
const CATALOG_VERSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a cart generation lives without a write (a new one is set when it is gone).
const CART_GENERATION_TTL: Duration = Duration::from_secs(60 * 60);

/// Where the generation of an owner's cached cart lives.
fn cart_generation_key(owner: &str) -> String {
    format!("cart:{owner}:gen")
}

/// A new catalog version: random, so a version is never reused, even after the key expired.
fn new_version() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: Outcome,
}

/// Reads through the cache with one TTL, counting hits, misses and errors.
#[derive(Clone)]
pub(crate) struct CacheAside {
    cache: AnyCache,
    ttl: Duration,
    lookups: Family<OutcomeLabels, Counter>,
}

impl CacheAside {
    /// Registers `strata_<role>_cache_lookups_total{result="hit|miss|error"}` in `registry`.
    pub fn new(cache: AnyCache, ttl: Duration, role: &str, registry: &mut Registry) -> Self {
        let lookups = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            format!("strata_{role}_cache_lookups"),
            "Cache-aside lookups by result",
            lookups.clone(),
        );
        Self {
            cache,
            ttl,
            lookups,
        }
    }

    /// The JSON body stored under `key`, or else the one `load` produces (`None`: nothing to
    /// serve, and nothing is cached, so a later insert is seen at once).
    ///
    /// # Errors
    /// Only the loader's errors, and JSON encoding errors; cache failures are never returned.
    pub async fn read_json<T, F>(&self, key: &str, load: F) -> Result<Option<Bytes>, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<Option<T>, ApiError>>,
    {
        match self.cache.get(key).await {
            Ok(Some(body)) => {
                self.count(HIT);
                return Ok(Some(body));
            }
            Ok(None) => self.count(MISS),
            Err(e) => {
                self.count(ERROR);
                cache_failed(&e, Some(key), "cache read failed, reading the store");
            }
        }
        let Some(value) = load.await? else {
            return Ok(None);
        };
        let body = Bytes::from(serde_json::to_vec(&value)?);
        if let Err(e) = self.cache.set(key, body.clone(), self.ttl).await {
            cache_failed(&e, Some(key), "cache write failed");
        }
        Ok(Some(body))
    }

    /// The current catalog version, to embed in catalog keys; a fresh one is set when there
    /// is none. `None` when the cache fails: the caller should then read the store and not
    /// cache (with no version it cannot know whether its fill would be current).
    pub async fn catalog_version(&self) -> Option<String> {
        match self.cache.get(CATALOG_VERSION_KEY).await {
            Ok(Some(version)) => String::from_utf8(version.to_vec()).ok(),
            Ok(None) => {
                let version = new_version();
                match self.set_version(&version).await {
                    Ok(()) => Some(version),
                    Err(()) => None,
                }
            }
            Err(e) => {
                cache_failed(
                    &e,
                    None,
                    "cannot read the catalog version, reading the store",
                );
                None
            }
        }
    }

    /// The current generation of `owner`'s cart (`user:<id>` or `anon:<token>`), set afresh
    /// when there is none; `None` when the cache fails (then read the store, do not cache).
    pub async fn cart_generation(&self, owner: &str) -> Option<String> {
        let key = cart_generation_key(owner);
        match self.cache.get(&key).await {
            Ok(Some(generation)) => String::from_utf8(generation.to_vec()).ok(),
            Ok(None) => {
                let generation = new_version();
                match self
                    .cache
                    .set(&key, Bytes::from(generation.clone()), CART_GENERATION_TTL)
                    .await
                {
                    Ok(()) => Some(generation),
                    Err(e) => {
                        cache_failed(&e, None, "cannot set a cart generation");
                        None
                    }
                }
            }
            Err(e) => {
                cache_failed(&e, None, "cannot read a cart generation, reading the store");
                None
            }
        }
    }

    /// Makes every cached read of `owner`'s cart unreachable. Call after the write committed.
    pub async fn invalidate_cart(&self, owner: &str) {
        if let Err(e) = self.cache.delete(&cart_generation_key(owner)).await {
            // The stale cart then lives until its TTL.
            cache_failed(&e, None, "cannot invalidate a cached cart");
        }
    }

    /// Reads `owner`'s priced cart through the cache under its generation and the catalog
    /// version (`pricing` names how it is priced), or straight from the store when either is
    /// unknown.
    ///
    /// # Errors
    /// As [`CacheAside::read_json`].
    pub async fn read_cart_json<T, F>(
        &self,
        owner: &str,
        pricing: &str,
        load: F,
    ) -> Result<Option<Bytes>, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<Option<T>, ApiError>>,
    {
        // The generation first: a write committing after this read makes the fill dead.
        let generation = self.cart_generation(owner).await;
        let version = match generation {
            Some(_) => self.catalog_version().await,
            None => None,
        };
        match (generation, version) {
            (Some(generation), Some(version)) => {
                self.read_json(
                    &format!("cart:{owner}:{generation}:{version}:{pricing}"),
                    load,
                )
                .await
            }
            _ => {
                self.count(ERROR);
                match load.await? {
                    Some(value) => Ok(Some(Bytes::from(serde_json::to_vec(&value)?))),
                    None => Ok(None),
                }
            }
        }
    }

    /// Makes every catalog entry cached so far unreachable (see the module docs). Call after
    /// the write has committed.
    pub async fn bump_catalog_version(&self) {
        // Failing here is logged inside; stale entries then live until their TTL.
        let _ = self.set_version(&new_version()).await;
    }

    async fn set_version(&self, version: &str) -> Result<(), ()> {
        self.cache
            .set(
                CATALOG_VERSION_KEY,
                Bytes::from(version.to_owned()),
                CATALOG_VERSION_TTL,
            )
            .await
            .map_err(|e| {
                cache_failed(&e, None, "cannot set the catalog version");
            })
    }

    /// Reads through the cache under `catalog:<version>:<key>`, or straight from the store when
    /// the version is unknown (see [`CacheAside::catalog_version`]).
    ///
    /// # Errors
    /// As [`CacheAside::read_json`].
    pub async fn read_catalog_json<T, F>(
        &self,
        key: &str,
        load: F,
    ) -> Result<Option<Bytes>, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<Option<T>, ApiError>>,
    {
        match self.catalog_version().await {
            Some(version) => {
                self.read_json(&format!("catalog:{version}:{key}"), load)
                    .await
            }
            None => {
                self.count(ERROR);
                match load.await? {
                    Some(value) => Ok(Some(Bytes::from(serde_json::to_vec(&value)?))),
                    None => Ok(None),
                }
            }
        }
    }

    fn count(&self, result: Outcome) {
        self.lookups.get_or_create(&OutcomeLabels { result }).inc();
    }
}

/// Logs a failed cache call as a warning, but only at debug level while the Redis circuit
/// breaker is open: the breaker logged its opening once, and a line per request would flood
/// the log for as long as the outage lasts.
pub(crate) fn cache_failed(error: &strata_cache::CacheError, key: Option<&str>, what: &str) {
    if matches!(error, strata_cache::CacheError::CircuitOpen) {
        tracing::debug!(key, %error, "{what}");
    } else {
        tracing::warn!(key, %error, "{what}");
    }
}
