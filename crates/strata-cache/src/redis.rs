//! [`RedisCache`]: the shared backend of scaled-out mode, one namespace per deployment, with
//! a time limit on every call and a circuit breaker ([`RedisOptions`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::RedisResult;
use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use bytes::Bytes;
use prometheus_client::registry::Registry;

use crate::breaker::{Admission, Breaker};
use crate::error::redact_url;
use crate::{BreakerState, Cache, CacheError, Result, checked_ttl};

/// Connection attempts per (re)connection after the first one fails, 100 ms then 200 ms apart
/// (with jitter). Few, because a caller waits on a reconnection in progress, and a cache-aside
/// read should fall back to the store within about a second instead of waiting for Redis; the
/// next call starts a new reconnection anyway. (The redis crate's default, 6, waits ~6 s.)
const CONNECT_RETRIES: usize = 2;

/// Time allowed to open one TCP connection: a healthy Redis in the same network answers in
/// milliseconds, so half a second only cuts off unreachable hosts.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How a [`RedisCache`] bounds its calls, and when it stops making them.
///
/// Why: the cache is not the source of truth, and every caller falls back to the store on a
/// cache error. A Redis that is down or frozen must therefore cost a caller a miss, not a wait:
/// each call is cut off after `timeout`, and after `breaker_failures` consecutive failures the
/// circuit breaker opens and calls fail at once, without a network round trip, until a probe
/// (one call, after `breaker_cooldown`) finds Redis answering again. While it is open, writes'
/// invalidations are not made either: an entry they should have removed is served until its
/// TTL ends (`cache.ttl_secs`), which bounds how stale a read can be after an outage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedisOptions {
    /// Longest wait for one call's answer, reconnection included. Default 200 ms: Redis on
    /// the same network answers in well under a millisecond (a 1 MiB value in a few), so a
    /// slower answer means trouble, and the store answers a read in about as long.
    pub timeout: Duration,
    /// Consecutive failed calls (timeouts, refused or dropped connections) that open the
    /// breaker; 0 never opens it. Default 5: one slow answer is not an outage.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls before it lets one probe through. Default 1 s:
    /// one call a second finds out that Redis is back.
    pub breaker_cooldown: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(200),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(1),
        }
    }
}

/// `incr` as one atomic step: increment, and give a new counter its TTL.
const INCR_SCRIPT: &str = r"
local ok, n = pcall(redis.call, 'INCR', KEYS[1])
if not ok then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
  return 1
end
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
";

/// A cache in Redis, shared by every instance that uses the same server and prefix.
///
/// Every key is stored as `{prefix}:{key}` (or `key` alone when the prefix is empty), so that
/// deployments and test runs sharing a server never see each other's keys. Clones share one
/// multiplexed connection, which [`ConnectionManager`] re-establishes after a failure, and
/// one circuit breaker: calls made while Redis is down fail within [`RedisOptions::timeout`]
/// ([`CacheError::Timeout`] or [`CacheError::Redis`]), and at once
/// ([`CacheError::CircuitOpen`]) once the breaker has opened.
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

impl RedisCache {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`) and
    /// namespaces every key with `prefix`.
    ///
    /// `rediss://` (TLS) URLs are recognised, but connecting with TLS needs one of the redis
    /// crate's TLS features, which strata does not enable today.
    ///
    /// # Errors
    /// [`CacheError::Redis`] when the URL is invalid or the server cannot be reached (after a
    /// few retries, within about two seconds).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::connect_with(url, prefix, RedisOptions::default()).await
    }

    /// As [`RedisCache::connect`], with the given time limit and breaker.
    ///
    /// # Errors
    /// As [`RedisCache::connect`].
    pub async fn connect_with(url: &str, prefix: &str, options: RedisOptions) -> Result<Self> {
        let client = ::redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(CONNECT_RETRIES)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(options.timeout));
        let connection = ConnectionManager::new_with_config(client, config).await?;
        tracing::info!(url = %redact_url(url), prefix, "connected to the Redis cache");
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
            timeout: options.timeout,
            breaker: Arc::new(Breaker::new(
                options.breaker_failures,
                options.breaker_cooldown,
            )),
        })
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Registers the breaker's metrics in a role's `registry`:
    /// `strata_<role>_cache_breaker_state` (0 closed, 1 open, 2 half-open) and
    /// `strata_<role>_cache_breaker_transitions_total{to}`.
    pub fn register_metrics(&self, role: &str, registry: &mut Registry) {
        self.breaker.register(role, registry);
    }

    /// Runs one call to Redis through the breaker and the time limit (see [`RedisOptions`]).
    async fn call<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T> {
        let admission = self.breaker.admit();
        if admission == Admission::Reject {
            return Err(CacheError::CircuitOpen);
        }
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(CacheError::from),
            Err(_elapsed) => Err(CacheError::Timeout(self.timeout)),
        };
        let failed = result.as_ref().is_err_and(CacheError::is_transient);
        self.breaker.record(admission, failed);
        result
    }

    /// The namespace given to [`RedisCache::connect`].
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key as stored in Redis.
    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}:{key}", self.prefix)
        }
    }
}

impl std::fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let mut connection = self.connection.clone();
        let command = ::redis::cmd("GET").arg(self.full_key(key)).clone();
        self.call(command.query_async(&mut connection)).await
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let millis = px_millis(ttl)?;
        let mut connection = self.connection.clone();
        let mut command = ::redis::cmd("SET");
        command
            .arg(self.full_key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(millis);
        self.call(command.query_async::<()>(&mut connection)).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut connection = self.connection.clone();
        let command = ::redis::cmd("DEL").arg(self.full_key(key)).clone();
        let removed: u64 = self.call(command.query_async(&mut connection)).await?;
        Ok(removed > 0)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64> {
        let millis = px_millis(ttl)?;
        let mut connection = self.connection.clone();
        // One script, so the counter never exists without its TTL (an INCR followed by a
        // separate PEXPIRE could be cut in between and leave a counter that never expires). A
        // value that is not an integer makes INCR fail; the script then restarts the count.
        let mut command = ::redis::cmd("EVAL");
        command
            .arg(INCR_SCRIPT)
            .arg(1)
            .arg(self.full_key(key))
            .arg(millis);
        self.call(command.query_async(&mut connection)).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        // MGET needs at least one key.
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut command = ::redis::cmd("MGET");
        for key in keys {
            command.arg(self.full_key(key));
        }
        let mut connection = self.connection.clone();
        self.call(command.query_async(&mut connection)).await
    }

    async fn set_many(&self, entries: &[(&str, Bytes)], ttl: Duration) -> Result<()> {
        let millis = px_millis(ttl)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipeline = ::redis::pipe();
        for (key, value) in entries {
            pipeline
                .cmd("SET")
                .arg(self.full_key(key))
                .arg(value.as_ref())
                .arg("PX")
                .arg(millis)
                .ignore();
        }
        let mut connection = self.connection.clone();
        self.call(pipeline.query_async::<()>(&mut connection)).await
    }

    async fn ping(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        let command = ::redis::cmd("PING");
        self.call(command.query_async::<()>(&mut connection)).await
    }
}

/// A TTL as Redis' `PX` argument: validated, capped, and in whole milliseconds, a
/// sub-millisecond TTL rounded up rather than to zero (which Redis would reject).
fn px_millis(ttl: Duration) -> Result<u64> {
    let ttl = checked_ttl(ttl)?;
    Ok(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
}
