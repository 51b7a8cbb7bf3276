//! The behaviour every [`Cache`] backend must have, as one test suite that each backend's
//! integration tests run (`tests/memory.rs`, `tests/redis.rs`).
//!
//! Each property uses its own keys (under `contract:`), so the properties can run concurrently
//! on one cache; every key is written with a TTL of at most a minute, so a run that dies
//! half-way leaves nothing behind for long. The functions panic on a violation, like `assert!`.

#![doc(hidden)]
#![allow(clippy::missing_panics_doc)]

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Cache, CacheError};

/// TTL of entries that must outlive the test.
const LONG: Duration = Duration::from_secs(60);
/// How long after its TTL an entry may still be read: the time a read takes on a loaded
/// machine, with room to spare (both backends expire to the millisecond).
const EXPIRY_GRACE: Duration = Duration::from_secs(2);

/// Runs every property, the TTL one (which waits for real time) concurrently with the rest.
pub async fn run_all<C: Cache + Clone + 'static>(cache: &C) {
    tokio::join!(ttl_expires(cache), async {
        ping_succeeds(cache).await;
        miss_on_absent_key(cache).await;
        set_then_get_returns_the_bytes(cache).await;
        overwrite_replaces(cache).await;
        delete_removes_then_reports_absence(cache).await;
        zero_ttl_is_rejected(cache).await;
        keys_are_independent(cache).await;
        large_value_roundtrips(cache).await;
        empty_value_roundtrips(cache).await;
        json_roundtrips(cache).await;
        concurrent_sets_and_gets_are_consistent(cache).await;
        counters_count_every_increment(cache).await;
        many_keys_at_once(cache).await;
    });
}

async fn get<C: Cache>(cache: &C, key: &str) -> Option<Bytes> {
    cache.get(key).await.expect("get failed")
}

async fn set<C: Cache>(cache: &C, key: &str, value: &'static [u8]) {
    cache
        .set(key, Bytes::from_static(value), LONG)
        .await
        .expect("set failed");
}

/// `ping` succeeds on a working backend.
pub async fn ping_succeeds<C: Cache>(cache: &C) {
    cache.ping().await.expect("ping failed");
}

/// A key that was never written reads as `None`, and deleting it reports `false`.
pub async fn miss_on_absent_key<C: Cache>(cache: &C) {
    assert_eq!(get(cache, "contract:never-written").await, None);
    assert!(
        !cache
            .delete("contract:never-written")
            .await
            .expect("delete failed")
    );
}

/// A written value reads back byte for byte.
pub async fn set_then_get_returns_the_bytes<C: Cache>(cache: &C) {
    set(cache, "contract:set-get", b"hello \x00\xff world").await;
    assert_eq!(
        get(cache, "contract:set-get").await.as_deref(),
        Some(&b"hello \x00\xff world"[..])
    );
}

/// A second write replaces the first value.
pub async fn overwrite_replaces<C: Cache>(cache: &C) {
    set(cache, "contract:overwrite", b"first").await;
    set(cache, "contract:overwrite", b"second").await;
    assert_eq!(
        get(cache, "contract:overwrite").await.as_deref(),
        Some(&b"second"[..])
    );
}

/// `delete` removes a present key and says so; a second `delete` finds nothing.
pub async fn delete_removes_then_reports_absence<C: Cache>(cache: &C) {
    set(cache, "contract:delete", b"doomed").await;
    assert!(
        cache
            .delete("contract:delete")
            .await
            .expect("delete failed")
    );
    assert_eq!(get(cache, "contract:delete").await, None);
    assert!(
        !cache
            .delete("contract:delete")
            .await
            .expect("delete failed")
    );
}

/// A zero TTL is refused (every entry must expire) and stores nothing.
pub async fn zero_ttl_is_rejected<C: Cache>(cache: &C) {
    let result = cache
        .set(
            "contract:zero-ttl",
            Bytes::from_static(b"x"),
            Duration::ZERO,
        )
        .await;
    assert!(
        matches!(result, Err(CacheError::InvalidTtl(_))),
        "{result:?}"
    );
    assert_eq!(get(cache, "contract:zero-ttl").await, None);
}

