//! The catalog endpoints: pagination, reads by id, input validation and cache-aside reads.

use reqwest::StatusCode;
use serde_json::Value;
use strata_cache::Cache;
use strata_store::testing;

use crate::helpers::{TestApp, assert_json_error};

backend_tests!(
    list_defaults_to_the_first_page_of_twenty,
    pages_walk_the_whole_catalog_once,
    product_by_id_matches_the_list,
    unknown_product_is_a_json_404,
    malformed_ids_are_json_400s,
    malformed_queries_are_json_400s,
    product_reads_are_served_from_the_cache_until_it_is_cleared,
    list_pages_are_cached_under_their_page_key,
    home_page_is_served_at_the_root,
);

async fn catalog_size(app: &TestApp) -> i64 {
    let total = app.store.products().count().await.expect("count products");
    assert!(
        total > 20,
        "the demo catalog should span several pages, has {total}"
    );
    total
}

async fn list_defaults_to_the_first_page_of_twenty(app: TestApp) {
    let total = catalog_size(&app).await;
    let body = app.get_ok_json("/api/v1/products").await;
    assert_eq!(body["page"], 1);
    assert_eq!(body["per_page"], 20);
    assert_eq!(body["total"], total);
    let items = body["items"].as_array().expect("items");
    assert_eq!(items.len(), 20);
    for key in [
        "id",
        "sku",
        "name",
        "description",
        "category",
        "price_cents",
        "stock",
        "created_at",
        "updated_at",
    ] {
        assert!(
            items[0].get(key).is_some(),
            "product lacks `{key}`: {}",
            items[0]
        );
    }
}

async fn pages_walk_the_whole_catalog_once(app: TestApp) {
    let total = catalog_size(&app).await;
    let per_page = 7;
    let mut ids = Vec::new();
    let mut page = 1;
    loop {
        let body = app
            .get_ok_json(&format!("/api/v1/products?page={page}&per_page={per_page}"))
            .await;
        assert_eq!(body["total"], total);
        assert_eq!(body["page"], page);
        assert_eq!(body["per_page"], per_page);
        let items = body["items"].as_array().expect("items");
        if items.is_empty() {
            break;
        }
        assert!(
            items.len() <= per_page,
            "page {page} has {} items",
            items.len()
        );
        ids.extend(items.iter().map(|p| p["id"].as_i64().expect("id")));
        page += 1;
    }
    assert_eq!(
        i64::try_from(ids.len()).expect("len"),
        total,
        "every product exactly once"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids ascend across pages: {ids:?}"
    );
    let last_full = usize::try_from(total).expect("total") % per_page;
    let expected_last = if last_full == 0 { per_page } else { last_full };
    let last = app
        .get_ok_json(&format!(
            "/api/v1/products?page={}&per_page={per_page}",
            page - 1
        ))
        .await;
    assert_eq!(
        last["items"].as_array().expect("items").len(),
        expected_last
    );
}

async fn product_by_id_matches_the_list(app: TestApp) {
    let list = app.get_ok_json("/api/v1/products?per_page=3").await;
    for listed in list["items"].as_array().expect("items") {
        let id = listed["id"].as_i64().expect("id");
        let product = app.get_ok_json(&format!("/api/v1/products/{id}")).await;
        assert_eq!(&product, listed);
    }
}

async fn unknown_product_is_a_json_404(app: TestApp) {
    let response = app.get("/api/v1/products/999999999").await;
    let message = assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert!(message.contains("999999999"), "{message}");
}

