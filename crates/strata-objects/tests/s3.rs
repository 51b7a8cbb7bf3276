//! The object store contract on a real S3-compatible server (`TEST_S3_URL`, moto's server as
//! `scripts/services.sh` starts it; skipped loudly when none runs, failed under `CI=true`).
//! Each test works in a bucket of its own, named by a UUID, and deletes it at the end, which
//! fails if the test left an object behind.

use strata_core::config::{ObjectsConfig, Secret};
use strata_core::testkit::{S3, require_service};
use strata_objects::{
    AnyObjects, Bytes, ObjectKey, ObjectStore, ObjectsError, S3Objects, S3Settings, contract,
};

/// Settings of a fresh bucket on the test server (moto accepts any credentials).
fn settings(endpoint: &str) -> S3Settings {
    S3Settings {
        endpoint: endpoint.to_owned(),
        bucket: format!("strata-test-{}", uuid::Uuid::new_v4()),
        region: "us-east-1".to_owned(),
        access_key_id: "strata-test".to_owned(),
        secret_access_key: Secret::new("strata-test-secret"),
    }
}

async fn fresh_bucket(endpoint: &str) -> S3Objects {
    let objects = S3Objects::new(settings(endpoint)).expect("S3 settings");
    objects.create_bucket().await.expect("create the bucket");
    objects
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_objects_meet_the_contract() {
    let Some(endpoint) = require_service(S3) else {
        return;
    };
    let objects = fresh_bucket(&endpoint).await;
    contract::run_all(&objects).await;
    objects.delete_bucket().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_objects_from_an_s3_url_meet_the_contract() {
    let Some(endpoint) = require_service(S3) else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let config = ObjectsConfig {
        url: format!("s3://{}", bucket.bucket()),
        endpoint: endpoint.clone(),
        access_key_id: "strata-test".to_owned(),
        secret_access_key: Secret::new("strata-test-secret"),
        ..ObjectsConfig::default()
    };
    let objects = AnyObjects::open(&config, std::path::Path::new("unused"))
        .await
        .unwrap();
    assert_eq!(objects.backend(), "s3");
    contract::run_all(&objects).await;
    bucket.delete_bucket().await.unwrap();
}

#[tokio::test]
async fn a_missing_bucket_stops_the_start_and_keeps_the_secret() {
    let Some(endpoint) = require_service(S3) else {
        return;
    };
    let config = ObjectsConfig {
        url: format!("s3://strata-test-missing-{}", uuid::Uuid::new_v4()),
        endpoint,
        access_key_id: "strata-test".to_owned(),
        secret_access_key: Secret::new("strata-test-secret"),
        ..ObjectsConfig::default()
    };
    let err = AnyObjects::open(&config, std::path::Path::new("unused"))
        .await
        .unwrap_err();
    assert!(matches!(err, ObjectsError::S3 { status: 404, .. }), "{err}");
    assert!(!err.to_string().contains("strata-test-secret"), "{err}");
}

#[tokio::test]
async fn a_server_that_does_not_listen_is_a_transient_error() {
    // Port 1 on localhost: nothing listens there, so the connection is refused at once.
    let objects = S3Objects::new(settings("http://127.0.0.1:1")).unwrap();
    let err = objects
        .put(&ObjectKey::new("k").unwrap(), Bytes::new(), "text/plain")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}
