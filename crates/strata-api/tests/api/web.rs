//! The storefront over HTTP, as a browser without JavaScript uses it: pages render with one
//! `<main>`, bad input gets an HTML 4xx page, forms post and redirect, the session cookie
//! signs a browser in (and the JSON endpoints accept it), an anonymous cart survives
//! registration, a double submit of the checkout form is one order, and a form posted from
//! another site is refused.

use reqwest::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, assert_json_error};
use crate::orders::add_to_cart;

backend_tests!(
    session_cookie_is_a_credential_of_the_json_api,
    pages_render_and_bad_input_is_an_html_4xx,
    a_visitor_shops_registers_and_checks_out_with_forms,
    forms_from_another_site_are_refused,
);

/// A client that does not follow redirects (the tests read them) and sends no proxy.
fn browser() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// The value `name` is set to by the response's `Set-Cookie` headers, with the header.
fn set_cookie(response: &Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|header| {
            let value = header[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
            (value, header.to_owned())
        })
}

async fn get(app: &TestApp, path: &str, cookies: &str) -> Response {
    browser()
        .get(format!("{}{path}", app.base))
        .header("cookie", cookies)
        .send()
        .await
        .expect("GET")
}

async fn post_form(app: &TestApp, path: &str, cookies: &str, fields: &[(&str, &str)]) -> Response {
    browser()
        .post(format!("{}{path}", app.base))
        .header("cookie", cookies)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("origin", &app.base)
        .body(serde_urlencoded::to_string(fields).expect("form"))
        .send()
        .await
        .expect("POST")
}

