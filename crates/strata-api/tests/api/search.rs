//! Catalog search, filters, sort and pagination; admin writes; and the cache staying
//! consistent with them through any instance (memory cache shared as in `strata up`, and
//! Redis).

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_cache::AnyCache;
use strata_core::testkit::{REDIS, require_service};

use crate::helpers::{Backend, TestApp, assert_json_error, spawn_app};

backend_tests!(
    search_matches_every_term_with_a_prefix_on_the_last,
    filters_sort_and_paginate_with_totals,
    admins_create_and_update_products,
    product_writes_are_validated,
    writes_invalidate_cached_reads_on_every_instance_sharing_a_memory_cache,
    writes_invalidate_cached_reads_on_every_instance_sharing_redis,
);

/// Every product of a list request, walking all pages; returns (ids, total).
async fn all_pages(app: &TestApp, query: &str) -> (Vec<i64>, i64) {
    let mut ids = Vec::new();
    let mut total = None;
    for page in 1.. {
        let separator = if query.is_empty() { "" } else { "&" };
        let body = app
            .get_ok_json(&format!(
                "/api/v1/products?{query}{separator}page={page}&per_page=7"
            ))
            .await;
        let page_total = body["total"].as_i64().expect("total");
        assert_eq!(*total.get_or_insert(page_total), page_total, "{query}");
        let items = body["items"].as_array().expect("items");
        if items.is_empty() {
            break;
        }
        ids.extend(items.iter().map(|p| p["id"].as_i64().expect("id")));
    }
    let total = total.unwrap_or(0);
    assert_eq!(
        ids.len() as i64,
        total,
        "{query}: pages hold exactly `total` items"
    );
    (ids, total)
}

async fn products(app: &TestApp, query: &str) -> Vec<Value> {
    let body = app
        .get_ok_json(&format!("/api/v1/products?{query}&per_page=100"))
        .await;
    body["items"].as_array().expect("items").clone()
}

fn text_of(product: &Value) -> String {
    format!(
        "{} {}",
        product["name"].as_str().expect("name"),
        product["description"].as_str().expect("description")
    )
    .to_lowercase()
}

/// The lowercase words of a text, split as the search splits it.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

async fn search_matches_every_term_with_a_prefix_on_the_last(app: TestApp) {
    let all = products(&app, "").await;
    // The exact matching rule, computed here from the full catalog, must be what both
    // databases' search engines return.
    for q in [
        "cookbook",
        "Cookbook",
        "COOK",
        "pocket cook",
        "pocket, cook!",
        "field guide",
        "guide field",
        "birds",
        "zzzz",
        "colour",
        "full-colour",
        "400",
    ] {
        let terms = words(q);
        let (last, rest) = terms.split_last().expect("terms");
        let expected: BTreeSet<i64> = all
            .iter()
            .filter(|p| {
                let words = words(&text_of(p));
                rest.iter().all(|t| words.contains(t))
                    && words.iter().any(|w| w.starts_with(last.as_str()))
            })
            .map(|p| p["id"].as_i64().expect("id"))
            .collect();
        let encoded: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (ids, total) = all_pages(&app, &format!("q={encoded}")).await;
        let found: BTreeSet<i64> = ids.iter().copied().collect();
        assert_eq!(found, expected, "q={q:?}");
        assert_eq!(total as usize, expected.len());
    }
    // Relevance (the default with q): name matches first, then by id.
    let items = products(&app, "q=guide").await;
    let in_name: Vec<bool> = items
        .iter()
        .map(|p| words(p["name"].as_str().expect("name")).contains(&"guide".to_owned()))
        .collect();
    assert!(in_name.windows(2).all(|w| w[0] >= w[1]), "{in_name:?}");
    // A text with no word is no search.
    assert_eq!(all_pages(&app, "q=%20-%20").await.1, all.len() as i64);
}

