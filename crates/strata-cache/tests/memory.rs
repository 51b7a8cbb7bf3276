//! The cache contract, run against the in-memory backend directly and through `AnyCache`.

use strata_cache::{AnyCache, MemoryCache, contract};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_cache_meets_the_contract() {
    contract::run_all(&MemoryCache::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_cache_from_memory_url_meets_the_contract() {
    let cache = AnyCache::from_url("memory://", "unused").await.unwrap();
    contract::run_all(&cache).await;
}
