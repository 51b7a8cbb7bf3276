//! Who may do what: every operation of the OpenAPI document called as anonymous, customer A,
//! customer B, support and admin, each answer checked against one table (a documented
//! operation missing from the table fails the test); and forged tokens refused by every
//! operation that reads one.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_api::auth::{Claims, Role, Tokens, unix_now};

use crate::accounts::b64;
use crate::helpers::{JWT_SECRET, KEY_ID, TestApp, assert_json_error};

backend_tests!(
    every_operation_answers_each_role_as_the_table_says,
    forged_tokens_are_refused_everywhere
);

/// The callers, in the order of [`Row::expect`].
const CALLERS: [&str; 5] = ["anonymous", "customer A", "customer B", "support", "admin"];

/// What a row's `{id}` (or `{product_id}`) stands for.
#[derive(Clone, Copy)]
enum Id {
    None,
    /// A product in A's cart (and in no other).
    Product,
    /// A's order.
    Order,
    /// A customer C, whose role the admin sets.
    User,
}

/// One operation and the status each caller gets, in [`CALLERS`]' order.
struct Row {
    method: Method,
    /// As in the document.
    path: &'static str,
    id: Id,
    /// The body, given the caller's index (so each can be unique).
    body: Option<fn(usize) -> Value>,
    expect: [u16; 5],
}

fn row(method: Method, path: &'static str, id: Id, expect: [u16; 5]) -> Row {
    Row {
        method,
        path,
        id,
        body: None,
        expect,
    }
}

fn with_body(mut row: Row, body: fn(usize) -> Value) -> Row {
    row.body = Some(body);
    row
}

/// In order: rows that read come before the rows that change what they read.
fn table() -> Vec<Row> {
    use Method as M;
    vec![
        with_body(
            row(M::POST, "/api/v1/users", Id::None, [201; 5]),
            |i| json!({"email": format!("matrix-{i}@example.com"), "password": "matrix password", "display_name": "M"}),
        ),
        with_body(
            row(M::POST, "/api/v1/sessions", Id::None, [200; 5]),
            |i| json!({"email": format!("matrix-{i}@example.com"), "password": "matrix password"}),
        ),
        row(
            M::GET,
            "/api/v1/users/me",
            Id::None,
            [401, 200, 200, 200, 200],
        ),
        row(M::GET, "/api/v1/users", Id::None, [401, 403, 403, 403, 200]),
        with_body(
            row(
                M::PATCH,
                "/api/v1/users/{id}/role",
                Id::User,
                [401, 403, 403, 403, 200],
            ),
            |_| json!({"role": "customer"}),
        ),
        row(M::GET, "/api/v1/products", Id::None, [200; 5]),
        with_body(
            row(
                M::POST,
                "/api/v1/products",
                Id::None,
                [401, 403, 403, 403, 201],
            ),
            |i| json!({"sku": format!("MATRIX-{i}"), "name": "Matrix", "category": "home", "price_cents": 100, "stock": 5}),
        ),
        row(M::GET, "/api/v1/products/{id}", Id::Product, [200; 5]),
        row(
            M::GET,
            "/api/v1/products/{id}/recommendations",
            Id::Product,
            [200; 5],
        ),
        with_body(
            row(
                M::PATCH,
                "/api/v1/products/{id}",
                Id::Product,
                [401, 403, 403, 403, 200],
            ),
            |_| json!({"stock": 500}),
        ),
        // No image is stored in these tests' apps: everyone gets the same 404.
        row(M::GET, "/images/products/{id}", Id::Product, [404; 5]),
        row(M::HEAD, "/images/products/{id}", Id::Product, [404; 5]),
        // Past the role check, the admin's empty body is not an image.
        row(
            M::PUT,
            "/api/v1/products/{id}/image",
            Id::Product,
            [401, 403, 403, 403, 415],
        ),
        with_body(
            row(M::POST, "/api/v1/prices/quote", Id::None, [200; 5]),
            |_| json!({"items": [{"product_id": 2, "quantity": 1}]}),
        ),
        row(M::GET, "/api/v1/cart", Id::None, [200; 5]),
        // Only A's cart has the line: for everyone else it is not there.
        with_body(
            row(
                M::PATCH,
                "/api/v1/cart/items/{product_id}",
                Id::Product,
                [404, 200, 404, 404, 404],
            ),
            |_| json!({"quantity": 2}),
        ),
        row(
            M::DELETE,
            "/api/v1/cart/items/{product_id}",
            Id::Product,
            [404, 200, 404, 404, 404],
        ),
        with_body(
            row(M::POST, "/api/v1/cart/items", Id::None, [200; 5]),
            |_| json!({"product_id": 2, "quantity": 1}),
        ),
        row(
            M::GET,
            "/api/v1/orders",
            Id::None,
            [401, 200, 200, 200, 200],
        ),
        // Every customer's orders: admins only.
        row(
            M::GET,
            "/api/v1/orders?scope=all",
            Id::None,
            [401, 403, 403, 403, 200],
        ),
        // A's order: A and admins read it; to anyone else it does not exist.
        row(
            M::GET,
            "/api/v1/orders/{id}",
            Id::Order,
            [401, 200, 404, 404, 200],
        ),
        row(
            M::GET,
            "/api/v1/notifications",
            Id::None,
            [401, 200, 200, 200, 200],
        ),
        row(
            M::POST,
            "/api/v1/orders",
            Id::None,
            [401, 201, 201, 201, 201],
        ),
    ]
}