async fn filters_sort_and_paginate_with_totals(app: TestApp) {
    let all = products(&app, "").await;
    let (books, total) = all_pages(&app, "category=books").await;
    let expected: Vec<i64> = all
        .iter()
        .filter(|p| p["category"] == "books")
        .map(|p| p["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(books, expected);
    assert!(total > 0);

    let in_range = |p: &Value| (1000..=3000).contains(&p["price_cents"].as_i64().expect("price"));
    let (ranged, _) = all_pages(&app, "min_price=1000&max_price=3000").await;
    let expected: Vec<i64> = all
        .iter()
        .filter(|p| in_range(p))
        .map(|p| p["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ranged, expected);

    let prices = |items: &[Value]| -> Vec<i64> {
        items
            .iter()
            .map(|p| p["price_cents"].as_i64().expect("price"))
            .collect()
    };
    let ascending = prices(&products(&app, "sort=price_asc").await);
    assert!(ascending.windows(2).all(|w| w[0] <= w[1]), "{ascending:?}");
    let descending = prices(&products(&app, "sort=price_desc&category=kitchen").await);
    assert!(
        descending.windows(2).all(|w| w[0] >= w[1]),
        "{descending:?}"
    );
    let names: Vec<String> = products(&app, "sort=name")
        .await
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_lowercase())
        .collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");

    // Pages of a sorted search partition it.
    let (by_price, total) = all_pages(&app, "sort=price_asc&min_price=500").await;
    assert_eq!(
        by_price.iter().copied().collect::<BTreeSet<_>>().len() as i64,
        total,
        "no product on two pages"
    );
    let beyond = app
        .get_ok_json("/api/v1/products?category=books&page=1000")
        .await;
    assert_eq!(beyond["items"].as_array().expect("items").len(), 0);
    assert!(beyond["total"].as_i64().expect("total") > 0);
    let none = app
        .get_ok_json("/api/v1/products?category=nothing-here")
        .await;
    assert_eq!(none["total"], 0);
}

async fn admins_create_and_update_products(app: TestApp) {
    let admin = app.admin_token().await;
    let body = json!({
        "sku": "LAMP-042", "name": " Desk Lamp ", "description": "Bright, swivelling lamp.",
        "category": "home", "price_cents": 2999, "stock": 10
    });
    let response = app.post_json("/api/v1/products", &body, Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.expect("JSON");
    assert_eq!(created["name"], "Desk Lamp");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(
        app.get_ok_json(&format!("/api/v1/products/{id}")).await,
        created
    );
    // Searchable at once, in both engines (the FTS5 triggers, the generated tsvector).
    let found = products(&app, "q=swivelling").await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], id);

    let response = app.post_json("/api/v1/products", &body, Some(&admin)).await;
    assert_json_error(response, StatusCode::CONFLICT, "sku_taken").await;

    let path = format!("/api/v1/products/{id}");
    let response = app
        .patch_json(
            &path,
            &json!({"price_cents": 1999, "name": "Desk Lamp Mk2", "description": "Dimmablex."}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.expect("JSON");
    assert_eq!(updated["price_cents"], 1999);
    assert_eq!(updated["stock"], 10, "untouched fields stay");
    assert_eq!(updated["sku"], "LAMP-042");
    assert_ne!(updated["updated_at"], created["updated_at"]);
    assert_eq!(updated["created_at"], created["created_at"]);
    assert!(
        products(&app, "q=swivelling").await.is_empty(),
        "old text left the index"
    );
    assert_eq!(products(&app, "q=dimmablex").await.len(), 1);
    assert_eq!(products(&app, "q=mk2&sort=relevance").await[0]["id"], id);

    let response = app
        .patch_json(
            "/api/v1/products/999999",
            &json!({"stock": 1}),
            Some(&admin),
        )
        .await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .patch_json("/api/v1/products/abc", &json!({"stock": 1}), Some(&admin))
        .await;
    assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;
}

async fn product_writes_are_validated(app: TestApp) {
    let admin = app.admin_token().await;
    let good = json!({
        "sku": "OK-1", "name": "Ok", "category": "home", "price_cents": 0, "stock": 0
    });
    for (field, value) in [
        ("sku", json!("")),
        ("sku", json!("has space")),
        ("name", json!("   ")),
        ("name", json!("n".repeat(201))),
        ("category", json!("Home")),
        ("price_cents", json!(-1)),
        ("price_cents", json!(1_000_000_000_001_i64)),
        ("stock", json!(-5)),
    ] {
        let mut body = good.clone();
        body[field] = value;
        let response = app.post_json("/api/v1/products", &body, Some(&admin)).await;
        let message =
            assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert!(message.contains(field), "{message}");
    }
    let response = app
        .patch_json("/api/v1/products/1", &json!({}), Some(&admin))
        .await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    let response = app
        .patch_json("/api/v1/products/1", &json!({"stock": -1}), Some(&admin))
        .await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let response = app
        .patch_json("/api/v1/products/1", &json!({"sku": "X"}), Some(&admin))
        .await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    // Zero price and stock are fine.
    let response = app.post_json("/api/v1/products", &good, Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Reads product 1 and a list page through both instances (filling their caches), then
/// changes the price through `writer` and checks every instance reads the new one, many times
/// in a row.
async fn check_consistency(writer: &TestApp, readers: &[&TestApp]) {
    let admin = writer.admin_token().await;
    let id = 1;
    let list = "/api/v1/products?sort=price_asc&per_page=100";
    let search = "/api/v1/products?q=cookbook";
    for round in 1..=5_i64 {
        for reader in readers {
            reader.get_ok_json(&format!("/api/v1/products/{id}")).await;
            reader.get_ok_json(list).await;
            reader.get_ok_json(search).await;
        }
        let price = 10_000_000 + round;
        let response = writer
            .patch_json(
                &format!("/api/v1/products/{id}"),
                &json!({"price_cents": price}),
                Some(&admin),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        for reader in readers {
            let product = reader.get_ok_json(&format!("/api/v1/products/{id}")).await;
            assert_eq!(
                product["price_cents"], price,
                "round {round} via {}",
                reader.instance
            );
            let page = reader.get_ok_json(list).await;
            let listed = page["items"]
                .as_array()
                .expect("items")
                .iter()
                .find(|p| p["id"] == id)
                .expect("listed")
                .clone();
            assert_eq!(listed["price_cents"], price, "list, round {round}");
            let last = page["items"].as_array().expect("items").last().cloned();
            assert_eq!(last.map(|p| p["id"].clone()), Some(json!(id)), "re-sorted");
        }
    }
}

async fn writes_invalidate_cached_reads_on_every_instance_sharing_a_memory_cache(app: TestApp) {
    // As in `strata up`: every instance holds a clone of one memory cache.
    let other = app.sibling(app.cache.clone()).await;
    check_consistency(&app, &[&app, &other]).await;
    check_consistency(&other, &[&app, &other]).await;
}

async fn writes_invalidate_cached_reads_on_every_instance_sharing_redis(app: TestApp) {
    let Some(url) = require_service(REDIS) else {
        return;
    };
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let cache = AnyCache::from_url(&url, &prefix).await.expect("Redis");
    let a = app.sibling(cache.clone()).await;
    let b = app.sibling(cache).await;
    check_consistency(&a, &[&a, &b]).await;
    check_consistency(&b, &[&a, &b]).await;
}

/// The same searches on SQLite and PostgreSQL return the same products in the same order,
/// with the same totals: the two engines are configured to split and match words alike.
#[tokio::test]
async fn search_results_are_equal_on_both_dialects() {
    let Some(pg) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let lite = spawn_app(Backend::Sqlite).await.expect("SQLite");
    let mut queries: Vec<String> = [
        "",
        "q=cookbook",
        "q=cook",
        "q=COOK",
        "q=pocket%20cook",
        "q=guide%20field",
        "q=birds",
        "q=full-colour",
        "q=colour",
        "q=collector",
        "q=collector%27s",
        "q=s",
        "q=400",
        "q=the",
        "q=a",
        "q=with",
        "q=for",
        "q=one%20pan",
        "q=zzz",
        "q=%C3%A9t%C3%A9",
        "q=ribbon%20marker",
        "q=small",
        "q=illustr",
        "q=mystery%20novel",
        "category=books",
        "category=kitchen&sort=price_desc",
        "min_price=1000&max_price=2000",
        "sort=name",
        "sort=price_asc",
        "sort=price_desc&per_page=5&page=3",
        "q=cookbook&sort=price_asc",
        "q=guide&sort=name",
        "q=lamp&category=home",
        "q=b&sort=relevance&per_page=100",
    ]
    .iter()
    .map(|q| (*q).to_owned())
    .collect();
    // And one single-letter prefix search per letter: the broadest prefix matches.
    queries.extend(('a'..='z').map(|c| format!("q={c}&per_page=100")));
    // And every word of the catalog, alone and as a prefix of two letters.
    let all = products(&lite, "").await;
    let vocabulary: BTreeSet<String> = all.iter().flat_map(|p| words(&text_of(p))).collect();
    for word in &vocabulary {
        let encoded: String = word.bytes().map(|b| format!("%{b:02X}")).collect();
        queries.push(format!("q={encoded}&per_page=100"));
    }
    let mut differ = Vec::new();
    for query in &queries {
        let a = lite.get_ok_json(&format!("/api/v1/products?{query}")).await;
        let b = pg.get_ok_json(&format!("/api/v1/products?{query}")).await;
        let ids = |v: &Value| -> Vec<i64> {
            v["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|p| p["id"].as_i64().expect("id"))
                .collect()
        };
        if (ids(&a), &a["total"]) != (ids(&b), &b["total"]) {
            differ.push(format!(
                "{query}: sqlite {} {:?} vs postgres {} {:?}",
                a["total"],
                ids(&a),
                b["total"],
                ids(&b)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} queries differ:\n{}",
        differ.len(),
        queries.len(),
        differ.join("\n")
    );
}
