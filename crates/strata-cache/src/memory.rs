//! [`MemoryCache`]: the in-process backend of embedded mode (`strata up`) and of tests.

use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;

use crate::{Cache, Result, checked_ttl};

/// Default capacity of a [`MemoryCache`]: 64 MiB of keys and values.
///
/// Enough for the demo catalog many times over, small next to the memory of one process.
pub const DEFAULT_CAPACITY_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes charged per entry on top of its key and value, for moka's own bookkeeping, so that
/// millions of empty values cannot grow the cache without bound.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// A value and the instant it stops being valid.
///
/// The deadline is kept with the value (rather than only inside moka) so that `delete` can tell
/// a live entry from one that expired but was not yet evicted.
#[derive(Clone)]
struct Entry {
    value: Bytes,
    expires_at: Instant,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

/// Tells moka when each entry expires: at its own deadline, set on every insert or overwrite.
struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }
}

/// An in-process cache bounded by bytes, with a TTL per entry (moka, TinyLFU eviction).
///
/// Clones share one store, so one `MemoryCache` can be handed to every task of an instance.
/// Each instance of `strata up` has its own store: invalidations do not cross instances, which
/// is why the TTLs the api chooses are short.
///
/// When the store is over capacity, moka evicts entries shortly after the insert (in its
/// housekeeping); an entry heavier than the whole capacity is never kept.
#[derive(Clone)]
pub struct MemoryCache {
    store: moka::future::Cache<String, Entry>,
}

impl MemoryCache {
    /// A cache holding at most [`DEFAULT_CAPACITY_BYTES`].
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY_BYTES)
    }

    /// A cache holding at most `capacity_bytes` of keys and values (plus a small per-entry
    /// overhead).
    pub fn with_capacity(capacity_bytes: u64) -> Self {
        let store = moka::future::Cache::builder()
            .max_capacity(capacity_bytes)
            .weigher(|key: &String, entry: &Entry| {
                let bytes = key.len() + entry.value.len() + ENTRY_OVERHEAD_BYTES;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self { store }
    }

    /// Approximate bytes held (keys, values and per-entry overhead), for metrics.
    ///
    /// Lags behind recent writes until moka's housekeeping has run.
    pub fn weighted_size(&self) -> u64 {
        self.store.weighted_size()
    }

    /// Approximate number of entries held, for metrics; lags like [`Self::weighted_size`].
    pub fn entry_count(&self) -> u64 {
        self.store.entry_count()
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.entry_count())
            .field("weighted_size", &self.weighted_size())
            .finish()
    }
}

impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        // moka hides expired entries too, but checking our own deadline keeps the TTL exact
        // whatever the granularity of moka's clock.
        let now = Instant::now();
        Ok(self
            .store
            .get(key)
            .await
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.value))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let ttl = checked_ttl(ttl)?;
        let expires_at = Instant::now() + ttl;
        self.store
            .insert(key.to_owned(), Entry { value, expires_at })
            .await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        // moka returns an expired-but-not-yet-evicted entry too; that one was already gone.
        let removed = self.store.remove(key).await;
        Ok(removed.is_some_and(|entry| entry.is_live(Instant::now())))
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<u64> {
        let ttl = checked_ttl(ttl)?;
        // moka runs computations on one key one at a time, so no increment is lost.
        let entry = self
            .store
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let now = Instant::now();
                let next = match current.map(moka::Entry::into_value) {
                    Some(entry) if entry.is_live(now) => Entry {
                        value: Bytes::from((counter_value(&entry.value) + 1).to_string()),
                        expires_at: entry.expires_at,
                    },
                    _ => Entry {
                        value: Bytes::from_static(b"1"),
                        expires_at: now + ttl,
                    },
                };
                std::future::ready(moka::ops::compute::Op::Put(next))
            })
            .await;
        let count = match entry {
            moka::ops::compute::CompResult::Inserted(entry)
            | moka::ops::compute::CompResult::ReplacedWith(entry)
            | moka::ops::compute::CompResult::Unchanged(entry) => {
                counter_value(entry.value().value.as_ref())
            }
            moka::ops::compute::CompResult::StillNone(_)
            | moka::ops::compute::CompResult::Removed(_) => 1,
        };
        Ok(count)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// The count stored under a counter key; 0 for anything that is not a decimal number.
fn counter_value(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn capacity_bound_evicts_by_bytes() {
        let capacity = 64 * 1024;
        let cache = MemoryCache::with_capacity(capacity);
        let value = Bytes::from(vec![7u8; 1024]);
        for i in 0..200 {
            cache
                .set(&format!("k{i}"), value.clone(), MINUTE)
                .await
                .unwrap();
        }
        cache.store.run_pending_tasks().await;

        assert!(
            cache.weighted_size() <= capacity,
            "{}",
            cache.weighted_size()
        );
        let mut present = 0;
        for i in 0..200 {
            if cache.get(&format!("k{i}")).await.unwrap().is_some() {
                present += 1;
            }
        }
        assert!(present > 0, "the cache kept nothing");
        assert!(present < 200, "nothing was evicted");
        // Each entry weighs 1024 + key + overhead bytes, so at most 64 fit.
        assert!(present <= 64, "{present} entries of ~1 KiB in 64 KiB");
    }

    #[tokio::test]
    async fn entry_heavier_than_capacity_is_not_kept() {
        let cache = MemoryCache::with_capacity(1024);
        cache
            .set("big", Bytes::from(vec![0u8; 4096]), MINUTE)
            .await
            .unwrap();
        cache.store.run_pending_tasks().await;
        assert_eq!(cache.get("big").await.unwrap(), None);
        assert!(cache.weighted_size() <= 1024);
    }

    #[tokio::test]
    async fn each_entry_has_its_own_ttl() {
        let cache = MemoryCache::new();
        cache
            .set(
                "short",
                Bytes::from_static(b"s"),
                Duration::from_millis(100),
            )
            .await
            .unwrap();
        cache
            .set("long", Bytes::from_static(b"l"), MINUTE)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;

        assert_eq!(cache.get("short").await.unwrap(), None);
        assert_eq!(
            cache.get("long").await.unwrap(),
            Some(Bytes::from_static(b"l"))
        );
        // An expired entry that moka still holds does not count as deleted.
        assert!(!cache.delete("short").await.unwrap());
        assert!(cache.delete("long").await.unwrap());
    }

    #[tokio::test]
    async fn overwrite_replaces_the_ttl() {
        let cache = MemoryCache::new();
        cache
            .set("k", Bytes::from_static(b"1"), MINUTE)
            .await
            .unwrap();
        cache
            .set("k", Bytes::from_static(b"2"), Duration::from_millis(100))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(cache.get("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn clones_share_one_store() {
        let a = MemoryCache::new();
        let b = a.clone();
        a.set("k", Bytes::from_static(b"v"), MINUTE).await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), Some(Bytes::from_static(b"v")));
        assert!(b.delete("k").await.unwrap());
        assert_eq!(a.get("k").await.unwrap(), None);
    }
}
