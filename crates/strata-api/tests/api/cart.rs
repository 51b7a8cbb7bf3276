//! The cart over HTTP: lines by token or anonymous cookie, limits, pricing, the merge of an
//! anonymous cart into the user's, and bad input.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use strata_store::{MAX_CART_LINES, NewProduct};

use crate::helpers::{TestApp, assert_json_error};
use crate::orders::{add_to_cart, checkout};
use crate::prices::add_product;

backend_tests!(
    carts:
    lines_are_added_changed_and_removed,
    cart_limits_and_unknown_products_are_refused,
    anonymous_carts_live_in_a_cookie,
    anonymous_cart_merges_into_the_users_cart,
    anonymous_cart_merges_at_checkout,
    anonymous_cart_merges_at_log_in,
    cached_cart_shows_every_write,
    carts_are_per_caller,
    cart_input_is_validated,
);

/// A cart request with an optional token, cookie and JSON body.
async fn cart_request(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    cookie: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("theme=dark; strata_cart={cookie}"));
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("send")
}

/// The `strata_cart` `Set-Cookie` header of a response, if any.
fn set_cookie(response: &Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("strata_cart="))
        .map(str::to_owned)
}

/// The token a `Set-Cookie: strata_cart=…` header sets.
fn cookie_value(header: &str) -> String {
    header
        .trim_start_matches("strata_cart=")
        .split(';')
        .next()
        .expect("value")
        .to_owned()
}

async fn ok_json(response: Response) -> Value {
    assert_eq!(response.status(), StatusCode::OK, "{}", response.url());
    response.json().await.expect("JSON")
}

fn quantities(cart: &Value) -> Vec<(i64, i64)> {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["product_id"].as_i64().expect("id"),
                l["quantity"].as_i64().expect("quantity"),
            )
        })
        .collect()
}

