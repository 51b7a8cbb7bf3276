//! Checkout and orders over HTTP: what a checkout writes, idempotency (also under concurrent
//! replays), no overselling under 200 concurrent buyers, authorization, and bad input.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use strata_api::auth::{AuthUser, Role, Tokens};
use strata_store::{
    Applied, NewNotification, NewUser, ORDER_PLACED, OrderPlaced, OrderStatus, Transition, UserRole,
};

use crate::helpers::{JWT_SECRET, KEY_ID, TestApp, assert_json_error};
use crate::prices::add_product;

backend_tests!(
    carts:
    checkout_places_an_order_and_empties_the_cart,
    checkout_needs_a_token_and_an_idempotency_key,
    replays_return_the_same_order,
    concurrent_replays_make_one_order,
    two_hundred_buyers_fifty_in_stock,
    orders_are_private_to_their_owner,
    admins_list_every_order_by_status,
    refused_checkouts_reserve_nothing,
    coupons_and_regions_price_the_order,
    checkout_and_order_input_is_validated,
    notifications_are_private_and_paged,
);

/// Users inserted straight into the store with tokens signed by the test key: quick enough for
/// hundreds of buyers (registration hashes a password each time).
pub async fn mint_customers(app: &TestApp, count: usize) -> Vec<(i64, String)> {
    let tokens =
        Tokens::new(JWT_SECRET.as_bytes(), KEY_ID, Duration::from_secs(3600)).expect("test keys");
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let email = format!("m-{}@example.com", uuid::Uuid::new_v4().simple());
        let user = app
            .store
            .users()
            .insert(&NewUser {
                email: email.clone(),
                display_name: "Minted".into(),
                password_hash: "unused".into(),
                role: UserRole::Customer,
            })
            .await
            .expect("insert user");
        let issued = tokens
            .issue(&AuthUser {
                id: user.id,
                email,
                role: Role::Customer,
            })
            .expect("sign");
        out.push((user.id, issued.token));
    }
    out
}

/// `POST /api/v1/orders` with a token, an optional key and an optional JSON body.
pub async fn checkout(
    app: &TestApp,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut request = app.client.post(format!("{}/api/v1/orders", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("send")
}

/// Adds a product to the caller's cart over HTTP, expecting success.
pub async fn add_to_cart(app: &TestApp, token: &str, product_id: i64, quantity: i64) {
    let body = json!({"product_id": product_id, "quantity": quantity});
    let response = app
        .post_json("/api/v1/cart/items", &body, Some(token))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "add {product_id} × {quantity}"
    );
}

async fn stock(app: &TestApp, id: i64) -> i64 {
    app.store
        .products()
        .get(id)
        .await
        .expect("read")
        .expect("product")
        .stock
}

async fn json_of(response: Response) -> Value {
    response.json().await.expect("JSON")
}

async fn checkout_places_an_order_and_empties_the_cart(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_999, 10).await;
    let desk = add_product(&app, "O-DESK", 9_999, 3).await;
    add_to_cart(&app, &token, lamp, 5).await;
    add_to_cart(&app, &token, desk, 1).await;
    let cart = json_of(app.get_as("/api/v1/cart", &token).await).await;

    let response = checkout(&app, Some(&token), Some("first"), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    let order = json_of(response).await;
    let id = order["id"].as_i64().expect("id");
    assert_eq!(location, format!("/api/v1/orders/{id}"));
    assert_eq!(order["status"], "placed");
    assert_eq!(order["history"][0]["status"], "placed");
    assert_eq!(order["history"].as_array().expect("history").len(), 1);
    let lines = order["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["product_id"], lamp);
    assert_eq!(lines[0]["sku"], "O-LAMP");
    assert_eq!(lines[0]["quantity"], 5);
    assert_eq!(lines[0]["unit_price_cents"], 1_999);
    // The cart's quote is exactly what the order charges.
    for key in [
        "subtotal_cents",
        "discount_cents",
        "tax_cents",
        "total_cents",
    ] {
        assert_eq!(order[key], cart["quote"][key], "{key}");
    }
    assert_eq!(
        lines[0]["discount_cents"],
        cart["quote"]["lines"][0]["tier_discount_cents"]
    );

    assert_eq!((stock(&app, lamp).await, stock(&app, desk).await), (5, 2));
    let cart = json_of(app.get_as("/api/v1/cart", &token).await).await;
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["quote"]["total_cents"], 0);

    let fetched = json_of(app.get_as(&format!("/api/v1/orders/{id}"), &token).await).await;
    assert_eq!(fetched, order);
    let list = json_of(app.get_as("/api/v1/orders", &token).await).await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0], order);

    let events = app
        .store
        .outbox()
        .by_topic(ORDER_PLACED)
        .await
        .expect("outbox");
    assert_eq!(events.len(), 1);
    let event: OrderPlaced = serde_json::from_str(&events[0].payload).expect("payload");
    assert_eq!(event.order_id, id);
    assert_eq!(Some(event.total_cents), order["total_cents"].as_i64());
}