/// A's order, the product in A's cart, C's id, and the callers' tokens.
struct Fixture {
    order: i64,
    product: i64,
    user: i64,
    tokens: [Option<String>; 5],
}

async fn id_of(app: &TestApp, token: &str) -> i64 {
    let me: Value = app
        .get_as("/api/v1/users/me", token)
        .await
        .json()
        .await
        .expect("JSON");
    me["id"].as_i64().expect("id")
}

async fn fixture(app: &TestApp) -> Fixture {
    let admin = app.admin_token().await;
    let (_, a) = app.customer().await;
    let (_, b) = app.customer().await;
    let (support_email, support) = app.customer().await;
    let (_, c) = app.customer().await;
    let product = 1;
    let line = json!({"product_id": product, "quantity": 1});
    let response = app.post_json("/api/v1/cart/items", &line, Some(&a)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .client
        .post(format!("{}/api/v1/orders", app.base))
        .bearer_auth(&a)
        .header("idempotency-key", "matrix-setup")
        .send()
        .await
        .expect("checkout");
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.expect("JSON");
    let response = app.post_json("/api/v1/cart/items", &line, Some(&a)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let support_id = id_of(app, &support).await;
    let response = app
        .patch_json(
            &format!("/api/v1/users/{support_id}/role"),
            &json!({"role": "support"}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The role applies to the token the account has; one issued now carries it too.
    let support = app.token(&support_email, "customer password").await;
    Fixture {
        order: order["id"].as_i64().expect("order id"),
        product,
        user: id_of(app, &c).await,
        tokens: [None, Some(a), Some(b), Some(support), Some(admin)],
    }
}

fn concrete(row: &Row, fixture: &Fixture) -> String {
    let id = match row.id {
        Id::None => return row.path.to_owned(),
        Id::Product => fixture.product,
        Id::Order => fixture.order,
        Id::User => fixture.user,
    };
    row.path
        .replace("{id}", &id.to_string())
        .replace("{product_id}", &id.to_string())
}

async fn call(
    app: &TestApp,
    row: &Row,
    path: &str,
    caller: usize,
    token: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(row.method.clone(), format!("{}{path}", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = row.body {
        request = request.json(&body(caller));
    }
    if row.method == Method::POST && row.path == "/api/v1/orders" {
        request = request.header("idempotency-key", format!("matrix-{caller}"));
    }
    request.send().await.expect("send")
}

/// The operations of the document, as `(method, path)`.
async fn documented(app: &TestApp) -> Vec<(String, String, Value)> {
    let doc = app.get_ok_json("/openapi.json").await;
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            operations.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    operations
}

async fn every_operation_answers_each_role_as_the_table_says(app: TestApp) {
    let table = table();
    for (method, path, _) in documented(&app).await {
        assert!(
            table
                .iter()
                .any(|r| r.method.as_str() == method && r.path == path),
            "{method} {path} is documented but not in the authorization table"
        );
    }
    let fixture = fixture(&app).await;
    for row in &table {
        let path = concrete(row, &fixture);
        for (caller, name) in CALLERS.iter().enumerate() {
            let token = fixture.tokens[caller].as_deref();
            let response = call(&app, row, &path, caller, token).await;
            let status = response.status();
            let text = response.text().await.expect("body");
            assert_eq!(
                status.as_u16(),
                row.expect[caller],
                "{} {path} as {name}: {text}",
                row.method
            );
            // A `HEAD` answer has no body to check.
            if !status.is_success() && row.method != Method::HEAD {
                let body: Value = serde_json::from_str(&text).expect("a JSON problem body");
                assert!(
                    body["error"]["code"].is_string(),
                    "{} {path} as {name}: {text}",
                    row.method
                );
            }
        }
    }
    // What B saw of A's: nothing. B's orders and notifications are B's only.
    let b = fixture.tokens[2].as_deref().expect("B");
    let orders: Value = app
        .get_as("/api/v1/orders", b)
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        orders["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|o| o["id"] != fixture.order),
        "{orders}"
    );
    let cart: Value = app
        .get_as("/api/v1/cart", b)
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        cart["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|l| l["product_id"] != fixture.product),
        "{cart}"
    );
}

/// Tokens a client could forge or replay, each of which must be refused.
fn forged_tokens(id: i64) -> Vec<(&'static str, String)> {
    let now = unix_now();
    let claims = |iat: u64, exp: u64, role: Role| Claims {
        sub: id.to_string(),
        email: "forged@example.com".into(),
        role,
        iat,
        exp,
    };
    let ttl = std::time::Duration::from_secs(60);
    let ours = Tokens::new(JWT_SECRET.as_bytes(), KEY_ID, ttl).expect("keys");
    let sign = |claims: &Claims| ours.sign(claims).expect("sign");
    let valid = sign(&claims(now, now + 600, Role::Customer));
    let mut parts = valid.split('.');
    let (header, _, signature) = (
        parts.next().expect("header").to_owned(),
        parts.next(),
        parts.next().expect("signature").to_owned(),
    );
    let admin_payload =
        b64(&serde_json::to_vec(&claims(now, now + 600, Role::Admin)).expect("JSON"));
    let mut nbf = serde_json::to_value(claims(now, now + 7200, Role::Customer)).expect("JSON");
    nbf["nbf"] = json!(now + 3600);
    let mut nbf_header = Header::new(Algorithm::HS256);
    nbf_header.kid = Some(KEY_ID.to_owned());
    let not_before = jsonwebtoken::encode(
        &nbf_header,
        &nbf,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign");
    vec![
        (
            "alg none",
            format!(
                "{}.{admin_payload}.",
                b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
            ),
        ),
        (
            "wrong key",
            Tokens::new(b"another secret, also 32 bytes+!!", KEY_ID, ttl)
                .expect("keys")
                .sign(&claims(now, now + 600, Role::Admin))
                .expect("sign"),
        ),
        (
            "wrong kid",
            Tokens::new(JWT_SECRET.as_bytes(), "k9", ttl)
                .expect("keys")
                .sign(&claims(now, now + 600, Role::Customer))
                .expect("sign"),
        ),
        (
            "expired",
            sign(&claims(now - 7200, now - 3600, Role::Customer)),
        ),
        (
            "issued in the future",
            sign(&claims(now + 3600, now + 7200, Role::Customer)),
        ),
        ("not before a future time", not_before),
        (
            "tampered payload",
            format!("{header}.{admin_payload}.{signature}"),
        ),
    ]
}

async fn forged_tokens_are_refused_everywhere(app: TestApp) {
    let (_, token) = app.customer().await;
    let id = id_of(&app, &token).await;
    let forged = forged_tokens(id);
    let mut checked = 0;
    for (method, path, op) in documented(&app).await {
        // Operations that read a token: required or optional (`security` lists `bearer`).
        if op.get("security").is_none() {
            continue;
        }
        let concrete = path.replace("{id}", "1").replace("{product_id}", "1");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        for (what, forged) in &forged {
            let response = app
                .client
                .request(method.clone(), format!("{}{concrete}", app.base))
                .bearer_auth(forged)
                .header("idempotency-key", "forged")
                .json(&json!({}))
                .send()
                .await
                .expect("send");
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.as_bytes()),
                Some(&b"Bearer"[..]),
                "{method} {path} with {what}"
            );
            let message =
                assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
            assert!(!message.contains(forged.as_str()), "{message}");
            checked += 1;
        }
    }
    assert!(
        checked >= 7 * 10,
        "only {checked} checks: too few operations read a token"
    );
}
