//! strata-cache: the [`Cache`] that api and chat instances share, in memory (moka) or in Redis.
//!
//! A cache here is a hint, never the source of truth: an entry may vanish before its TTL
//! (eviction, restart, another instance's invalidation), so callers read through it
//! (cache-aside) and treat any [`CacheError`] as a miss. Roles hold an [`AnyCache`], chosen at
//! start-up from a URL by [`AnyCache::from_url`], so handlers never branch on the backend.
//!
//! Since callers read around a failing cache, a failing cache must fail fast: the Redis
//! backend bounds every call by a short timeout and stops calling a Redis that keeps failing
//! (a circuit breaker, [`RedisOptions`]), so an outage costs a miss, not a wait.
//!
//! Every backend runs the same contract test suite (`contract`, built with the `testing`
//! feature).

#![forbid(unsafe_code)]

mod any;
mod breaker;
#[cfg(any(test, feature = "testing"))]
pub mod contract;
mod error;
mod memory;
#[cfg(any(test, feature = "testing"))]
pub mod private_redis;
mod redis;

use std::future::Future;
use std::time::Duration;

pub use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::any::AnyCache;
pub use crate::breaker::BreakerState;
pub use crate::error::{CacheError, Result};
pub use crate::memory::{DEFAULT_CAPACITY_BYTES, MemoryCache};
pub use crate::redis::{RedisCache, RedisOptions};

/// The longest TTL a backend honours; longer TTLs are shortened to it.
///
/// A cache may drop an entry at any time, so capping is allowed by the contract; the cap keeps
/// deadline arithmetic (`now + ttl`) and Redis' `PX` argument far from overflow.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A key-value cache of byte values with a TTL on every entry.
///
/// Methods return `impl Future + Send` (rather than using `async_trait`) so that callers can
/// hold a cache in a spawned task without boxing every call. Implementations are cheap to share
/// (`Send + Sync`); keys are arbitrary strings, values arbitrary bytes (including empty).
pub trait Cache: Send + Sync {
    /// Returns the value stored under `key`, or `None` when it is absent or expired.
    ///
    /// # Errors
    /// [`CacheError::Redis`] when the backend cannot be reached or answers with an error.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Stores `value` under `key` for `ttl`, replacing any previous value and its TTL.
    ///
    /// The TTL is required so that nothing lives in the cache forever by accident; it is capped
    /// at [`MAX_TTL`].
    ///
    /// # Errors
    /// [`CacheError::InvalidTtl`] when `ttl` is zero; [`CacheError::Redis`] when the backend
    /// fails.
    fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes `key`; returns `true` when a live (unexpired) entry was removed.
    ///
    /// # Errors
    /// [`CacheError::Redis`] when the backend fails.
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Adds one to the counter under `key` and returns the new count. An absent (or expired)
    /// counter starts at 1 and lives for `ttl` from then on; later increments do not extend it,
    /// so a counter counts the events of one fixed window (login failures, for instance).
    ///
    /// Atomic: concurrent increments of one key are never lost, whichever instance makes
    /// them (a Redis `INCR`, a per-key lock in memory). The counter is stored as decimal text,
    /// so [`Cache::get`] reads it as such; incrementing a value that is not a number restarts
    /// the count at 1.
    ///
    /// # Errors
    /// [`CacheError::InvalidTtl`] when `ttl` is zero; [`CacheError::Redis`] when the backend
    /// fails.
    fn incr(&self, key: &str, ttl: Duration) -> impl Future<Output = Result<u64>> + Send;

    /// Reads several keys at once: one answer per key, in order, `None` for an absent or
    /// expired one. Redis answers with one `MGET` round trip instead of one per key; callers
    /// bound the number of keys per call (a few thousand at most), since the whole answer is
    /// held in memory.
    ///
    /// # Errors
    /// As [`Cache::get`]; then no answer is returned for any key.
    fn get_many(&self, keys: &[&str]) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send {
        async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(key).await?);
            }
            Ok(values)
        }
    }

    /// Stores several entries, all with the same `ttl`, as [`Cache::set`] would one by one
    /// (a later entry under the same key wins). Redis receives them as one pipeline, one round
    /// trip; the writes are not atomic together: on an error, some may have been stored.
    ///
    /// # Errors
    /// [`CacheError::InvalidTtl`] when `ttl` is zero (nothing is stored); otherwise as
    /// [`Cache::set`].
    fn set_many(
        &self,
        entries: &[(&str, Bytes)],
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            checked_ttl(ttl)?;
            for (key, value) in entries {
                self.set(key, value.clone(), ttl).await?;
            }
            Ok(())
        }
    }

    /// Checks that the backend answers, for readiness probes (`/readyz`).
    ///
    /// # Errors
    /// [`CacheError::Redis`] when the backend cannot be reached.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// Reads `key` and decodes it from JSON.
    ///
    /// # Errors
    /// As [`Cache::get`], and [`CacheError::Json`] when the stored bytes do not decode as `T`
    /// (for example after a schema change): callers should treat that as a miss.
    fn get_json<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<T>>> + Send {
        async move {
            match self.get(key).await? {
                Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
                None => Ok(None),
            }
        }
    }

    /// Encodes `value` as JSON and stores it under `key` for `ttl`.
    ///
    /// # Errors
    /// [`CacheError::Json`] when `value` cannot be encoded, otherwise as [`Cache::set`].
    fn set_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> impl Future<Output = Result<()>> + Send {
        // Encoded before the future is built, so the future does not borrow `value` and stays
        // `Send` even when `T` is not `Sync`.
        let encoded = serde_json::to_vec(value).map(Bytes::from);
        async move { self.set(key, encoded?, ttl).await }
    }
}

/// Validates a TTL given to [`Cache::set`] and caps it at [`MAX_TTL`].
fn checked_ttl(ttl: Duration) -> Result<Duration> {
    if ttl.is_zero() {
        return Err(CacheError::InvalidTtl(ttl));
    }
    Ok(ttl.min(MAX_TTL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ttl_is_rejected_and_long_ttl_capped() {
        assert!(matches!(
            checked_ttl(Duration::ZERO),
            Err(CacheError::InvalidTtl(_))
        ));
        assert_eq!(
            checked_ttl(Duration::from_millis(1)).unwrap(),
            Duration::from_millis(1)
        );
        assert_eq!(checked_ttl(Duration::MAX).unwrap(), MAX_TTL);
    }
}