/// An entry is present before its TTL and absent after it, in real time (Redis cannot use
/// tokio's paused clock). The key is read until it is gone: a read that returns before the TTL
/// has passed since the write began must find the entry (it cannot have expired yet, however
/// slow the machine), and the entry must be gone within [`EXPIRY_GRACE`] after its TTL. Takes
/// about the TTL, 300 ms.
pub async fn ttl_expires<C: Cache>(cache: &C) {
    let ttl = Duration::from_millis(300);
    let written = Instant::now();
    cache
        .set("contract:ttl", Bytes::from_static(b"brief"), ttl)
        .await
        .expect("set failed");
    loop {
        let value = get(cache, "contract:ttl").await;
        let age = written.elapsed();
        match value {
            Some(value) => {
                assert_eq!(&value[..], b"brief");
                assert!(
                    age < ttl + EXPIRY_GRACE,
                    "present {age:?} after a write with a TTL of {ttl:?}"
                );
            }
            None => {
                assert!(
                    age >= ttl,
                    "gone {age:?} after a write with a TTL of {ttl:?}"
                );
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !cache.delete("contract:ttl").await.expect("delete failed"),
        "an expired entry was reported deleted"
    );
}

/// Writing or deleting one key leaves others alone, including keys that extend it.
pub async fn keys_are_independent<C: Cache>(cache: &C) {
    let keys: [(&str, &'static [u8]); 4] = [
        ("contract:indep", b"0"),
        ("contract:indep:", b"1"),
        ("contract:indep:a", b"2"),
        ("contract:indep:ünï cödé", b"3"),
    ];
    for (key, value) in keys {
        set(cache, key, value).await;
    }
    for (key, value) in keys {
        assert_eq!(get(cache, key).await.as_deref(), Some(value), "{key}");
    }
    assert!(cache.delete(keys[0].0).await.expect("delete failed"));
    assert_eq!(get(cache, keys[0].0).await, None);
    for (key, value) in &keys[1..] {
        assert_eq!(get(cache, key).await.as_deref(), Some(*value), "{key}");
    }
}

/// A 1 MiB value reads back intact.
pub async fn large_value_roundtrips<C: Cache>(cache: &C) {
    let value: Bytes = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    cache
        .set("contract:large", value.clone(), LONG)
        .await
        .expect("set failed");
    let read = get(cache, "contract:large")
        .await
        .expect("large value missing");
    assert!(read == value, "large value corrupted (len {})", read.len());
    assert!(cache.delete("contract:large").await.expect("delete failed"));
}

/// An empty value is a hit with no bytes, not a miss.
pub async fn empty_value_roundtrips<C: Cache>(cache: &C) {
    set(cache, "contract:empty", b"").await;
    assert_eq!(
        get(cache, "contract:empty").await.as_deref(),
        Some(&b""[..])
    );
}

/// `set_json` then `get_json` returns the value; bytes that are not that type are an error.
pub async fn json_roundtrips<C: Cache>(cache: &C) {
    let value = (String::from("widget"), 1999_u64, vec![1, 2, 3]);
    cache
        .set_json("contract:json", &value, LONG)
        .await
        .expect("set_json failed");
    let read: Option<(String, u64, Vec<i32>)> = cache
        .get_json("contract:json")
        .await
        .expect("get_json failed");
    assert_eq!(read, Some(value));

    let missing: Option<u64> = cache
        .get_json("contract:json-missing")
        .await
        .expect("get_json failed");
    assert_eq!(missing, None);

    set(cache, "contract:json-bad", b"not json").await;
    let bad = cache.get_json::<u64>("contract:json-bad").await;
    assert!(matches!(bad, Err(CacheError::Json(_))), "{bad:?}");
}

/// Many tasks writing and reading their own keys at once each see their own latest write.
pub async fn concurrent_sets_and_gets_are_consistent<C: Cache + Clone + 'static>(cache: &C) {
    const TASKS: usize = 32;
    const ROUNDS: usize = 20;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let cache = cache.clone();
        tasks.spawn(async move {
            let key = format!("contract:concurrent:{task}");
            for round in 0..ROUNDS {
                let value = Bytes::from(format!("{task}/{round}"));
                cache
                    .set(&key, value.clone(), LONG)
                    .await
                    .expect("set failed");
                let read = cache.get(&key).await.expect("get failed");
                assert_eq!(read, Some(value), "{key} round {round}");
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(()) => {}
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("a contract task did not finish: {err}"),
        }
    }
    for task in 0..TASKS {
        let key = format!("contract:concurrent:{task}");
        let expected = format!("{task}/{}", ROUNDS - 1);
        assert_eq!(
            get(cache, &key).await.as_deref(),
            Some(expected.as_bytes()),
            "{key}"
        );
    }
}

/// `incr` starts a counter at 1, never loses a concurrent increment, is readable with `get`,
/// restarts after expiry or delete, and rejects a zero TTL.
pub async fn counters_count_every_increment<C: Cache + Clone + 'static>(cache: &C) {
    let key = "contract:counter";
    assert_eq!(cache.incr(key, LONG).await.expect("incr failed"), 1);
    assert_eq!(cache.incr(key, LONG).await.expect("incr failed"), 2);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.incr(key, LONG).await.expect("incr failed") })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("incr task panicked"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (3..=22).collect::<Vec<u64>>(),
        "every increment counted once"
    );
    assert_eq!(get(cache, key).await.as_deref(), Some(&b"22"[..]));
    assert!(cache.delete(key).await.expect("delete failed"));
    assert_eq!(cache.incr(key, LONG).await.expect("incr failed"), 1);

    // Not a number: the count starts again.
    set(cache, "contract:counter-text", b"abc").await;
    assert_eq!(
        cache
            .incr("contract:counter-text", LONG)
            .await
            .expect("incr failed"),
        1
    );

    assert!(matches!(
        cache.incr("contract:counter-zero", Duration::ZERO).await,
        Err(CacheError::InvalidTtl(_))
    ));

    // The TTL is the window's: it runs from the first increment and expires the counter.
    let short = "contract:counter-short";
    assert_eq!(
        cache
            .incr(short, Duration::from_millis(300))
            .await
            .expect("incr failed"),
        1
    );
    assert_eq!(
        cache.incr(short, LONG).await.expect("incr failed"),
        2,
        "a later TTL does not replace the window's"
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        cache.incr(short, LONG).await.expect("incr failed"),
        1,
        "expired counters start over"
    );
    cache.delete(short).await.expect("delete failed");
}

