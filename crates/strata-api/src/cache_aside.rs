//! Cache-aside reads: look in the cache, fall back to the loader (the store) on a miss, then
//! fill the cache for the next request.
//!
//! The cache is a hint, never the truth: any cache error is logged, counted and treated as a
//! miss, so a cache outage slows reads down but never fails them. Values are stored as the
//! encoded JSON body, so a hit is served without decoding or re-encoding anything.

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
                tracing::warn!(key, error = %e, "cache read failed, reading the store");
            }
        }
        let Some(value) = load.await? else {
            return Ok(None);
        };
        let body = Bytes::from(serde_json::to_vec(&value)?);
        if let Err(e) = self.cache.set(key, body.clone(), self.ttl).await {
            tracing::warn!(key, error = %e, "cache write failed");
        }
        Ok(Some(body))
    }

    fn count(&self, result: Outcome) {
        self.lookups.get_or_create(&OutcomeLabels { result }).inc();
    }
}
