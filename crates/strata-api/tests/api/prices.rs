//! `POST /api/v1/prices/quote`: tiers, coupons, tax and rounding over HTTP, and bad input.

use reqwest::StatusCode;
use serde_json::{Value, json};
use strata_store::NewProduct;

use crate::helpers::{TestApp, assert_json_error};

backend_tests!(
    quotes_apply_tiers_coupons_and_tax,
    coupons_that_do_not_apply_are_reported,
    quote_input_is_validated,
);

/// Inserts a product with this price and stock; returns its id.
pub async fn add_product(app: &TestApp, sku: &str, price_cents: i64, stock: i64) -> i64 {
    app.store
        .products()
        .insert(&NewProduct {
            sku: sku.into(),
            name: format!("Product {sku}"),
            description: "A product made for a test.".into(),
            category: "test".into(),
            price_cents,
            stock,
        })
        .await
        .expect("insert product")
        .id
}

async fn quote(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/api/v1/prices/quote", body, None).await
}

async fn quote_ok(app: &TestApp, body: &Value) -> Value {
    let response = quote(app, body).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    response.json().await.expect("JSON")
}

async fn quotes_apply_tiers_coupons_and_tax(app: TestApp) {
    let a = add_product(&app, "Q-A", 1_000, 100).await;
    let b = add_product(&app, "Q-B", 333, 100).await;
    let c = add_product(&app, "Q-C", 125, 100).await;
    let body = json!({
        "items": [
            {"product_id": a, "quantity": 2},
            {"product_id": b, "quantity": 5},
            {"product_id": c, "quantity": 10},
        ],
        "coupon": " welcome10 ",
    });
    let q = quote_ok(&app, &body).await;
    // 2000 + (1665 − 83) + (1250 − 125) = 4707; 10 % coupon 471 (470.7, half to even);
    // 19 % tax on 4236 = 804.84 → 805.
    let lines = q["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["product_id"], b);
    assert_eq!(lines[1]["gross_cents"], 1_665);
    assert_eq!(lines[1]["tier_discount_bps"], 500);
    assert_eq!(lines[1]["tier_discount_cents"], 83);
    assert_eq!(lines[1]["total_cents"], 1_582);
    assert_eq!(lines[2]["tier_discount_bps"], 1_000);
    assert_eq!(q["subtotal_cents"], 4_707);
    assert_eq!(q["coupon"]["code"], "WELCOME10");
    assert_eq!(q["coupon"]["applied"], true);
    assert_eq!(q["discount_cents"], 471);
    assert_eq!(q["region"], "EU-DE");
    assert_eq!(q["tax_rate_bps"], 1_900);
    assert_eq!(q["tax_cents"], 805);
    assert_eq!(q["total_cents"], 4_707 - 471 + 805);

    // Another region, no coupon; the same items in another order give the same totals.
    let reordered = json!({
        "items": [
            {"product_id": c, "quantity": 10},
            {"product_id": a, "quantity": 2},
            {"product_id": b, "quantity": 5},
        ],
        "region": "us-ca",
    });
    let us = quote_ok(&app, &reordered).await;
    assert_eq!(us["region"], "US-CA");
    assert!(us.get("coupon").is_none(), "{us}");
    assert_eq!(us["subtotal_cents"], 4_707);
    // 7.25 % of 4707 = 341.2575 → 341.
    assert_eq!(us["tax_cents"], 341);
    assert_eq!(us["total_cents"], 4_707 + 341);

    // A fixed coupon above its minimum.
    let big = json!({"items": [{"product_id": a, "quantity": 3}], "coupon": "SAVE5"});
    let saved = quote_ok(&app, &big).await;
    assert_eq!(saved["discount_cents"], 500);
    assert_eq!(saved["total_cents"], 2_500 + 475);
}

async fn coupons_that_do_not_apply_are_reported(app: TestApp) {
    let a = add_product(&app, "Q-A", 1_000, 100).await;
    let cases = [
        ("NOSUCHCODE", "unknown"),
        ("SUMMER15", "expired"),
        // SAVE5 needs a subtotal of 25.00.
        ("SAVE5", "below_minimum"),
    ];
    for (code, reason) in cases {
        let body = json!({"items": [{"product_id": a, "quantity": 1}], "coupon": code});
        let q = quote_ok(&app, &body).await;
        assert_eq!(q["coupon"]["applied"], false, "{code}: {q}");
        assert_eq!(q["coupon"]["rejection"], reason, "{code}: {q}");
        assert_eq!(q["discount_cents"], 0);
        assert_eq!(q["total_cents"], 1_190);
    }
}

async fn quote_input_is_validated(app: TestApp) {
    let a = add_product(&app, "Q-A", 1_000, 100).await;
    let item = |quantity: Value| json!({"items": [{"product_id": a, "quantity": quantity}]});
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            item(json!(0)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            item(json!(-1)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            item(json!(100)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            item(json!(i64::MAX)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_quantity",
        ),
        (
            item(json!(1e30)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            item(json!(1.5)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            item(json!("2")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            item(json!(null)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"items": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (json!([]), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        (
            json!({"items": [{"product_id": 999_999_999, "quantity": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_product",
        ),
        (
            json!({"items": [{"product_id": -5, "quantity": 1}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_product",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}, {"product_id": a, "quantity": 2}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "duplicate_product",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1, "colour": "red"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "discount": 100}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        // One coupon per order: a list of codes is not a code.
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "coupon": ["WELCOME10", "SAVE5"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "coupon": "x".repeat(900)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "coupon": "DROP TABLE"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "region": "MARS"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_region",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "region": "é".repeat(300)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"items": [{"product_id": a, "quantity": 1}], "region": 49}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let response = quote(&app, &body).await;
        assert!(!response.status().is_server_error(), "{body}");
        assert_json_error(response, status, code).await;
    }

    let url = format!("{}/api/v1/prices/quote", app.base);
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let malformed = raw("{\"items\": [", "application/json")
        .await
        .expect("send");
    assert_json_error(malformed, StatusCode::BAD_REQUEST, "malformed_json").await;
    let text = raw("{}", "text/plain").await.expect("send");
    assert_json_error(
        text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    // More than 50 lines: refused one way or the other (the test body limit is 1 KiB).
    let many: Vec<Value> = (1..=51)
        .map(|id| json!({"product_id": id, "quantity": 1}))
        .collect();
    let response = quote(&app, &json!({"items": many})).await;
    assert!(response.status().is_client_error(), "{}", response.status());
}