/// The page's HTML, after checking its status and that it is one whole page.
async fn html(response: Response, status: StatusCode) -> String {
    let url = response.url().to_string();
    assert_eq!(response.status(), status, "{url}");
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .expect("type")
        .to_owned();
    assert!(
        content_type.starts_with("text/html"),
        "{url}: {content_type}"
    );
    let body = response.text().await.expect("body");
    assert_eq!(body.matches("<main").count(), 1, "{url}: one <main>");
    assert!(
        body.contains(r#"<script type="module" src="/static/chat-widget.js"></script>"#),
        "{url}: the chat widget"
    );
    body
}

fn location(response: &Response) -> String {
    response.headers()[LOCATION]
        .to_str()
        .expect("location")
        .to_owned()
}

async fn session_cookie_is_a_credential_of_the_json_api(app: TestApp) {
    let (email, token) = app.customer().await;
    add_to_cart(&app, &token, 1, 2).await;
    let cookie = format!("strata_session={token}");
    // `AuthUser`: the cookie signs in where a bearer token does...
    let me: Value = get(&app, "/api/v1/users/me", &cookie)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["email"], email);
    // ...and an invalid one is a 401, as a bad bearer token is.
    for bad in ["strata_session=not-a-token", "strata_session=a.b.c"] {
        assert_json_error(
            get(&app, "/api/v1/users/me", bad).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    // `OptionalAuthUser`: the cookie finds the user's cart; an invalid one is a visitor
    // (an empty cart), not a refusal.
    let cart: Value = get(&app, "/api/v1/cart", &cookie)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(cart["items"][0]["product_id"], 1);
    assert_eq!(cart["items"][0]["quantity"], 2);
    let stale = get(&app, "/api/v1/cart", "strata_session=not-a-token").await;
    assert_eq!(stale.status(), StatusCode::OK);
    let stale: Value = stale.json().await.expect("JSON");
    assert_eq!(stale["items"], serde_json::json!([]));
}

async fn pages_render_and_bad_input_is_an_html_4xx(app: TestApp) {
    let product: Value = app.get_ok_json("/api/v1/products/1").await;
    let name = product["name"].as_str().expect("name");

    let home = html(get(&app, "/", "").await, StatusCode::OK).await;
    assert!(home.contains(name), "the first product is featured");
    assert!(
        home.contains("/search?category=books"),
        "categories are listed"
    );
    // The product's JSON, in the list and alone, says where its image is; the pages show
    // that image, and it is served there.
    let image = product["image_url"].as_str().expect("image_url").to_owned();
    assert_eq!(image, "/images/products/1");
    let list: Value = app.get_ok_json("/api/v1/products?per_page=3").await;
    for item in list["items"].as_array().expect("items") {
        assert_eq!(
            item["image_url"],
            format!("/images/products/{}", item["id"]),
            "{item}"
        );
    }
    assert!(home.contains(&format!(r#"<img src="{image}""#)), "{home}");
    let uploaded = browser()
        .put(format!("{}/api/v1/products/1/image", app.base))
        .bearer_auth(app.admin_token().await)
        .header(CONTENT_TYPE, "image/png")
        .body(&b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"[..])
        .send()
        .await
        .expect("PUT");
    assert_eq!(uploaded.status(), StatusCode::OK);
    assert_eq!(app.get(&image).await.status(), StatusCode::OK, "{image}");

    let found = html(
        get(&app, "/search?q=pocket&sort=price_asc", "").await,
        StatusCode::OK,
    )
    .await;
    assert!(found.contains("Pocket"), "{found}");
    let filtered = html(
        get(&app, "/search?category=books&min=1000&max=1000.50", "").await,
        StatusCode::OK,
    )
    .await;
    assert!(filtered.contains("0 found"), "{filtered}");

    let page = html(get(&app, "/products/1", "").await, StatusCode::OK).await;
    assert!(page.contains(name) && page.contains("in stock"), "{page}");
    assert!(page.contains("Customers also bought"), "{page}");
    // Prices in the currency the cookie names.
    let usd = html(
        get(&app, "/products/1", "strata_currency=USD").await,
        StatusCode::OK,
    )
    .await;
    assert!(usd.contains('$'), "{usd}");

    for (path, status) in [
        ("/products/999999", StatusCode::NOT_FOUND),
        ("/products/abc", StatusCode::BAD_REQUEST),
        ("/search?page=0", StatusCode::BAD_REQUEST),
        ("/search?page=abc", StatusCode::BAD_REQUEST),
        ("/search?min=abc", StatusCode::BAD_REQUEST),
        ("/search?category=Not%20A%20Slug", StatusCode::BAD_REQUEST),
        ("/search?sort=cheapest", StatusCode::BAD_REQUEST),
    ] {
        let body = html(get(&app, path, "").await, status).await;
        assert!(body.contains(r#"id="problem""#), "{path}: {body}");
    }
    // An error page keeps the frame of the visitor who asked: signed in, in their currency.
    let (email, token) = app.customer().await;
    let cookies = format!("strata_session={token}; strata_currency=USD");
    let missing = html(
        get(&app, "/products/999999", &cookies).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        missing.contains(&format!("Signed in as {email}")),
        "{missing}"
    );
    assert!(missing.contains("Prices shown in USD"), "{missing}");
    assert!(
        missing.contains(r#"<option value="USD" selected>"#),
        "{missing}"
    );
    assert!(
        missing.contains(r#"name="next" value="/products/999999""#),
        "{missing}"
    );
    let anonymous = html(
        get(&app, "/products/abc", "").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(anonymous.contains(r#"href="/login""#), "{anonymous}");
    // Pages that need an account send a visitor to log in, and back afterwards.
    for path in ["/checkout", "/orders", "/orders/1", "/notifications"] {
        let response = get(&app, path, "").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
        let query = serde_urlencoded::to_string([("next", path)]).expect("query");
        assert_eq!(location(&response), format!("/login?{query}"));
    }
    // A bad form field is a 422 page, never a 5xx.
    let response = post_form(&app, "/cart/items", "", &[("product_id", "x")]).await;
    html(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = post_form(
        &app,
        "/cart/items",
        "",
        &[("product_id", "1"), ("quantity", "100")],
    )
    .await;
    html(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = post_form(&app, "/cart/items", "", &[("product_id", "999999")]).await;
    html(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let response = post_form(&app, "/currency", "", &[("currency", "XXX")]).await;
    html(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    // The JSON endpoints keep their JSON errors.
    assert_json_error(
        app.get("/api/v1/products/999999").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

async fn a_visitor_shops_registers_and_checks_out_with_forms(app: TestApp) {
    // A visitor adds two products: the anonymous cart cookie is for the whole site now.
    let added = post_form(
        &app,
        "/cart/items",
        "",
        &[("product_id", "1"), ("quantity", "2")],
    )
    .await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&added), "/cart");
    let (cart_token, header) = set_cookie(&added, "strata_cart").expect("a cart cookie");
    assert!(header.contains("Path=/;"), "{header}");
    let cart_cookie = format!("strata_cart={cart_token}");
    let added = post_form(&app, "/cart/items", &cart_cookie, &[("product_id", "2")]).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER);
    let cart = html(get(&app, "/cart", &cart_cookie).await, StatusCode::OK).await;
    assert_eq!(
        cart.matches("name=\"quantity\" type=\"number\"").count(),
        2,
        "{cart}"
    );

    // Registering signs the browser in and brings the cart along.
    let email = format!("web-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = post_form(
        &app,
        "/register",
        &cart_cookie,
        &[
            ("display_name", "Web Shopper"),
            ("email", &email),
            ("password", "web password 1"),
            ("next", "/checkout"),
        ],
    )
    .await;
    assert_eq!(registered.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&registered), "/checkout");
    let (session, header) = set_cookie(&registered, "strata_session").expect("a session");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/;", "Max-Age=3600"] {
        assert!(header.contains(attribute), "{header}");
    }
    let (cleared, _) = set_cookie(&registered, "strata_cart").expect("the cart cookie cleared");
    assert_eq!(cleared, "");
    let signed_in = format!("strata_session={session}");

    // The checkout page quotes the coupon and carries one idempotency key per rendering.
    let page = html(
        get(&app, "/checkout?coupon=welcome10&region=EU-DE", &signed_in).await,
        StatusCode::OK,
    )
    .await;
    assert!(page.contains("WELCOME10 takes"), "{page}");
    let key = page
        .split(r#"name="idempotency_key" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an idempotency key in the form")
        .to_owned();
    let pay = [
        ("idempotency_key", key.as_str()),
        ("coupon", "WELCOME10"),
        ("region", "EU-DE"),
    ];
    // A double submit: the same order twice.
    let first = post_form(&app, "/checkout", &signed_in, &pay).await;
    let second = post_form(&app, "/checkout", &signed_in, &pay).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    let order_path = location(&first);
    assert_eq!(location(&second), order_path);
    let orders: Value = get(&app, "/api/v1/orders", &signed_in)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(orders["total"], 1, "{orders}");
    assert_eq!(orders["items"][0]["coupon_code"], "WELCOME10");
    assert_eq!(
        orders["items"][0]["lines"].as_array().map(Vec::len),
        Some(2)
    );

    let order = html(get(&app, &order_path, &signed_in).await, StatusCode::OK).await;
    assert!(
        order.contains(r#"id="order-status""#) && order.contains("placed"),
        "{order}"
    );
    assert!(order.contains("/static/order.js"), "{order}");
    let history = html(get(&app, "/orders", &signed_in).await, StatusCode::OK).await;
    assert!(
        history.contains(&format!("href=\"{order_path}\"")),
        "{history}"
    );
    html(
        get(&app, "/notifications", &signed_in).await,
        StatusCode::OK,
    )
    .await;
    html(
        get(&app, "/orders/999999", &signed_in).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    html(
        get(&app, "/orders?page=0", &signed_in).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Log-in with a wrong password shows the form again with the endpoint's 401.
    let wrong = post_form(
        &app,
        "/login",
        "",
        &[("email", &email), ("password", "wrong one")],
    )
    .await;
    let form = html(wrong, StatusCode::UNAUTHORIZED).await;
    assert!(form.contains("role=\"alert\""), "{form}");
    let right = post_form(
        &app,
        "/login",
        "",
        &[("email", &email), ("password", "web password 1")],
    )
    .await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&right), "/");
    assert!(set_cookie(&right, "strata_session").is_some());

    // Log-out clears the session.
    let out = post_form(&app, "/logout", &signed_in, &[]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (value, header) = set_cookie(&out, "strata_session").expect("cleared");
    assert_eq!(value, "");
    assert!(header.contains("Max-Age=0"), "{header}");
}

async fn forms_from_another_site_are_refused(app: TestApp) {
    for origin in ["http://evil.example", "null"] {
        let response = browser()
            .post(format!("{}/cart/items", app.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("origin", origin)
            .body("product_id=1&quantity=1")
            .send()
            .await
            .expect("POST");
        let body = html(response, StatusCode::FORBIDDEN).await;
        assert!(body.contains("another site"), "{body}");
    }
    let response = browser()
        .post(format!("{}/logout", app.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("referer", "https://evil.example/page")
        .send()
        .await
        .expect("POST");
    html(response, StatusCode::FORBIDDEN).await;
    // Without either header (a script), SameSite is the protection and the post is served.
    let response = browser()
        .post(format!("{}/cart/items", app.base))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("product_id=1")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}