/// `set_many` stores every entry (the later of two under one key wins) and `get_many` answers
/// each key in order, `None` for one never written; empty calls succeed; a zero TTL is refused
/// and stores nothing; each entry is also readable on its own.
pub async fn many_keys_at_once<C: Cache>(cache: &C) {
    cache
        .set_many(&[], LONG)
        .await
        .expect("empty set_many failed");
    assert!(
        cache
            .get_many(&[])
            .await
            .expect("empty get_many failed")
            .is_empty()
    );
    let entries = [
        ("contract:many-a", Bytes::from_static(b"alpha")),
        ("contract:many-b", Bytes::from_static(b"")),
        ("contract:many-a", Bytes::from_static(b"again")),
        ("contract:many-c", Bytes::from_static(b"\x00\xff")),
    ];
    cache
        .set_many(&entries, LONG)
        .await
        .expect("set_many failed");
    let values = cache
        .get_many(&[
            "contract:many-c",
            "contract:many-absent",
            "contract:many-a",
            "contract:many-b",
            "contract:many-a",
        ])
        .await
        .expect("get_many failed");
    assert_eq!(
        values,
        vec![
            Some(Bytes::from_static(b"\x00\xff")),
            None,
            Some(Bytes::from_static(b"again")),
            Some(Bytes::new()),
            Some(Bytes::from_static(b"again")),
        ]
    );
    assert_eq!(
        get(cache, "contract:many-c").await.as_deref(),
        Some(&b"\x00\xff"[..])
    );
    let refused = cache
        .set_many(
            &[("contract:many-zero", Bytes::from_static(b"x"))],
            Duration::ZERO,
        )
        .await;
    assert!(
        matches!(refused, Err(CacheError::InvalidTtl(_))),
        "{refused:?}"
    );
    assert_eq!(get(cache, "contract:many-zero").await, None);
}
