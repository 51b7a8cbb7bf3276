//! `GET /api/v1/products/{id}/recommendations`: what was bought in the same orders first, the
//! product's category after, never the product itself; bad and unknown ids refused.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_json_error};
use crate::orders::{add_to_cart, checkout};
use crate::prices::add_product;

backend_tests!(
    recommendations_are_bought_together_first_then_the_category,
    recommendations_refuse_bad_and_unknown_ids,
);

fn ids(recommendations: &Value) -> Vec<i64> {
    recommendations["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_i64().expect("id"))
        .collect()
}

/// A customer who buys `products` (one of each) in one order.
async fn buy(app: &TestApp, products: &[i64]) {
    let (_, token) = app.customer().await;
    for id in products {
        add_to_cart(app, &token, *id, 1).await;
    }
    let key = uuid::Uuid::new_v4().to_string();
    let response = checkout(app, Some(&token), Some(&key), None).await;
    assert_eq!(response.status(), StatusCode::CREATED, "checkout");
}

async fn recommendations_are_bought_together_first_then_the_category(app: TestApp) {
    let mut made = Vec::new();
    for i in 0..6 {
        made.push(add_product(&app, &format!("REC-{i}"), 1_000 + i, 50).await);
    }
    let [a, b, c, d, e, f] = made[..] else {
        panic!("six products");
    };
    // `b` is bought with `a` twice, `c` once; nothing is bought with `f`.
    buy(&app, &[a, b, c]).await;
    buy(&app, &[a, b]).await;

    let with_a = app
        .get_ok_json(&format!("/api/v1/products/{a}/recommendations"))
        .await;
    assert_eq!(with_a["product_id"], a);
    // Bought together, most often first; then the category (`test`) by id, without repeats.
    assert_eq!(ids(&with_a), [b, c, d, e]);
    assert_eq!(with_a["items"][0]["name"], "Product REC-1");

    let with_c = app
        .get_ok_json(&format!("/api/v1/products/{c}/recommendations"))
        .await;
    // `a` and `b` once each (ties by id), then the category.
    assert_eq!(ids(&with_c), [a, b, d, e]);

    let with_f = app
        .get_ok_json(&format!("/api/v1/products/{f}/recommendations"))
        .await;
    assert_eq!(ids(&with_f), [a, b, c, d]);

    // A second read is the cached answer, and the same.
    let again = app
        .get_ok_json(&format!("/api/v1/products/{a}/recommendations"))
        .await;
    assert_eq!(again, with_a);
}

async fn recommendations_refuse_bad_and_unknown_ids(app: TestApp) {
    assert_json_error(
        app.get("/api/v1/products/999999/recommendations").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    for bad in ["abc", "0", "-1"] {
        assert_json_error(
            app.get(&format!("/api/v1/products/{bad}/recommendations"))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_id",
        )
        .await;
    }
    // A seeded product with no orders: four of its own category, never itself.
    let product = app.get_ok_json("/api/v1/products/1").await;
    let recommended = app.get_ok_json("/api/v1/products/1/recommendations").await;
    let items = recommended["items"].as_array().expect("items");
    assert_eq!(items.len(), 4, "{recommended}");
    for item in items {
        assert_ne!(item["id"], 1);
        assert_eq!(item["category"], product["category"]);
    }
}
