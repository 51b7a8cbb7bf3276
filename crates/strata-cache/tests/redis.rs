//! The cache contract, run against a real Redis (skipped loudly when none runs, failed under
//! `CI=true`). Each test writes under its own `strata-cache-test:<uuid>` prefix and deletes its
//! keys at the end; if a test dies first, its keys still expire within a minute.

use std::time::Duration;

use strata_cache::{AnyCache, Bytes, Cache, RedisCache, contract};
use strata_core::testkit::{REDIS, require_service};

/// A namespace no other run or test shares.
fn unique_prefix() -> String {
    format!("strata-cache-test:{}", uuid::Uuid::new_v4())
}

/// A plain connection to Redis, beside the cache, to see what the cache really stored.
async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("valid Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// The keys stored in Redis under `prefix`.
async fn raw_keys(url: &str, prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut raw_connection(url).await)
        .await
        .expect("KEYS")
}

/// Deletes every key under `prefix`; returns how many there were.
async fn delete_namespace(url: &str, prefix: &str) -> usize {
    let keys = raw_keys(url, prefix).await;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut raw_connection(url).await)
            .await
            .expect("DEL");
    }
    assert!(raw_keys(url, prefix).await.is_empty());
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cache_meets_the_contract() {
    let Some(url) = require_service(REDIS) else {
        return;
    };
    let prefix = unique_prefix();
    let cache = RedisCache::connect(&url, &prefix).await.unwrap();
    contract::run_all(&cache).await;
    // The contract leaves some keys behind; finding them under the prefix shows it was applied.
    assert!(delete_namespace(&url, &prefix).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_cache_from_redis_url_meets_the_contract() {
    let Some(url) = require_service(REDIS) else {
        return;
    };
    let prefix = unique_prefix();
    let cache = AnyCache::from_url(&url, &prefix).await.unwrap();
    assert_eq!(cache.backend(), "redis");
    contract::run_all(&cache).await;
    assert!(delete_namespace(&url, &prefix).await > 0);
}

#[tokio::test]
async fn prefixes_keep_namespaces_apart() {
    let Some(url) = require_service(REDIS) else {
        return;
    };
    let (prefix_a, prefix_b) = (unique_prefix(), unique_prefix());
    let a = RedisCache::connect(&url, &prefix_a).await.unwrap();
    let b = RedisCache::connect(&url, &prefix_b).await.unwrap();
    let ttl = Duration::from_secs(60);

    a.set("product:1", Bytes::from_static(b"a"), ttl)
        .await
        .unwrap();
    assert_eq!(b.get("product:1").await.unwrap(), None);
    b.set("product:1", Bytes::from_static(b"b"), ttl)
        .await
        .unwrap();
    assert!(b.delete("product:1").await.unwrap());
    assert_eq!(
        a.get("product:1").await.unwrap(),
        Some(Bytes::from_static(b"a"))
    );
    assert_eq!(
        raw_keys(&url, &prefix_a).await,
        vec![format!("{prefix_a}:product:1")]
    );

    assert_eq!(delete_namespace(&url, &prefix_a).await, 1);
    assert_eq!(delete_namespace(&url, &prefix_b).await, 0);
}

#[tokio::test]
async fn unreachable_redis_is_a_transient_error() {
    // Port 1 on localhost: nothing listens there, so the connection is refused at once.
    let err = RedisCache::connect("redis://127.0.0.1:1", "unused")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}
