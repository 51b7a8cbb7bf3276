//! The cache contract, run against a real Redis (skipped loudly when none runs, failed under
//! `CI=true`). Each test writes under its own `strata-cache-test:<uuid>` prefix and deletes its
//! keys at the end; if a test dies first, its keys still expire within a minute.

use std::time::{Duration, Instant};

use strata_cache::private_redis::PrivateRedis;
use strata_cache::{
    AnyCache, BreakerState, Bytes, Cache, CacheError, RedisCache, RedisOptions, contract,
};
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

/// Calls of `cache.get` until one succeeds, for at most `within`.
async fn until_answered(cache: &RedisCache, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cache.get("probe").await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A frozen Redis (`SIGSTOP`: connections open, nothing answered) costs each call at most the
/// operation timeout; after `breaker_failures` of them the breaker opens and calls fail in
/// microseconds without a network call; once Redis answers again, a probe closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_fails_fast_and_the_breaker_closes_when_it_is_back() {
    let Some(redis) = PrivateRedis::start() else {
        return;
    };
    let options = RedisOptions::default();
    let cache = RedisCache::connect(&redis.url(), "frozen").await.unwrap();
    let ttl = Duration::from_secs(60);
    cache
        .set("kept", Bytes::from_static(b"v"), ttl)
        .await
        .unwrap();

    redis.freeze();
    for _ in 0..options.breaker_failures {
        let started = Instant::now();
        let err = cache.get("kept").await.unwrap_err();
        let took = started.elapsed();
        assert!(err.is_transient(), "{err}");
        assert!(
            took < options.timeout + Duration::from_millis(150),
            "a call to a frozen Redis took {took:?}"
        );
    }
    assert_eq!(cache.breaker_state(), BreakerState::Open);

    let started = Instant::now();
    for _ in 0..1000 {
        let err = cache.get("kept").await.unwrap_err();
        assert!(matches!(err, CacheError::CircuitOpen), "{err}");
    }
    let per_call = started.elapsed() / 1000;
    assert!(
        per_call < Duration::from_micros(100),
        "an open breaker took {per_call:?} per call"
    );

    redis.thaw();
    assert!(
        until_answered(&cache, options.breaker_cooldown * 5).await,
        "the breaker did not close after Redis came back"
    );
    assert_eq!(cache.breaker_state(), BreakerState::Closed);
    assert_eq!(
        cache.get("kept").await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
}

/// A killed Redis: calls fail (refused) within the timeout, the breaker opens, and closes
/// once a new server listens on the port; every operation goes through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_opens_the_breaker_until_it_restarts() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let options = RedisOptions {
        timeout: Duration::from_millis(100),
        breaker_failures: 2,
        breaker_cooldown: Duration::from_millis(200),
    };
    let cache = AnyCache::from_url_with(&redis.url(), "killed", options)
        .await
        .unwrap();
    let AnyCache::Redis(redis_cache) = &cache else {
        panic!("expected a Redis cache");
    };
    redis.kill();
    let ttl = Duration::from_secs(60);
    let started = Instant::now();
    assert!(cache.set("a", Bytes::new(), ttl).await.is_err());
    assert!(cache.incr("n", ttl).await.is_err());
    assert!(started.elapsed() < options.timeout * 2 + Duration::from_millis(100));
    assert_eq!(redis_cache.breaker_state(), BreakerState::Open);
    for result in [
        cache.delete("a").await.map(|_| ()),
        cache.get_many(&["a", "b"]).await.map(|_| ()),
        cache.set_many(&[("a", Bytes::new())], ttl).await,
        cache.ping().await,
    ] {
        assert!(matches!(result, Err(CacheError::CircuitOpen)), "{result:?}");
    }

    redis.spawn();
    assert!(
        until_answered(redis_cache, Duration::from_secs(5)).await,
        "the breaker did not close after Redis restarted"
    );
    assert_eq!(redis_cache.breaker_state(), BreakerState::Closed);
    assert_eq!(cache.incr("n", ttl).await.unwrap(), 1);
}
