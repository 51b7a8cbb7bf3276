//! The OpenAPI document and the server agree, case by case: what the document allows is
//! accepted, what it refuses is refused, and every limit the server enforces is declared.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_json_error};

backend_tests!(
    every_int64_id_is_an_id,
    empty_filters_are_no_filters,
    quote_items_must_not_be_empty_and_the_document_says_so,
    whole_number_quantities_are_integers,
    pages_stay_within_int32,
    every_error_of_cart_deletes_is_documented,
    limits_in_the_document_are_the_enforced_ones,
);

async fn every_int64_id_is_an_id(app: TestApp) {
    let admin = app.admin_token().await;
    // The largest int64: a well-formed id no product, order or account has.
    let max = i64::MAX;
    let response = app.get(&format!("/api/v1/products/{max}")).await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app.get_as(&format!("/api/v1/orders/{max}"), &admin).await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = app
        .patch_json(
            &format!("/api/v1/users/{max}/role"),
            &json!({"role": "support"}),
            Some(&admin),
        )
        .await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    // One more is beyond int64: malformed.
    let response = app.get("/api/v1/products/9223372036854775808").await;
    assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;
}

async fn empty_filters_are_no_filters(app: TestApp) {
    let all = app.get_ok_json("/api/v1/products").await;
    let empty = app.get_ok_json("/api/v1/products?category=&q=").await;
    assert_eq!(empty["total"], all["total"]);
    assert!(all["total"].as_i64().expect("total") > 0);
    // An empty region or coupon prices as if absent: the default region, no coupon.
    let (_, token) = app.customer().await;
    let plain = app.get_as("/api/v1/cart", &token).await;
    assert_eq!(plain.status(), StatusCode::OK);
    let plain: Value = plain.json().await.expect("JSON");
    let response = app.get_as("/api/v1/cart?region=&coupon=", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let empty: Value = response.json().await.expect("JSON");
    assert_eq!(empty["quote"], plain["quote"]);
    let body = json!({"items": [{"product_id": 1, "quantity": 1}], "region": "", "coupon": ""});
    let response = app.post_json("/api/v1/prices/quote", &body, None).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn quote_items_must_not_be_empty_and_the_document_says_so(app: TestApp) {
    let response = app
        .post_json("/api/v1/prices/quote", &json!({"items": []}), None)
        .await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let doc = app.get_ok_json("/openapi.json").await;
    let items = &doc["components"]["schemas"]["QuoteRequest"]["properties"]["items"];
    assert_eq!(items["minItems"], 1, "{items}");
    assert_eq!(items["maxItems"], 50, "{items}");
}

async fn whole_number_quantities_are_integers(app: TestApp) {
    // JSON Schema's `integer` includes 62.0: accepted as 62.
    let body = json!({"items": [{"product_id": 1.0, "quantity": 62.0}]});
    let response = app.post_json("/api/v1/prices/quote", &body, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let quote: Value = response.json().await.expect("JSON");
    assert_eq!(quote["lines"][0]["quantity"], 62, "{quote}");
    let response = app
        .post_json(
            "/api/v1/cart/items",
            &json!({"product_id": 1, "quantity": 2.0}),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A fraction is not an integer.
    let body = json!({"items": [{"product_id": 1, "quantity": 62.5}]});
    let response = app.post_json("/api/v1/prices/quote", &body, None).await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
}

async fn pages_stay_within_int32(app: TestApp) {
    let (_, token) = app.customer().await;
    for path in [
        "/api/v1/products?page=2147483648",
        "/api/v1/orders?page=2147483648",
        "/api/v1/notifications?page=2147483648",
    ] {
        let response = app.get_as(path, &token).await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    for path in [
        "/api/v1/products?page=2147483647",
        "/api/v1/orders?page=2147483647",
        "/api/v1/notifications?page=2147483647",
    ] {
        let response = app.get_as(path, &token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let doc = app.get_ok_json("/openapi.json").await;
    for (path, method) in [
        ("/api/v1/products", "get"),
        ("/api/v1/orders", "get"),
        ("/api/v1/notifications", "get"),
    ] {
        let params = doc["paths"][path][method]["parameters"]
            .as_array()
            .expect("parameters");
        let page = params.iter().find(|p| p["name"] == "page").expect("page");
        assert_eq!(page["schema"]["maximum"], 2_147_483_647, "{path}: {page}");
        assert_eq!(page["schema"]["minimum"], 1, "{path}: {page}");
    }
}

async fn every_error_of_cart_deletes_is_documented(app: TestApp) {
    let (_, token) = app.customer().await;
    let line = json!({"product_id": 1, "quantity": 1});
    let response = app
        .post_json("/api/v1/cart/items", &line, Some(&token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // A region the shop does not tax: the cart cannot be priced as asked.
    let response = app
        .send(
            Method::DELETE,
            "/api/v1/cart/items/1?region=NARNIA",
            Some(&token),
            None,
        )
        .await;
    let status = response.status();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let doc = app.get_ok_json("/openapi.json").await;
    let responses = &doc["paths"]["/api/v1/cart/items/{product_id}"]["delete"]["responses"];
    assert!(
        responses.get(status.as_str()).is_some(),
        "{status} is not documented: {responses}"
    );
}

async fn limits_in_the_document_are_the_enforced_ones(app: TestApp) {
    let doc = app.get_ok_json("/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let quantity = &schemas["AddItemRequest"]["properties"]["quantity"];
    assert_eq!(
        (&quantity["minimum"], &quantity["maximum"]),
        (&json!(1), &json!(99))
    );
    let quantity = &schemas["SetItemRequest"]["properties"]["quantity"];
    assert_eq!(
        (&quantity["minimum"], &quantity["maximum"]),
        (&json!(0), &json!(99))
    );
    let stock = &schemas["NewProductRequest"]["properties"]["stock"];
    assert_eq!(stock["maximum"], 1_000_000_000);
    let admin = app.admin_token().await;
    let product = json!({
        "sku": "LIMIT-1", "name": "Limit", "category": "home",
        "price_cents": 1, "stock": 1_000_000_001_i64
    });
    let response = app
        .post_json("/api/v1/products", &product, Some(&admin))
        .await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
}
