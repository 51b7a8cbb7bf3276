//! [`AnyCache`]: the backend a role holds, chosen once at start-up from a URL.

use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;

use crate::error::redact_url;
use crate::{Cache, CacheError, MemoryCache, RedisCache, RedisOptions, Result};

/// One of the cache backends, chosen by configuration ([`AnyCache::from_url`]).
///
/// An enum rather than a trait object, so calls are static and the async methods need no boxing.
#[derive(Clone, Debug)]
pub enum AnyCache {
    /// In-process, per instance (embedded mode and tests).
    Memory(MemoryCache),
    /// Shared by every instance through a Redis server (scaled-out mode).
    Redis(RedisCache),
}

impl AnyCache {
    /// Builds the backend named by `url`:
    /// - `memory` or `memory://`: a [`MemoryCache`] of [`DEFAULT_CAPACITY_BYTES`](crate::DEFAULT_CAPACITY_BYTES);
    ///   `prefix` is not needed and ignored, since the store belongs to this process alone;
    /// - `redis://…` or `rediss://…`: a [`RedisCache`] namespaced by `prefix`.
    ///
    /// # Errors
    /// [`CacheError::UnsupportedUrl`] naming the value for any other URL;
    /// [`CacheError::Redis`] when Redis cannot be reached (see [`RedisCache::connect`]).
    pub async fn from_url(url: &str, prefix: &str) -> Result<Self> {
        Self::from_url_with(url, prefix, RedisOptions::default()).await
    }

    /// As [`AnyCache::from_url`], a Redis backend with the given time limit and breaker
    /// (ignored for memory).
    ///
    /// # Errors
    /// As [`AnyCache::from_url`].
    pub async fn from_url_with(url: &str, prefix: &str, redis: RedisOptions) -> Result<Self> {
        let scheme = match url.split_once("://") {
            Some((scheme, rest)) => {
                let scheme = scheme.to_ascii_lowercase();
                if scheme == "memory" && !rest.is_empty() {
                    return Err(unsupported(url));
                }
                scheme
            }
            None if url.eq_ignore_ascii_case("memory") => "memory".to_owned(),
            None => return Err(unsupported(url)),
        };
        match scheme.as_str() {
            "memory" => Ok(Self::Memory(MemoryCache::new())),
            "redis" | "rediss" => Ok(Self::Redis(
                RedisCache::connect_with(url, prefix, redis).await?,
            )),
            _ => Err(unsupported(url)),
        }
    }

    /// The backend's name (`"memory"` or `"redis"`), for logs and the status page.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Registers the backend's own metrics in a role's `registry` (see
    /// [`RedisCache::register_metrics`]; memory has none).
    pub fn register_metrics(&self, role: &str, registry: &mut Registry) {
        if let Self::Redis(cache) = self {
            cache.register_metrics(role, registry);
        }
    }
}

fn unsupported(url: &str) -> CacheError {
    CacheError::UnsupportedUrl {
        url: redact_url(url),
    }
}

impl From<MemoryCache> for AnyCache {
    fn from(cache: MemoryCache) -> Self {
        Self::Memory(cache)
    }
}

impl From<RedisCache> for AnyCache {
    fn from(cache: RedisCache) -> Self {
        Self::Redis(cache)
    }
}

impl Cache for AnyCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self {
            Self::Memory(cache) => cache.get(key).await,
            Self::Redis(cache) => cache.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        match self {
            Self::Memory(cache) => cache.set(key, value, ttl).await,
            Self::Redis(cache) => cache.set(key, value, ttl).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        match self {
            Self::Memory(cache) => cache.delete(key).await,
            Self::Redis(cache) => cache.delete(key).await,
        }
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64> {
        match self {
            Self::Memory(cache) => cache.incr(key, ttl).await,
            Self::Redis(cache) => cache.incr(key, ttl).await,
        }
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        match self {
            Self::Memory(cache) => cache.get_many(keys).await,
            Self::Redis(cache) => cache.get_many(keys).await,
        }
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Duration) -> Result<()> {
        match self {
            Self::Memory(cache) => cache.set_many(entries, ttl).await,
            Self::Redis(cache) => cache.set_many(entries, ttl).await,
        }
    }

    async fn ping(&self) -> Result<()> {
        match self {
            Self::Memory(cache) => cache.ping().await,
            Self::Redis(cache) => cache.ping().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_build_a_memory_cache() {
        for url in ["memory", "memory://", "MEMORY"] {
            let cache = AnyCache::from_url(url, "ignored").await.unwrap();
            assert_eq!(cache.backend(), "memory", "{url}");
        }
    }

    #[tokio::test]
    async fn unknown_urls_are_named_in_the_error() {
        for url in [
            "memcached://h:11211",
            "",
            "redis",
            "memory://x",
            "http://u:pw@h",
        ] {
            let err = AnyCache::from_url(url, "p").await.unwrap_err();
            assert!(
                matches!(err, CacheError::UnsupportedUrl { .. }),
                "{url}: {err}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("{:?}", redact_url(url))),
                "{message}"
            );
            assert!(!message.contains("pw"), "{message}");
        }
    }

    #[tokio::test]
    async fn bad_redis_url_is_a_redis_error() {
        let err = AnyCache::from_url("redis://[::1", "p").await.unwrap_err();
        assert!(matches!(err, CacheError::Redis(_)), "{err}");
    }
}
