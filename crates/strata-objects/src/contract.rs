//! The behaviour every [`ObjectStore`] backend must have, as one test suite that each
//! backend's integration tests run (`tests/local.rs`, `tests/s3.rs`).
//!
//! Each property uses its own keys (under `contract/`), so they can run concurrently on one
//! store; every property deletes what it wrote, so a passing run leaves the store empty (the
//! S3 test deletes its bucket afterwards, which fails if anything is left). The functions
//! panic on a violation, like `assert!`.

#![doc(hidden)]
#![allow(clippy::missing_panics_doc)]

use bytes::Bytes;

use crate::{ObjectKey, ObjectStore, ObjectsError, etag_of};

/// Runs every property.
pub async fn run_all<S: ObjectStore>(store: &S) {
    tokio::join!(
        absent_objects_are_none(store),
        put_then_get_returns_bytes_type_and_tag(store),
        overwrite_replaces_bytes_and_type(store),
        delete_removes(store),
        empty_and_large_objects_roundtrip(store),
        nested_keys_coexist(store),
        bad_content_types_store_nothing(store),
        concurrent_writes_leave_one_whole_object(store),
    );
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(format!("contract/{name}")).expect("a valid key")
}

/// Reading, heading or deleting a key never written: `None`, `None`, `Ok`.
pub async fn absent_objects_are_none<S: ObjectStore>(store: &S) {
    let k = key("never-written");
    assert_eq!(store.get(&k).await.expect("get"), None);
    assert_eq!(store.head(&k).await.expect("head"), None);
    store.delete(&k).await.expect("deleting an absent object");
}

/// What was written reads back byte for byte, with its content type, its tag (the same on
/// every backend) and its size; `head` agrees without the bytes.
pub async fn put_then_get_returns_bytes_type_and_tag<S: ObjectStore>(store: &S) {
    let k = key("put-get");
    let bytes = Bytes::from_static(b"\x89PNG\r\n\x1a\n\x00\xff binary \n\n bytes");
    let meta = store
        .put(&k, bytes.clone(), "image/png")
        .await
        .expect("put");
    assert_eq!(meta.content_type, "image/png");
    assert_eq!(meta.etag, etag_of(&bytes));
    assert_eq!(meta.size, bytes.len() as u64);
    let object = store.get(&k).await.expect("get").expect("the object");
    assert_eq!(object.bytes, bytes);
    assert_eq!(object.meta, meta);
    assert_eq!(store.head(&k).await.expect("head"), Some(meta));
    store.delete(&k).await.expect("delete");
}

/// A second write replaces bytes, content type and tag.
pub async fn overwrite_replaces_bytes_and_type<S: ObjectStore>(store: &S) {
    let k = key("overwrite");
    let first = store
        .put(&k, Bytes::from_static(b"first"), "image/png")
        .await
        .expect("put");
    let second = store
        .put(&k, Bytes::from_static(b"second"), "image/webp")
        .await
        .expect("put again");
    assert_ne!(first.etag, second.etag);
    let object = store.get(&k).await.expect("get").expect("the object");
    assert_eq!(&object.bytes[..], b"second");
    assert_eq!(object.meta.content_type, "image/webp");
    assert_eq!(object.meta.etag, second.etag);
    store.delete(&k).await.expect("delete");
}

/// After a delete the object is gone, and deleting again is fine.
pub async fn delete_removes<S: ObjectStore>(store: &S) {
    let k = key("delete");
    store
        .put(&k, Bytes::from_static(b"x"), "text/plain")
        .await
        .expect("put");
    store.delete(&k).await.expect("delete");
    assert_eq!(store.get(&k).await.expect("get"), None);
    assert_eq!(store.head(&k).await.expect("head"), None);
    store.delete(&k).await.expect("delete again");
}

/// An empty object and one of 3 MiB both read back whole.
pub async fn empty_and_large_objects_roundtrip<S: ObjectStore>(store: &S) {
    let empty = key("empty");
    let meta = store
        .put(&empty, Bytes::new(), "application/octet-stream")
        .await
        .expect("put empty");
    assert_eq!(meta.size, 0);
    let object = store.get(&empty).await.expect("get").expect("the object");
    assert!(object.bytes.is_empty());
    assert_eq!(object.meta.etag, etag_of(b""));

    let large = key("large");
    let bytes: Bytes = (0..3 * 1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into();
    store
        .put(&large, bytes.clone(), "image/jpeg")
        .await
        .expect("put large");
    let object = store.get(&large).await.expect("get").expect("the object");
    assert!(object.bytes == bytes, "the large object came back changed");
    assert_eq!(object.meta.etag, etag_of(&bytes));
    store.delete(&empty).await.expect("delete");
    store.delete(&large).await.expect("delete");
}

/// `a` and `a/b` are two objects, as on S3: one key is never another's directory.
pub async fn nested_keys_coexist<S: ObjectStore>(store: &S) {
    let (outer, inner) = (key("nest/a"), key("nest/a/b"));
    store
        .put(&outer, Bytes::from_static(b"outer"), "text/plain")
        .await
        .expect("put outer");
    store
        .put(&inner, Bytes::from_static(b"inner"), "text/plain")
        .await
        .expect("put inner");
    let read = |k| async move { store.get(k).await.expect("get").expect("the object").bytes };
    assert_eq!(&read(&outer).await[..], b"outer");
    assert_eq!(&read(&inner).await[..], b"inner");
    store.delete(&outer).await.expect("delete");
    assert_eq!(&read(&inner).await[..], b"inner");
    store.delete(&inner).await.expect("delete");
}

/// A content type that cannot travel as a header is refused, and nothing is stored.
pub async fn bad_content_types_store_nothing<S: ObjectStore>(store: &S) {
    let k = key("bad-type");
    for bad in ["", "image/png\r\nx-evil: 1"] {
        let err = store
            .put(&k, Bytes::from_static(b"x"), bad)
            .await
            .expect_err("a bad content type");
        assert!(
            matches!(err, ObjectsError::InvalidContentType(_)),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(store.head(&k).await.expect("head"), None);
}

/// Concurrent writes of one key: afterwards the key holds one of them, whole, with its own
/// tag (never a mix of two, never a half-written file). A write may fail under contention,
/// but only with an error worth a retry.
pub async fn concurrent_writes_leave_one_whole_object<S: ObjectStore>(store: &S) {
    let k = key("concurrent");
    let versions: Vec<Bytes> = (0..8_u8)
        .map(|i| Bytes::from(vec![i; 64 * 1024 + usize::from(i)]))
        .collect();
    let writes = versions
        .iter()
        .map(|bytes| store.put(&k, bytes.clone(), "application/octet-stream"));
    // A server may refuse some of the racing writes with an error worth a retry (S3 answers
    // 500/503 under contention, as moto does): such a write is lost, not half-applied.
    let mut succeeded = 0;
    for result in futures_util::future::join_all(writes).await {
        match result {
            Ok(_) => succeeded += 1,
            Err(e) => assert!(e.is_transient(), "a concurrent put failed for good: {e}"),
        }
    }
    assert!(succeeded > 0, "every concurrent put failed");
    let object = store.get(&k).await.expect("get").expect("the object");
    assert!(
        versions.contains(&object.bytes),
        "the object is none of the versions written"
    );
    assert_eq!(object.meta.etag, etag_of(&object.bytes));
    store.delete(&k).await.expect("delete");
}