async fn checkout_needs_a_token_and_an_idempotency_key(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_000, 10).await;
    add_to_cart(&app, &token, lamp, 1).await;

    let response = checkout(&app, None, Some("k"), None).await;
    assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = checkout(&app, Some("not.a.jwt"), Some("k"), None).await;
    assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = checkout(&app, Some(&token), None, None).await;
    assert_json_error(
        response,
        StatusCode::BAD_REQUEST,
        "idempotency_key_required",
    )
    .await;
    let long = "k".repeat(129);
    for bad in ["", "   ", long.as_str()] {
        let response = checkout(&app, Some(&token), Some(bad), None).await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    }
    let response = app
        .client
        .post(format!("{}/api/v1/orders", app.base))
        .bearer_auth(&token)
        .header("idempotency-key", &b"caf\xe9"[..])
        .send()
        .await
        .expect("send");
    assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    assert_eq!(stock(&app, lamp).await, 10, "nothing was reserved");
    let longest = "k".repeat(128);
    let response = checkout(&app, Some(&token), Some(&longest), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn replays_return_the_same_order(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_000, 10).await;
    add_to_cart(&app, &token, lamp, 2).await;
    let body = json!({"region": "eu-fr"});
    let first = checkout(&app, Some(&token), Some("replay-me"), Some(&body)).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = json_of(first).await;

    // The same body, spelled differently (case, spacing), is the same request.
    let same = json!({"region": " EU-FR "});
    let again = checkout(&app, Some(&token), Some("replay-me"), Some(&same)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(json_of(again).await, first);
    assert_eq!(stock(&app, lamp).await, 8, "reserved once");

    let other = json!({"region": "EU-DE"});
    let reused = checkout(&app, Some(&token), Some("replay-me"), Some(&other)).await;
    assert_json_error(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    let no_body = checkout(&app, Some(&token), Some("replay-me"), None).await;
    assert_json_error(
        no_body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.store.orders().count().await.expect("count"), 1);
}

async fn concurrent_replays_make_one_order(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_000, 10).await;
    add_to_cart(&app, &token, lamp, 3).await;
    let body = json!({"coupon": "WELCOME10"});
    let replays = (0..10).map(|_| checkout(&app, Some(&token), Some("ten-times"), Some(&body)));
    let responses = futures_util::future::join_all(replays).await;
    let mut created = 0;
    let mut ids = Vec::new();
    for response in responses {
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!(
                "unexpected {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
        ids.push(json_of(response).await["id"].as_i64().expect("id"));
    }
    assert_eq!(created, 1, "exactly one checkout placed the order");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.store.orders().count().await.expect("count"), 1);
    assert_eq!(stock(&app, lamp).await, 7);

    let different = json!({"coupon": "SAVE5"});
    let reused = checkout(&app, Some(&token), Some("ten-times"), Some(&different)).await;
    assert_json_error(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
}

async fn two_hundred_buyers_fifty_in_stock(app: TestApp) {
    let lamp = add_product(&app, "O-SCARCE", 4_999, 50).await;
    let buyers = mint_customers(&app, 200).await;
    // Filled over HTTP, so the carts are where the app keeps them (store or instance).
    for (_, token) in &buyers {
        add_to_cart(&app, token, lamp, 1).await;
    }
    let attempts = buyers
        .iter()
        .map(|(_, token)| checkout(&app, Some(token), Some("buy"), None));
    let responses = futures_util::future::join_all(attempts).await;
    let mut placed = Vec::new();
    let mut sold_out = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => placed.push(json_of(response).await["id"].as_i64()),
            StatusCode::CONFLICT => {
                let message =
                    assert_json_error(response, StatusCode::CONFLICT, "out_of_stock").await;
                assert!(message.contains("Product O-SCARCE"), "{message}");
                sold_out += 1;
            }
            other => panic!(
                "unexpected {other}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }
    assert_eq!((placed.len(), sold_out), (50, 150));
    assert_eq!(stock(&app, lamp).await, 0);
    assert_eq!(app.store.orders().count().await.expect("count"), 50);
    let unsent = app.store.outbox().unsent(500).await.expect("outbox");
    assert_eq!(unsent.len(), 50, "one event per order");
    // The losers keep their carts (nothing was taken from them).
    let mut kept = 0;
    for (_, token) in &buyers {
        let cart = json_of(app.get_as("/api/v1/cart", token).await).await;
        kept += cart["items"].as_array().expect("items").len();
    }
    assert_eq!(kept, 150);
}

async fn orders_are_private_to_their_owner(app: TestApp) {
    let (_, alice) = app.customer().await;
    let (_, bob) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_000, 10).await;
    add_to_cart(&app, &alice, lamp, 1).await;
    let order = json_of(checkout(&app, Some(&alice), Some("a1"), None).await).await;
    let path = format!("/api/v1/orders/{}", order["id"]);

    assert_json_error(
        app.get_as(&path, &bob).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let bobs = json_of(app.get_as("/api/v1/orders", &bob).await).await;
    assert_eq!(
        (bobs["total"].clone(), bobs["items"].clone()),
        (json!(0), json!([]))
    );
    // Bob's cart is his own: Alice's (now empty) cart and Bob's do not mix.
    add_to_cart(&app, &bob, lamp, 2).await;
    let alices_cart = json_of(app.get_as("/api/v1/cart", &alice).await).await;
    assert_eq!(alices_cart["items"], json!([]));

    let admin = app.admin_token().await;
    assert_eq!(json_of(app.get_as(&path, &admin).await).await, order);

    for unauthenticated in ["/api/v1/orders", path.as_str()] {
        assert_json_error(
            app.get(unauthenticated).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    let tampered = format!("{alice}x");
    assert_json_error(
        app.get_as(&path, &tampered).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_json_error(
        app.get_as("/api/v1/orders/999999999", &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// `GET /api/v1/orders?scope=all`: every customer's orders for admins, filtered by status as
/// anyone's own list is; a 403 for everyone else.
async fn admins_list_every_order_by_status(app: TestApp) {
    let (_, alice) = app.customer().await;
    let (_, bob) = app.customer().await;
    let lamp = add_product(&app, "S-LAMP", 1_000, 10).await;
    let mut ids = Vec::new();
    for (n, token) in [&alice, &bob, &alice].into_iter().enumerate() {
        add_to_cart(&app, token, lamp, 1).await;
        let order = json_of(checkout(&app, Some(token), Some(&format!("s{n}")), None).await).await;
        ids.push(order["id"].as_i64().expect("id"));
    }
    // Bob's order is paid; Alice's two are still placed.
    let paid = app
        .store
        .orders()
        .advance(Transition {
            handler: "payment",
            event_id: 1,
            order_id: ids[1],
            from: OrderStatus::Placed,
            to: OrderStatus::Paid,
            traceparent: None,
        })
        .await
        .expect("pay");
    assert_eq!(paid, Applied::Done);
    let listed = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["id"].as_i64().expect("id"))
            .collect()
    };

    let admin = app.admin_token().await;
    let all = json_of(app.get_as("/api/v1/orders?scope=all", &admin).await).await;
    assert_eq!(
        listed(&all),
        [ids[2], ids[1], ids[0]],
        "newest first: {all}"
    );
    assert_eq!(all["total"], 3);
    let paid = json_of(
        app.get_as("/api/v1/orders?scope=all&status=paid", &admin)
            .await,
    )
    .await;
    assert_eq!(listed(&paid), [ids[1]], "{paid}");
    assert_eq!(paid["items"][0]["status"], "paid");
    let placed = json_of(
        app.get_as(
            "/api/v1/orders?scope=all&status=placed&per_page=1&page=2",
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(
        (listed(&placed), placed["total"].clone()),
        (vec![ids[0]], json!(2))
    );
    // The admin's own list is the admin's: empty.
    let mine = json_of(app.get_as("/api/v1/orders?scope=mine", &admin).await).await;
    assert_eq!(mine["total"], 0, "{mine}");

    // A customer filters their own orders; the form for all orders is refused.
    let alices = json_of(app.get_as("/api/v1/orders?status=placed", &alice).await).await;
    assert_eq!(listed(&alices), [ids[2], ids[0]]);
    let none = json_of(app.get_as("/api/v1/orders?status=paid", &alice).await).await;
    assert_eq!(none["total"], 0);
    assert_json_error(
        app.get_as("/api/v1/orders?scope=all", &bob).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for bad in ["scope=everyone", "status=lost", "status=Paid"] {
        assert_json_error(
            app.get_as(&format!("/api/v1/orders?{bad}"), &admin).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        )
        .await;
    }
}

async fn refused_checkouts_reserve_nothing(app: TestApp) {
    let (_, token) = app.customer().await;
    let response = checkout(&app, Some(&token), Some("empty"), None).await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "empty_cart").await;

    let plenty = add_product(&app, "O-PLENTY", 1_000, 10).await;
    let scarce = add_product(&app, "O-SCARCE", 1_000, 1).await;
    add_to_cart(&app, &token, plenty, 3).await;
    add_to_cart(&app, &token, scarce, 2).await;
    let response = checkout(&app, Some(&token), Some("k"), None).await;
    let message = assert_json_error(response, StatusCode::CONFLICT, "out_of_stock").await;
    assert!(message.contains("Product O-SCARCE"), "{message}");
    assert_eq!(
        (stock(&app, plenty).await, stock(&app, scarce).await),
        (10, 1)
    );

    let expired = json!({"coupon": "SUMMER15"});
    let response = checkout(&app, Some(&token), Some("k"), Some(&expired)).await;
    // Stock is checked first; fix the cart to see the coupon refused.
    assert_json_error(response, StatusCode::CONFLICT, "out_of_stock").await;
    let fix = json!({"quantity": 1});
    let response = app
        .patch_json(&format!("/api/v1/cart/items/{scarce}"), &fix, Some(&token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = checkout(&app, Some(&token), Some("k2"), Some(&expired)).await;
    let message = assert_json_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "coupon_rejected",
    )
    .await;
    assert!(message.contains("expired"), "{message}");
    let unknown = json!({"region": "ATLANTIS"});
    let response = checkout(&app, Some(&token), Some("k3"), Some(&unknown)).await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "unknown_region").await;

    assert_eq!(
        (stock(&app, plenty).await, stock(&app, scarce).await),
        (10, 1)
    );
    let cart = json_of(app.get_as("/api/v1/cart", &token).await).await;
    assert_eq!(
        cart["items"].as_array().expect("items").len(),
        2,
        "the cart is kept"
    );
    assert_eq!(app.store.orders().count().await.expect("count"), 0);
    // The refused keys were not used up.
    let response = checkout(&app, Some(&token), Some("k2"), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn coupons_and_regions_price_the_order(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_000, 100).await;
    add_to_cart(&app, &token, lamp, 12).await;
    let quote = json_of(
        app.post_json(
            "/api/v1/prices/quote",
            &json!({"items": [{"product_id": lamp, "quantity": 12}], "coupon": "BIG20", "region": "UK"}),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(
        quote["coupon"]["applied"], false,
        "12 × 9.00 is below BIG20's 200.00"
    );
    let body = json!({"coupon": "welcome10", "region": "uk"});
    let order = json_of(checkout(&app, Some(&token), Some("k"), Some(&body)).await).await;
    // 12 000 − 10 % tier = 10 800; coupon 1 080; UK 20 % of 9 720 = 1 944.
    assert_eq!(order["subtotal_cents"], 10_800);
    assert_eq!(order["coupon_code"], "WELCOME10");
    assert_eq!(order["discount_cents"], 1_080);
    assert_eq!(order["region"], "UK");
    assert_eq!(order["tax_rate_bps"], 2_000);
    assert_eq!(order["tax_cents"], 1_944);
    assert_eq!(order["total_cents"], 10_800 - 1_080 + 1_944);
    assert_eq!(order["lines"][0]["discount_cents"], 1_200);
    assert_eq!(order["lines"][0]["total_cents"], 10_800);
}

async fn checkout_and_order_input_is_validated(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "O-LAMP", 1_000, 10).await;
    add_to_cart(&app, &token, lamp, 1).await;
    let url = format!("{}/api/v1/orders", app.base);
    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("idempotency-key", "bad-input")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let cases: &[(&str, &str, StatusCode, &str)] = &[
        (
            "{\"coupon\": ",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "not json",
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "{\"coupon\": 5}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "{\"coupons\": [\"A\", \"B\"]}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "{\"coupon\": [\"A\", \"B\"]}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "{\"items\": []}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "[]",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "{\"region\": \"EU DE\"}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "{\"coupon\": \"no spaces allowed\"}",
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "{}",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let response = raw(body, content_type).await.expect("send");
        assert!(!response.status().is_server_error(), "{body}");
        assert_json_error(response, *status, code).await;
    }
    let huge = json!({"coupon": "C".repeat(900)});
    let response = checkout(&app, Some(&token), Some("huge"), Some(&huge)).await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    let over = json!({"coupon": "C".repeat(2_000)});
    let response = checkout(&app, Some(&token), Some("over"), Some(&over)).await;
    assert_json_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(stock(&app, lamp).await, 10);

    for query in [
        "page=0",
        "per_page=101",
        "page=-1",
        "page=abc",
        "sort=new",
        "page=99999999999",
    ] {
        let response = app.get_as(&format!("/api/v1/orders?{query}"), &token).await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    for id in ["abc", "0", "-1", "1.5", "99999999999999999999"] {
        let response = app.get_as(&format!("/api/v1/orders/{id}"), &token).await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;
    }
    // An empty JSON object is a valid body (the defaults).
    let response = raw("{}", "application/json").await.expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// What the worker writes (status changes, notifications) shows through the api: the order's
/// history, and the caller's own notifications, newest first, paged; nobody else's.
async fn notifications_are_private_and_paged(app: TestApp) {
    let (alice_id, alice) = mint_customers(&app, 1).await.remove(0);
    let (_, bob) = mint_customers(&app, 1).await.remove(0);
    let lamp = add_product(&app, "N-LAMP", 1_000, 10).await;
    add_to_cart(&app, &alice, lamp, 1).await;
    let order = json_of(checkout(&app, Some(&alice), Some("n1"), None).await).await;
    let order_id = order["id"].as_i64().expect("order id");

    // As the worker's handlers would: pay the order, notify twice.
    let paid = app
        .store
        .orders()
        .advance(Transition {
            handler: "payment",
            event_id: 1,
            order_id,
            from: OrderStatus::Placed,
            to: OrderStatus::Paid,
            traceparent: None,
        })
        .await
        .expect("pay");
    assert_eq!(paid, Applied::Done);
    for (event_id, kind) in [(1, OrderStatus::Placed), (2, OrderStatus::Paid)] {
        let recorded = app
            .store
            .notifications()
            .record(NewNotification {
                handler: "notifications",
                event_id,
                user_id: alice_id,
                order_id,
                kind,
                message: "moved",
                at: time::OffsetDateTime::now_utc() + time::Duration::seconds(event_id),
            })
            .await
            .expect("notify");
        assert_eq!(recorded, Applied::Done);
    }
    let order = json_of(
        app.get_as(&format!("/api/v1/orders/{order_id}"), &alice)
            .await,
    )
    .await;
    assert_eq!(order["status"], "paid");
    assert_eq!(order["history"][1]["status"], "paid");

    let page = json_of(app.get_as("/api/v1/notifications?per_page=1", &alice).await).await;
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["kind"], "paid", "newest first");
    assert_eq!(page["items"][0]["order_id"], order_id);
    let second = json_of(
        app.get_as("/api/v1/notifications?page=2&per_page=1", &alice)
            .await,
    )
    .await;
    assert_eq!(second["items"][0]["kind"], "placed");
    let bobs = json_of(app.get_as("/api/v1/notifications", &bob).await).await;
    assert_eq!(
        (bobs["total"].clone(), bobs["items"].clone()),
        (json!(0), json!([]))
    );

    assert_json_error(
        app.get("/api/v1/notifications").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    for bad in ["page=0", "per_page=101", "per_page=x", "color=red"] {
        let response = app
            .get_as(&format!("/api/v1/notifications?{bad}"), &alice)
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}