async fn lines_are_added_changed_and_removed(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let desk = add_product(&app, "C-DESK", 333, 10).await;
    let t = Some(token.as_str());

    let empty = ok_json(cart_request(&app, Method::GET, "/api/v1/cart", t, None, None).await).await;
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["quote"]["total_cents"], 0);

    let add = |id: i64, q: i64| json!({"product_id": id, "quantity": q});
    let items = "/api/v1/cart/items";
    ok_json(cart_request(&app, Method::POST, items, t, None, Some(&add(lamp, 2))).await).await;
    ok_json(cart_request(&app, Method::POST, items, t, None, Some(&add(desk, 4))).await).await;
    let cart =
        ok_json(cart_request(&app, Method::POST, items, t, None, Some(&add(desk, 1))).await).await;
    assert_eq!(quantities(&cart), [(lamp, 2), (desk, 5)]);
    assert_eq!(cart["items"][1]["sku"], "C-DESK");
    assert_eq!(cart["items"][1]["unit_price_cents"], 333);
    // The cart is priced by the quote function: the same body gives the same numbers.
    let quote = ok_json(
        app.post_json(
            "/api/v1/prices/quote",
            &json!({"items": [{"product_id": lamp, "quantity": 2}, {"product_id": desk, "quantity": 5}]}),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(cart["quote"], quote);
    assert_eq!(cart["quote"]["lines"][1]["tier_discount_bps"], 500);

    // Priced for a region and with a coupon on request.
    let priced = ok_json(
        cart_request(
            &app,
            Method::GET,
            "/api/v1/cart?region=US-OR&coupon=welcome10",
            t,
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(priced["quote"]["tax_cents"], 0);
    assert_eq!(priced["quote"]["coupon"]["applied"], true);

    let line = format!("/api/v1/cart/items/{desk}");
    let cart = ok_json(
        cart_request(
            &app,
            Method::PATCH,
            &line,
            t,
            None,
            Some(&json!({"quantity": 9})),
        )
        .await,
    )
    .await;
    assert_eq!(quantities(&cart), [(lamp, 2), (desk, 9)]);
    let cart = ok_json(
        cart_request(
            &app,
            Method::PATCH,
            &line,
            t,
            None,
            Some(&json!({"quantity": 0})),
        )
        .await,
    )
    .await;
    assert_eq!(quantities(&cart), [(lamp, 2)]);
    let response = cart_request(&app, Method::DELETE, &line, t, None, None).await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_in_cart").await;
    let cart = ok_json(
        cart_request(
            &app,
            Method::DELETE,
            &format!("/api/v1/cart/items/{lamp}"),
            t,
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(cart["items"], json!([]));
    let response = cart_request(
        &app,
        Method::PATCH,
        &line,
        t,
        None,
        Some(&json!({"quantity": 1})),
    )
    .await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_in_cart").await;
}

async fn cart_limits_and_unknown_products_are_refused(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let t = Some(token.as_str());
    let items = "/api/v1/cart/items";
    let post =
        async |body: Value| cart_request(&app, Method::POST, items, t, None, Some(&body)).await;

    let too_many = post(json!({"product_id": lamp, "quantity": 100})).await;
    assert_json_error(too_many, StatusCode::UNPROCESSABLE_ENTITY, "cart_limit").await;
    ok_json(post(json!({"product_id": lamp, "quantity": 99})).await).await;
    let one_more = post(json!({"product_id": lamp, "quantity": 1})).await;
    let message = assert_json_error(one_more, StatusCode::UNPROCESSABLE_ENTITY, "cart_limit").await;
    assert!(message.contains("100"), "{message}");
    let patch = cart_request(
        &app,
        Method::PATCH,
        &format!("{items}/{lamp}"),
        t,
        None,
        Some(&json!({"quantity": 100})),
    )
    .await;
    assert_json_error(patch, StatusCode::UNPROCESSABLE_ENTITY, "cart_limit").await;

    let unknown = post(json!({"product_id": 999_999_999, "quantity": 1})).await;
    assert_json_error(unknown, StatusCode::UNPROCESSABLE_ENTITY, "unknown_product").await;
    let negative_id = post(json!({"product_id": -3, "quantity": 1})).await;
    assert_json_error(
        negative_id,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_product",
    )
    .await;

    for n in 1..MAX_CART_LINES {
        let id = app
            .store
            .products()
            .insert(&NewProduct {
                sku: format!("C-MANY-{n}"),
                name: format!("Many {n}"),
                description: String::new(),
                category: "test".into(),
                price_cents: 100,
                stock: 5,
            })
            .await
            .expect("insert")
            .id;
        add_to_cart(&app, &token, id, 1).await;
    }
    let fifty_first = add_product(&app, "C-51", 100, 5).await;
    let full = post(json!({"product_id": fifty_first, "quantity": 1})).await;
    let message = assert_json_error(full, StatusCode::UNPROCESSABLE_ENTITY, "cart_limit").await;
    assert!(message.contains("50"), "{message}");
    let cart = ok_json(cart_request(&app, Method::GET, "/api/v1/cart", t, None, None).await).await;
    assert_eq!(
        cart["items"].as_array().expect("items").len(),
        MAX_CART_LINES
    );
}

async fn anonymous_carts_live_in_a_cookie(app: TestApp) {
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let items = "/api/v1/cart/items";
    let add = json!({"product_id": lamp, "quantity": 2});

    // Reading sets nothing; the first write sets the cookie.
    let read = cart_request(&app, Method::GET, "/api/v1/cart", None, None, None).await;
    assert!(set_cookie(&read).is_none());
    assert_eq!(ok_json(read).await["items"], json!([]));
    let first = cart_request(&app, Method::POST, items, None, None, Some(&add)).await;
    let header = set_cookie(&first).expect("Set-Cookie on the first write");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/;"] {
        assert!(header.contains(attribute), "{header}");
    }
    let token = cookie_value(&header);
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(quantities(&ok_json(first).await), [(lamp, 2)]);

    let second = cart_request(&app, Method::POST, items, None, Some(&token), Some(&add)).await;
    assert!(set_cookie(&second).is_none(), "the cookie is kept");
    assert_eq!(quantities(&ok_json(second).await), [(lamp, 4)]);
    let cart =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", None, Some(&token), None).await)
            .await;
    assert_eq!(quantities(&cart), [(lamp, 4)]);
    let line = format!("/api/v1/cart/items/{lamp}");
    let cart = ok_json(
        cart_request(
            &app,
            Method::PATCH,
            &line,
            None,
            Some(&token),
            Some(&json!({"quantity": 1})),
        )
        .await,
    )
    .await;
    assert_eq!(quantities(&cart), [(lamp, 1)]);

    // Another visitor (no cookie, or a made-up one) sees none of it and gets a fresh token.
    let stranger = cart_request(&app, Method::GET, "/api/v1/cart", None, None, None).await;
    assert_eq!(ok_json(stranger).await["items"], json!([]));
    let forged = "0123456789abcdef0123456789abcdef";
    let read = cart_request(&app, Method::GET, "/api/v1/cart", None, Some(forged), None).await;
    assert_eq!(ok_json(read).await["items"], json!([]));
    let write = cart_request(&app, Method::POST, items, None, Some(forged), Some(&add)).await;
    let fresh = cookie_value(&set_cookie(&write).expect("a fresh cookie"));
    assert_ne!(fresh, forged, "a client never picks its own cart token");
    let patch = cart_request(
        &app,
        Method::PATCH,
        &line,
        None,
        Some(forged),
        Some(&json!({"quantity": 3})),
    )
    .await;
    assert_json_error(patch, StatusCode::NOT_FOUND, "not_in_cart").await;
    // A malformed cookie is ignored.
    let junk = cart_request(
        &app,
        Method::GET,
        "/api/v1/cart",
        None,
        Some("../../etc"),
        None,
    )
    .await;
    assert_eq!(ok_json(junk).await["items"], json!([]));

    // Checkout needs an account.
    let response = app
        .client
        .post(format!("{}/api/v1/orders", app.base))
        .header("cookie", format!("strata_cart={token}"))
        .header("idempotency-key", "anon")
        .send()
        .await
        .expect("send");
    assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn anonymous_cart_merges_into_the_users_cart(app: TestApp) {
    let (_, user) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let desk = add_product(&app, "C-DESK", 2_000, 10).await;
    let chair = add_product(&app, "C-CHAIR", 3_000, 10).await;
    let items = "/api/v1/cart/items";
    add_to_cart(&app, &user, lamp, 1).await;
    add_to_cart(&app, &user, chair, 98).await;
    let anon = cart_request(
        &app,
        Method::POST,
        items,
        None,
        None,
        Some(&json!({"product_id": lamp, "quantity": 2})),
    )
    .await;
    let cookie = cookie_value(&set_cookie(&anon).expect("cookie"));
    for (id, q) in [(desk, 1), (chair, 5)] {
        let body = json!({"product_id": id, "quantity": q});
        ok_json(cart_request(&app, Method::POST, items, None, Some(&cookie), Some(&body)).await)
            .await;
    }

    // The first authenticated request with the cookie merges, then clears the cookie.
    let merged = cart_request(
        &app,
        Method::GET,
        "/api/v1/cart",
        Some(&user),
        Some(&cookie),
        None,
    )
    .await;
    let cleared = set_cookie(&merged).expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let cart = ok_json(merged).await;
    // lamp 1 + 2; chair 98 + 5 capped at 99; desk added.
    assert_eq!(quantities(&cart), [(lamp, 3), (chair, 99), (desk, 1)]);

    // The anonymous cart is gone; a replayed cookie merges nothing more.
    let anon =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", None, Some(&cookie), None).await)
            .await;
    assert_eq!(anon["items"], json!([]));
    let again = ok_json(
        cart_request(
            &app,
            Method::GET,
            "/api/v1/cart",
            Some(&user),
            Some(&cookie),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(quantities(&again), [(lamp, 3), (chair, 99), (desk, 1)]);
}

async fn anonymous_cart_merges_at_checkout(app: TestApp) {
    let (_, user) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let anon = cart_request(
        &app,
        Method::POST,
        "/api/v1/cart/items",
        None,
        None,
        Some(&json!({"product_id": lamp, "quantity": 2})),
    )
    .await;
    let cookie = cookie_value(&set_cookie(&anon).expect("cookie"));
    let response = app
        .client
        .post(format!("{}/api/v1/orders", app.base))
        .bearer_auth(&user)
        .header("cookie", format!("strata_cart={cookie}"))
        .header("idempotency-key", "merge-then-buy")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(
        set_cookie(&response)
            .expect("cleared")
            .contains("Max-Age=0")
    );
    let order: Value = response.json().await.expect("JSON");
    assert_eq!(order["lines"][0]["product_id"], lamp);
    assert_eq!(order["lines"][0]["quantity"], 2);
    // Without the cookie, an empty cart cannot be checked out.
    let response = checkout(&app, Some(&user), Some("again"), None).await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "empty_cart").await;
}

async fn carts_are_per_caller(app: TestApp) {
    let (_, alice) = app.customer().await;
    let (_, bob) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    add_to_cart(&app, &alice, lamp, 3).await;

    let bobs =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", Some(&bob), None, None).await)
            .await;
    assert_eq!(bobs["items"], json!([]));
    let line = format!("/api/v1/cart/items/{lamp}");
    let patch = cart_request(
        &app,
        Method::PATCH,
        &line,
        Some(&bob),
        None,
        Some(&json!({"quantity": 1})),
    )
    .await;
    assert_json_error(patch, StatusCode::NOT_FOUND, "not_in_cart").await;
    let delete = cart_request(&app, Method::DELETE, &line, Some(&bob), None, None).await;
    assert_json_error(delete, StatusCode::NOT_FOUND, "not_in_cart").await;
    let alices =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", Some(&alice), None, None).await)
            .await;
    assert_eq!(quantities(&alices), [(lamp, 3)]);
    // An invalid token is refused, not treated as anonymous.
    let response = cart_request(
        &app,
        Method::GET,
        "/api/v1/cart",
        Some("forged.token.here"),
        None,
        None,
    )
    .await;
    assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn cart_input_is_validated(app: TestApp) {
    let (_, token) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let items = format!("{}/api/v1/cart/items", app.base);
    let line = format!("{items}/{lamp}");
    add_to_cart(&app, &token, lamp, 1).await;
    let huge = "x".repeat(900);
    let bodies: Vec<(Method, &str, String, StatusCode, &str)> = vec![
        (
            Method::POST,
            &items,
            "{\"product_id\": ".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            &items,
            "".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}, \"quantity\": \"two\"}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": \"{huge}\", \"quantity\": 1}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}, \"quantity\": 1, \"price_cents\": 1}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}, \"quantity\": 0}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}, \"quantity\": -5}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}, \"quantity\": 99999999999999999}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cart_limit",
        ),
        (
            Method::POST,
            &items,
            format!("{{\"product_id\": {lamp}, \"quantity\": 1e99}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::POST,
            &items,
            "[1, 2]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PATCH,
            &line,
            "{\"quantity\": -1}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            Method::PATCH,
            &line,
            "{\"quantity\": 2.5}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PATCH,
            &line,
            "{\"quantity\": 1, \"product_id\": 2}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PATCH,
            &line,
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Method::PATCH,
            &line,
            "{\"quantity\": ".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
    ];
    for (method, url, body, status, code) in bodies {
        let response = app
            .client
            .request(method.clone(), url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        assert!(!response.status().is_server_error(), "{method} {body}");
        assert_json_error(response, status, code).await;
    }
    let text = app
        .client
        .post(&items)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(format!("{{\"product_id\": {lamp}, \"quantity\": 1}}"))
        .send()
        .await
        .expect("send");
    assert_json_error(
        text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let over = app
        .client
        .post(&items)
        .bearer_auth(&token)
        .json(&json!({"product_id": lamp, "quantity": 1, "pad": "x".repeat(2_000)}))
        .send()
        .await
        .expect("send");
    assert_json_error(over, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    for id in ["abc", "0", "-1", "1.5", "%FF"] {
        let path = format!("/api/v1/cart/items/{id}");
        let response = cart_request(&app, Method::DELETE, &path, Some(&token), None, None).await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;
    }
    for query in [
        "region=%FF%FE",
        "colour=red",
        "region=a&region=b",
        "coupon=has space",
    ] {
        let response = cart_request(
            &app,
            Method::GET,
            &format!("/api/v1/cart?{query}"),
            Some(&token),
            None,
            None,
        )
        .await;
        assert!(
            response.status().is_client_error(),
            "{query}: {}",
            response.status()
        );
        let body: Value = response.json().await.expect("JSON");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
    let response = cart_request(
        &app,
        Method::GET,
        "/api/v1/cart?region=NARNIA",
        Some(&token),
        None,
        None,
    )
    .await;
    assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "unknown_region").await;
    // A malformed pricing query is refused before a write, not after it.
    let writes = [
        (
            Method::POST,
            "/api/v1/cart/items?region=EU%20DE".to_owned(),
            json!({"product_id": lamp, "quantity": 2}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/cart/items/{lamp}?coupon=has%20space"),
            json!({"quantity": 5}),
        ),
    ];
    for (method, path, body) in writes {
        let response = cart_request(&app, method, &path, Some(&token), None, Some(&body)).await;
        assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    }
    // Nothing above changed the cart.
    let cart =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", Some(&token), None, None).await)
            .await;
    assert_eq!(quantities(&cart), [(lamp, 1)]);
}

async fn anonymous_cart_merges_at_log_in(app: TestApp) {
    let (email, user) = app.customer().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let desk = add_product(&app, "C-DESK", 2_000, 10).await;
    add_to_cart(&app, &user, lamp, 1).await;
    // Read (and cache) the user's cart before the merge.
    let before =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", Some(&user), None, None).await)
            .await;
    assert_eq!(quantities(&before), [(lamp, 1)]);
    let anon = cart_request(
        &app,
        Method::POST,
        "/api/v1/cart/items",
        None,
        None,
        Some(&json!({"product_id": lamp, "quantity": 2})),
    )
    .await;
    let cookie = cookie_value(&set_cookie(&anon).expect("cookie"));
    let body = json!({"product_id": desk, "quantity": 4});
    ok_json(
        cart_request(
            &app,
            Method::POST,
            "/api/v1/cart/items",
            None,
            Some(&cookie),
            Some(&body),
        )
        .await,
    )
    .await;

    // Log-in with the cookie merges and clears it.
    let response = app
        .client
        .post(format!("{}/api/v1/sessions", app.base))
        .header("cookie", format!("strata_cart={cookie}"))
        .json(&json!({"email": email, "password": "customer password"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let cleared = set_cookie(&response).expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let session: Value = response.json().await.expect("JSON");
    let token = session["token"].as_str().expect("token");

    // Without the cookie, the user's cart (cached before) already holds the merged lines.
    let cart =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", Some(token), None, None).await)
            .await;
    assert_eq!(quantities(&cart), [(lamp, 3), (desk, 4)]);
    // The anonymous cart is gone.
    let anon =
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", None, Some(&cookie), None).await)
            .await;
    assert_eq!(anon["items"], json!([]));
    // A log-in without a cookie sets none; a failed one merges nothing.
    let plain = app.log_in(&email, "customer password").await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(set_cookie(&plain), None);
}

async fn cached_cart_shows_every_write(app: TestApp) {
    let (_, user) = app.customer().await;
    let admin = app.admin_token().await;
    let lamp = add_product(&app, "C-LAMP", 1_000, 10).await;
    let desk = add_product(&app, "C-DESK", 2_000, 10).await;
    let t = Some(user.as_str());
    let read = || async {
        ok_json(cart_request(&app, Method::GET, "/api/v1/cart", t, None, None).await).await
    };

    assert_eq!(read().await["items"], json!([]));
    add_to_cart(&app, &user, lamp, 2).await;
    assert_eq!(quantities(&read().await), [(lamp, 2)]);
    // A repeated read (served from the cache) is the same body.
    assert_eq!(read().await, read().await);
    add_to_cart(&app, &user, desk, 1).await;
    assert_eq!(quantities(&read().await), [(lamp, 2), (desk, 1)]);
    let line = format!("/api/v1/cart/items/{lamp}");
    let body = json!({"quantity": 5});
    ok_json(cart_request(&app, Method::PATCH, &line, t, None, Some(&body)).await).await;
    assert_eq!(quantities(&read().await), [(lamp, 5), (desk, 1)]);
    ok_json(cart_request(&app, Method::DELETE, &line, t, None, None).await).await;
    assert_eq!(quantities(&read().await), [(desk, 1)]);

    // A price change reaches the cached cart.
    let response = app
        .patch_json(
            &format!("/api/v1/products/{desk}"),
            &json!({"price_cents": 2_500}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cart = read().await;
    assert_eq!(cart["items"][0]["unit_price_cents"], 2_500);
    // Each region is cached on its own.
    let us = ok_json(
        cart_request(
            &app,
            Method::GET,
            "/api/v1/cart?region=US-CA",
            t,
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(us["quote"]["region"], "US-CA");
    assert_ne!(us["quote"], cart["quote"]);

    // Checkout empties the cached cart.
    let response = checkout(&app, t, Some("cached-cart"), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(read().await["items"], json!([]));
    let us = ok_json(
        cart_request(
            &app,
            Method::GET,
            "/api/v1/cart?region=US-CA",
            t,
            None,
            None,
        )
        .await,
    )
    .await;
    assert_eq!(us["items"], json!([]));
}