async fn malformed_ids_are_json_400s(app: TestApp) {
    let cases: &[(&str, StatusCode, &str)] = &[
        ("abc", StatusCode::BAD_REQUEST, "invalid_id"),
        ("0", StatusCode::BAD_REQUEST, "invalid_id"),
        ("-1", StatusCode::BAD_REQUEST, "invalid_id"),
        ("+1", StatusCode::BAD_REQUEST, "invalid_id"),
        ("1.5", StatusCode::BAD_REQUEST, "invalid_id"),
        ("1e3", StatusCode::BAD_REQUEST, "invalid_id"),
        ("%201", StatusCode::BAD_REQUEST, "invalid_id"),
        ("0x10", StatusCode::BAD_REQUEST, "invalid_id"),
        ("9223372036854775808", StatusCode::BAD_REQUEST, "invalid_id"),
        (
            "99999999999999999999999999999999",
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        ("%FF", StatusCode::BAD_REQUEST, "invalid_id"),
        ("%E2%82", StatusCode::BAD_REQUEST, "invalid_id"),
        ("1;drop", StatusCode::BAD_REQUEST, "invalid_id"),
        ("", StatusCode::NOT_FOUND, "not_found"),
        ("1/extra", StatusCode::NOT_FOUND, "not_found"),
    ];
    for (id, status, code) in cases {
        let response = app.get(&format!("/api/v1/products/{id}")).await;
        assert!(
            !response.status().is_server_error(),
            "{id:?} gave {}",
            response.status()
        );
        assert_json_error(response, *status, code).await;
    }
}

async fn malformed_queries_are_json_400s(app: TestApp) {
    let queries = [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=",
        "page=%2B1",
        "page=2147483648",
        "page=4294967296",
        "page=99999999999999999999999",
        "per_page=0",
        "per_page=-5",
        "per_page=101",
        "per_page=1e2",
        "per_page=%FF",
        "page=1&page=2",
        "sort=cheapest",
        "min_price=-1",
        "max_price=1.5",
        "category=Books",
        "page=1&colour=red",
        "%FF=1",
        "page",
    ];
    for query in queries {
        let response = app.get(&format!("/api/v1/products?{query}")).await;
        assert!(
            !response.status().is_server_error(),
            "{query:?} gave {}",
            response.status()
        );
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    // The limits themselves are fine.
    for query in [
        "",
        "page=1",
        "per_page=1",
        "per_page=100",
        "page=2147483647&per_page=100",
    ] {
        app.get_ok_json(&format!("/api/v1/products?{query}")).await;
    }
}

async fn product_reads_are_served_from_the_cache_until_it_is_cleared(app: TestApp) {
    let list = app.get_ok_json("/api/v1/products?per_page=1").await;
    let id = list["items"][0]["id"].as_i64().expect("id");
    let key = format!("catalog:{}:product:{id}", catalog_version(&app).await);
    assert_eq!(
        app.cache.get(&key).await.expect("cache get"),
        None,
        "cold before the first read"
    );

    let first = app.get_ok_json(&format!("/api/v1/products/{id}")).await;
    let cached = app
        .cache
        .get(&key)
        .await
        .expect("cache get")
        .expect("filled by the first read");
    assert_eq!(
        serde_json::from_slice::<Value>(&cached).expect("cached JSON"),
        first
    );

    // Change the row behind the cache's back (the lowest id is the product read above).
    let changed = testing::execute(
        &app.store,
        "UPDATE products SET name = 'Renamed behind the cache' WHERE id = (SELECT MIN(id) FROM products)",
    )
    .await
    .expect("update");
    assert_eq!(changed, 1);
    let second = app.get_ok_json(&format!("/api/v1/products/{id}")).await;
    assert_eq!(second, first, "served from the cache, not the store");

    assert!(app.cache.delete(&key).await.expect("cache delete"));
    assert_eq!(
        key,
        format!("catalog:{}:product:{id}", catalog_version(&app).await),
        "reads do not change the version"
    );
    let third = app.get_ok_json(&format!("/api/v1/products/{id}")).await;
    assert_eq!(
        third["name"], "Renamed behind the cache",
        "read through to the store"
    );

    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metric_value(&metrics, "strata_api_cache_lookups_total{result=\"hit\"}") >= 1.0,
        "{metrics}"
    );
    assert!(
        metric_value(&metrics, "strata_api_cache_lookups_total{result=\"miss\"}") >= 2.0,
        "{metrics}"
    );
}

async fn list_pages_are_cached_under_their_page_key(app: TestApp) {
    let body = app.get_ok_json("/api/v1/products?page=2&per_page=5").await;
    let version = catalog_version(&app).await;
    let cached = app
        .cache
        .get(&format!(
            "catalog:{version}:products:q=:c=:min=:max=:s=id:p2:n5"
        ))
        .await
        .expect("cache get")
        .expect("page cached");
    assert_eq!(
        serde_json::from_slice::<Value>(&cached).expect("cached JSON"),
        body
    );
    // Defaults are keyed by their values, so `/products` and `?page=1&per_page=20` share one.
    app.get_ok_json("/api/v1/products").await;
    assert!(
        app.cache
            .get(&format!(
                "catalog:{version}:products:q=:c=:min=:max=:s=id:p1:n20"
            ))
            .await
            .expect("cache get")
            .is_some()
    );
}

async fn home_page_is_served_at_the_root(app: TestApp) {
    let response = app.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-strata-instance"));
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("body");
    assert!(
        page.contains(r#"href="/products/1""#),
        "the home page links the catalog's first products"
    );
}

/// The catalog version every catalog cache key embeds (set by the first catalog read).
pub async fn catalog_version(app: &TestApp) -> String {
    let version = app
        .cache
        .get("catalog:version")
        .await
        .expect("cache get")
        .expect("a catalog read sets the version");
    String::from_utf8(version.to_vec()).expect("UTF-8 version")
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text exposition, 0 when
/// the series is absent.
pub fn metric_value(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
