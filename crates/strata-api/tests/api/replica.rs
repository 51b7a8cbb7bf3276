//! Catalog reads from a PostgreSQL read replica (`store.read_url`): product pages, lists and
//! searches come from the replica (from the primary while the replica does not answer), while
//! checkout reserves stock on the primary, and `/readyz` waits for a replica behind on
//! migrations. The replica here is a second schema, migrated and seeded like the
//! primary, whose product 7 is named differently: what a lagging replica looks like, and how a
//! test tells which pool served a read.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;
use strata_cache::AnyCache;
use strata_core::testkit::{POSTGRES, require_service};
use strata_store::Store;
use strata_store::testing::{self, TestSchemaGuard};

use crate::helpers::{TestApp, assert_json_error, start, test_auth};
use crate::orders::{add_to_cart, checkout, mint_customers};

/// The name product 7 has on the replica only (one word no seeded product has).
const REPLICA_NAME: &str = "Zyxwvu replica lamp";

/// Two fresh schemas: the primary, migrated and seeded, and the replica, migrated and seeded
/// too, or (`migrate_replica` false) only up to migration 2. `None` (after a loud message)
/// without a PostgreSQL server.
async fn primary_and_replica(
    migrate_replica: bool,
) -> Option<(Store, Store, TestSchemaGuard, TestSchemaGuard)> {
    let url = require_service(POSTGRES)?;
    let (primary, primary_guard) = testing::fresh_postgres(&url).await.expect("primary");
    let (replica, replica_guard) = testing::fresh_postgres(&url).await.expect("replica");
    primary.migrate().await.expect("migrate the primary");
    primary.seed_demo_catalog().await.expect("seed the primary");
    if migrate_replica {
        replica.migrate().await.expect("migrate the replica");
        replica.seed_demo_catalog().await.expect("seed the replica");
    } else {
        // As a replica that has not replayed the newest migrations yet.
        testing::migrate_to(&replica, 2)
            .await
            .expect("migrate to 2");
    }
    Some((primary, replica, primary_guard, replica_guard))
}

/// An api instance whose store is `primary` with `replica` as its read replica.
async fn app_on(
    primary: &Store,
    replica: &Store,
    guards: (TestSchemaGuard, TestSchemaGuard),
) -> TestApp {
    let store = primary
        .clone()
        .with_read_replica(replica.clone())
        .expect("both are PostgreSQL");
    assert!(store.has_read_replica());
    let cache = AnyCache::from_url("memory", "test")
        .await
        .expect("memory cache");
    start(store, cache, Arc::new(guards), test_auth()).await
}

async fn stock_of(store: &Store, id: i64) -> i64 {
    store
        .products()
        .get(id)
        .await
        .expect("read")
        .expect("product")
        .stock
}

#[tokio::test]
async fn catalog_reads_come_from_the_replica_and_checkout_reserves_on_the_primary() {
    let Some((primary, replica, g1, g2)) = primary_and_replica(true).await else {
        return;
    };
    let renamed = testing::execute(
        &replica,
        "UPDATE products SET name = 'Zyxwvu replica lamp' WHERE id = 7",
    )
    .await
    .expect("rename on the replica");
    assert_eq!(renamed, 1);
    let app = app_on(&primary, &replica, (g1, g2)).await;
    let primary_name = primary.products().get(7).await.unwrap().unwrap().name;
    assert_ne!(primary_name, REPLICA_NAME);

    // The product page, the list and the search all read the replica.
    let product = app.get_ok_json("/api/v1/products/7").await;
    assert_eq!(product["name"], REPLICA_NAME, "{product}");
    let page = app.get_ok_json("/api/v1/products?per_page=100").await;
    let listed: Vec<&Value> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["id"] == 7)
        .collect();
    assert_eq!(listed.len(), 1, "{page}");
    assert_eq!(listed[0]["name"], REPLICA_NAME);
    let found = app.get_ok_json("/api/v1/products?q=zyxwvu").await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["id"], 7, "{found}");
    let by_old_name = app
        .get_ok_json(&format!(
            "/api/v1/products?q={}",
            primary_name.split_whitespace().next().expect("a word")
        ))
        .await;
    assert!(
        by_old_name["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|p| p["id"] != 7),
        "the primary's name found product 7: {by_old_name}"
    );

    // Checkout reserves on the primary, and only there.
    let (primary_before, replica_before) =
        (stock_of(&primary, 7).await, stock_of(&replica, 7).await);
    let (_, token) = mint_customers(&app, 1).await.remove(0);
    add_to_cart(&app, &token, 7, 2).await;
    let response = checkout(&app, Some(&token), Some("on-the-primary"), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.expect("order JSON");
    assert_eq!(order["lines"][0]["product_id"], 7, "{order}");
    assert_eq!(stock_of(&primary, 7).await, primary_before - 2);
    assert_eq!(stock_of(&replica, 7).await, replica_before);
    let orders = app.get_as("/api/v1/orders", &token).await;
    assert_eq!(orders.status(), StatusCode::OK);
    let orders: Value = orders.json().await.expect("orders JSON");
    assert_eq!(
        orders["total"], 1,
        "the order is read back from the primary: {orders}"
    );

    // The catalog still shows the replica's stock: advisory, as documented.
    let product = app.get_ok_json("/api/v1/products/7").await;
    assert_eq!(product["stock"], replica_before, "{product}");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_api_is_not_ready_until_the_replica_has_every_migration() {
    let Some((primary, replica, g1, g2)) = primary_and_replica(false).await else {
        return;
    };
    let app = app_on(&primary, &replica, (g1, g2)).await;
    assert!(primary.ready().await.is_ok(), "the primary itself is ready");
    assert_json_error(
        app.get("/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
    )
    .await;
    replica.migrate().await.expect("migrate the replica");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_the_replica_gone_catalog_reads_come_from_the_primary_and_the_api_stays_ready() {
    let Some((primary, replica, g1, g2)) = primary_and_replica(true).await else {
        return;
    };
    let app = app_on(&primary, &replica, (g1, g2)).await;
    // The replica's pool, shared with the api's store, closes: every read on it fails as
    // unavailable, as with a replica that is down.
    replica.close().await.expect("close the replica");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let product: Value = app.get("/api/v1/products/7").await.json().await.unwrap();
    assert_ne!(product["name"], REPLICA_NAME, "read from the primary");
    let page: Value = app
        .get("/api/v1/products?q=cookbook")
        .await
        .json()
        .await
        .unwrap();
    assert!(page["total"].as_i64().unwrap() >= 1, "{page}");
}
