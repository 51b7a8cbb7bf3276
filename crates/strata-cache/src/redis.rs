//! [`RedisCache`]: the shared backend of scaled-out mode, one namespace per deployment.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use bytes::Bytes;

use crate::error::redact_url;
use crate::{Cache, Result, checked_ttl};

/// Connection attempts per (re)connection after the first one fails, 100 ms then 200 ms apart
/// (with jitter). Few, because a caller waits on a reconnection in progress, and a cache-aside
/// read should fall back to the store within about a second instead of waiting for Redis; the
/// next call starts a new reconnection anyway. (The redis crate's default, 6, waits ~6 s.)
const CONNECT_RETRIES: usize = 2;

/// Time allowed to open one TCP connection: a healthy Redis in the same network answers in
/// milliseconds, so half a second only cuts off unreachable hosts.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Time allowed for one command's answer: a cache slower than this is no faster than the store
/// it shields (the redis crate's default too; a 1 MiB value takes a few milliseconds).
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

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
/// multiplexed connection, which [`ConnectionManager`] re-establishes after a failure; calls
/// made while Redis is down fail within about a second with
/// [`CacheError::Redis`](crate::CacheError::Redis) (see `CONNECT_RETRIES` and the timeouts in
/// this module).
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
}

impl RedisCache {
    /// Connects to the Redis server at `url` (`redis://[user:password@]host[:port][/db]`) and
    /// namespaces every key with `prefix`.
    ///
    /// `rediss://` (TLS) URLs are recognised, but connecting with TLS needs one of the redis
    /// crate's TLS features, which strata does not enable today.
    ///
    /// # Errors
    /// [`CacheError::Redis`](crate::CacheError::Redis) when the URL is invalid or the server
    /// cannot be reached (after a few retries, within about two seconds).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        let client = ::redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(CONNECT_RETRIES)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let connection = ConnectionManager::new_with_config(client, config).await?;
        tracing::info!(url = %redact_url(url), prefix, "connected to the Redis cache");
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
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
        let value = ::redis::cmd("GET")
            .arg(self.full_key(key))
            .query_async(&mut connection)
            .await?;
        Ok(value)
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let millis = px_millis(ttl)?;
        let mut connection = self.connection.clone();
        ::redis::cmd("SET")
            .arg(self.full_key(key))
            .arg(value.as_ref())
            .arg("PX")
            .arg(millis)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut connection = self.connection.clone();
        let removed: u64 = ::redis::cmd("DEL")
            .arg(self.full_key(key))
            .query_async(&mut connection)
            .await?;
        Ok(removed > 0)
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64> {
        let millis = px_millis(ttl)?;
        let mut connection = self.connection.clone();
        // One script, so the counter never exists without its TTL (an INCR followed by a
        // separate PEXPIRE could be cut in between and leave a counter that never expires). A
        // value that is not an integer makes INCR fail; the script then restarts the count.
        let count: u64 = ::redis::cmd("EVAL")
            .arg(INCR_SCRIPT)
            .arg(1)
            .arg(self.full_key(key))
            .arg(millis)
            .query_async(&mut connection)
            .await?;
        Ok(count)
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
        let values: Vec<Option<Bytes>> = command.query_async(&mut connection).await?;
        Ok(values)
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
        pipeline.query_async::<()>(&mut connection).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        ::redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }
}

/// A TTL as Redis' `PX` argument: validated, capped, and in whole milliseconds, a
/// sub-millisecond TTL rounded up rather than to zero (which Redis would reject).
fn px_millis(ttl: Duration) -> Result<u64> {
    let ttl = checked_ttl(ttl)?;
    Ok(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
}
