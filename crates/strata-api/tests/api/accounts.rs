//! Accounts and authorization: register, log in, `me`, the log-in throttle, token checks,
//! roles, and the admin bootstrap.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use strata_api::auth::{Claims, Role, Tokens, unix_now};
use strata_api::{AdminBootstrap, ApiError};
use strata_core::config::Secret;
use strata_core::http::RoleError;

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, JWT_SECRET, KEY_ID, TestApp, assert_json_error, test_auth,
};

backend_tests!(
    register_log_in_and_read_me,
    emails_are_case_insensitive_and_unique,
    wrong_password_and_unknown_email_look_the_same,
    repeated_failures_are_throttled_across_instances,
    a_guesser_behind_a_shared_address_does_not_lock_out_its_neighbours,
    throttling_holds_across_instances_sharing_redis,
    expired_and_tampered_tokens_are_refused,
    customers_cannot_call_admin_endpoints,
    admin_is_bootstrapped_from_settings,
    admins_grant_roles,
    roles_take_effect_on_the_next_request,
    admins_find_accounts,
    registration_input_is_validated,
);

async fn json_body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

async fn register_log_in_and_read_me(app: TestApp) {
    let response = app
        .register("ann@example.com", "correct horse", "  Ann Lee ")
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_body(response).await;
    assert_eq!(created["email"], "ann@example.com");
    assert_eq!(created["display_name"], "Ann Lee", "trimmed");
    assert_eq!(created["role"], "customer");
    assert!(created["id"].as_i64().expect("id") > 0);
    assert!(created["created_at"].is_string());
    assert!(
        created.get("password_hash").is_none() && created.get("password").is_none(),
        "{created}"
    );

    let response = app.log_in("ann@example.com", "correct horse").await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = json_body(response).await;
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 3600);
    let token = session["token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3, "a compact JWT");

    let me = app.get_as("/api/v1/users/me", token).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(json_body(me).await, created);

    // The password is stored as an argon2id hash, never as given.
    let stored = app
        .store
        .users()
        .find_by_email("ann@example.com")
        .await
        .expect("query")
        .expect("stored");
    assert!(stored.password_hash.starts_with("$argon2id$"), "{stored:?}");
    assert!(!stored.password_hash.contains("correct horse"));

    // Any instance verifies the token: no session lives in the instance.
    let other = app.sibling(app.cache.clone()).await;
    assert_eq!(
        other.get_as("/api/v1/users/me", token).await.status(),
        StatusCode::OK
    );
}

async fn emails_are_case_insensitive_and_unique(app: TestApp) {
    let response = app.register("Bob@Example.COM", "bob password", "Bob").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(json_body(response).await["email"], "bob@example.com");
    for duplicate in ["bob@example.com", "BOB@example.com", " bob@example.com "] {
        let response = app.register(duplicate, "another password", "Bobby").await;
        assert_json_error(response, StatusCode::CONFLICT, "email_taken").await;
    }
    assert_eq!(
        app.log_in("BOB@EXAMPLE.com", "bob password").await.status(),
        StatusCode::OK
    );
}

async fn wrong_password_and_unknown_email_look_the_same(app: TestApp) {
    app.customer().await;
    let (email, _) = app.customer().await;
    let wrong_password = app.log_in(&email, "not the password").await;
    let unknown_email = app.log_in("nobody@example.com", "not the password").await;
    let malformed_email = app.log_in("not an email", "not the password").await;
    let mut bodies = Vec::new();
    for response in [wrong_password, unknown_email, malformed_email] {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let headers: Vec<String> = response
            .headers()
            .keys()
            .filter(|k| !["x-request-id", "date", "content-length"].contains(&k.as_str()))
            .map(|k| format!("{k}: {:?}", response.headers()[k]))
            .filter(|h| !h.starts_with("x-strata-instance"))
            .collect();
        bodies.push((headers, json_body(response).await));
    }
    assert_eq!(bodies[0].1["error"]["code"], "invalid_credentials");
    assert_eq!(
        bodies[0], bodies[1],
        "unknown email differs from wrong password"
    );
    assert_eq!(bodies[0], bodies[2]);
}

async fn repeated_failures_are_throttled_across_instances(app: TestApp) {
    let (email, _) = app.customer().await;
    let other = app.sibling(app.cache.clone()).await;
    for attempt in 0..5 {
        // Alternate instances: the count lives in the shared cache, not in an instance.
        let instance = if attempt % 2 == 0 { &app } else { &other };
        let response = instance.log_in(&email, "wrong password").await;
        assert_json_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    for instance in [&app, &other] {
        // Even the right password: the email is locked, and no password is checked.
        let response = instance.log_in(&email, "customer password").await;
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("seconds");
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        assert_json_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    }
    // Unknown emails are counted the same way (nothing tells them apart).
    for _ in 0..5 {
        app.log_in("ghost@example.com", "guess").await;
    }
    assert_eq!(
        app.log_in("ghost@example.com", "guess").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other accounts are not affected, and a success clears an account's count.
    let (fresh, _) = app.customer().await;
    for _ in 0..4 {
        app.log_in(&fresh, "wrong password").await;
    }
    app.token(&fresh, "customer password").await;
    for _ in 0..4 {
        assert_eq!(
            app.log_in(&fresh, "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

/// Everyone here logs in from 127.0.0.1, as people behind one office or carrier address do: a
/// client failing far more log-ins than the address-wide limit (50) over many accounts does
/// not stop a neighbour from logging in with the right password, while its own guessing is
/// refused and one account's password guessing is still throttled.
async fn a_guesser_behind_a_shared_address_does_not_lock_out_its_neighbours(app: TestApp) {
    let (neighbour, _) = app.customer().await;
    let (target, _) = app.customer().await;
    for i in 0..60 {
        let response = app
            .log_in(&format!("sprayed-{i}@example.com"), "guess")
            .await;
        assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&response.status()),
            "{}",
            response.status()
        );
    }
    // The guesser's accounts are refused from this address now, without a password check.
    let response = app.log_in("sprayed-0@example.com", "guess").await;
    assert_json_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    // The neighbour, who never failed, logs in, again and again.
    for _ in 0..3 {
        app.token(&neighbour, "customer password").await;
    }
    // A newly guessed account gets its first try, and then is refused.
    let first = app.log_in(&target, "wrong password").await;
    assert_json_error(first, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let second = app.log_in(&target, "customer password").await;
    assert_json_error(second, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

async fn throttling_holds_across_instances_sharing_redis(app: TestApp) {
    let Some(url) = strata_core::testkit::require_service(strata_core::testkit::REDIS) else {
        return;
    };
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let cache = strata_cache::AnyCache::from_url(&url, &prefix)
        .await
        .expect("Redis");
    let (a, b) = (app.sibling(cache.clone()).await, app.sibling(cache).await);
    let (email, _) = a.customer().await;
    for attempt in 0..5 {
        let instance = if attempt % 2 == 0 { &a } else { &b };
        assert_eq!(
            instance.log_in(&email, "wrong password").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    for instance in [&a, &b] {
        let response = instance.log_in(&email, "customer password").await;
        assert_json_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    }
}

/// `base64url` without padding, for hand-made tokens.
pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0_u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

async fn expired_and_tampered_tokens_are_refused(app: TestApp) {
    let (email, token) = app.customer().await;
    let id = json_body(app.get_as("/api/v1/users/me", &token).await).await["id"]
        .as_i64()
        .expect("id");
    let keys = Tokens::new(
        JWT_SECRET.as_bytes(),
        KEY_ID,
        std::time::Duration::from_secs(60),
    )
    .expect("keys");
    let now = unix_now();
    let claims = |exp: u64, role: Role| Claims {
        sub: id.to_string(),
        email: email.clone(),
        role,
        iat: now - 7200,
        exp,
    };
    // The harness's own key signs a valid token: the checks below are about what differs.
    let valid = keys.sign(&claims(now + 600, Role::Customer)).expect("sign");
    assert_eq!(
        app.get_as("/api/v1/users/me", &valid).await.status(),
        StatusCode::OK
    );

    let expired = keys
        .sign(&claims(now - 3600, Role::Customer))
        .expect("sign");
    let mut flipped = token.clone().into_bytes();
    let at = flipped.len() - 3;
    flipped[at] = if flipped[at] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).expect("ASCII");
    // Claims changed (a customer making itself admin) without re-signing.
    let (header, _, signature) = {
        let mut parts = token.split('.');
        (
            parts.next().expect("header").to_owned(),
            parts.next(),
            parts.next().expect("signature").to_owned(),
        )
    };
    let escalated_claims = serde_json::to_vec(&claims(now + 600, Role::Admin)).expect("JSON");
    let escalated = format!("{header}.{}.{signature}", b64(&escalated_claims));
    let other_kid = Tokens::new(
        JWT_SECRET.as_bytes(),
        "k2",
        std::time::Duration::from_secs(60),
    )
    .expect("keys")
    .sign(&claims(now + 600, Role::Customer))
    .expect("sign");
    let other_secret = Tokens::new(
        b"a different secret of 32+ bytes!",
        KEY_ID,
        std::time::Duration::from_secs(60),
    )
    .expect("keys")
    .sign(&claims(now + 600, Role::Admin))
    .expect("sign");
    let payload = b64(&serde_json::to_vec(&claims(now + 600, Role::Admin)).expect("JSON"));
    let alg_none = format!(
        "{}.{payload}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
    );
    let alg_none_signed = format!(
        "{}.{payload}.{signature}",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
    );
    let no_kid = format!(
        "{}.{payload}.{signature}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#)
    );

    for (what, token) in [
        ("expired", expired.as_str()),
        ("flipped signature byte", flipped.as_str()),
        ("escalated claims", escalated.as_str()),
        ("unknown kid", other_kid.as_str()),
        ("other secret", other_secret.as_str()),
        ("alg none", alg_none.as_str()),
        ("alg none with a signature", alg_none_signed.as_str()),
        ("no kid", no_kid.as_str()),
        ("garbage", "not.a.token"),
    ] {
        let response = app.get_as("/api/v1/users/me", token).await;
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{what}"
        );
        let message = assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        if what == "expired" {
            assert!(message.contains("expired"), "{message}");
        }
    }
    for header in [
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        &format!("Token {token}"),
    ] {
        let response = app
            .client
            .get(format!("{}/api/v1/users/me", app.base))
            .header("authorization", header)
            .send()
            .await
            .expect("GET");
        assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert_json_error(
        app.get("/api/v1/users/me").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

async fn customers_cannot_call_admin_endpoints(app: TestApp) {
    let (_, customer) = app.customer().await;
    let me = json_body(app.get_as("/api/v1/users/me", &customer).await).await;
    let id = me["id"].as_i64().expect("id");
    let product = json!({
        "sku": "NEW-1", "name": "Lamp", "category": "home", "price_cents": 100, "stock": 1
    });
    let calls: [(Method, String, Value); 3] = [
        (Method::POST, "/api/v1/products".into(), product),
        (
            Method::PATCH,
            "/api/v1/products/1".into(),
            json!({"price_cents": 1}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{id}/role"),
            json!({"role": "admin"}),
        ),
    ];
    for (method, path, body) in &calls {
        let response = app
            .send(method.clone(), path, Some(&customer), Some(body))
            .await;
        assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
        let response = app.send(method.clone(), path, None, Some(body)).await;
        assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        // The role is checked before the body is read: no hint about what a body should be.
        let response = app
            .send(
                method.clone(),
                path,
                Some(&customer),
                Some(&json!({"bogus": true})),
            )
            .await;
        assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Nothing changed.
    let product = app.get_ok_json("/api/v1/products/1").await;
    assert_ne!(product["price_cents"], 1);
    assert_eq!(
        json_body(app.get_as("/api/v1/users/me", &customer).await).await["role"],
        "customer"
    );
    assert!(
        app.store
            .products()
            .search(&Default::default())
            .await
            .expect("search")
            .items
            .iter()
            .all(|p| p.sku != "NEW-1")
    );
}

async fn admin_is_bootstrapped_from_settings(app: TestApp) {
    let token = app.admin_token().await;
    let me = json_body(app.get_as("/api/v1/users/me", &token).await).await;
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["role"], "admin");

    // Another instance bootstrapping the same admin changes nothing (one account).
    let users = app.store.users().count().await.expect("count");
    let _again = app.sibling(app.cache.clone()).await;
    assert_eq!(app.store.users().count().await.expect("count"), users);

    // An existing customer named as admin is promoted, keeping its password.
    let (email, _) = app.customer().await;
    let mut auth = test_auth();
    auth.admin = Some(AdminBootstrap {
        email: email.to_uppercase(),
        password: Secret::new("a different password"),
    });
    let _promoting = app.sibling_with(auth).await.expect("start");
    let token = app.token(&email, "customer password").await;
    let me = json_body(app.get_as("/api/v1/users/me", &token).await).await;
    assert_eq!(me["role"], "admin");
    assert_eq!(
        app.log_in(&email, "a different password").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Admin settings that break the account rules stop the instance from starting.
    for (email, password) in [("not-an-email", ADMIN_PASSWORD), (ADMIN_EMAIL, "short")] {
        let mut auth = test_auth();
        auth.admin = Some(AdminBootstrap {
            email: email.to_owned(),
            password: Secret::new(password),
        });
        let result = app.sibling_with(auth).await;
        assert!(
            matches!(result, Err(ApiError::Role(RoleError::Settings { .. }))),
            "{email}/{password}"
        );
    }
    let mut auth = test_auth();
    auth.jwt_secret = Secret::new("too short");
    assert!(matches!(
        app.sibling_with(auth).await,
        Err(ApiError::Role(RoleError::Settings { .. }))
    ));
}

async fn admins_grant_roles(app: TestApp) {
    let admin = app.admin_token().await;
    let (email, customer) = app.customer().await;
    let me = json_body(app.get_as("/api/v1/users/me", &customer).await).await;
    let id = me["id"].as_i64().expect("id");
    let path = format!("/api/v1/users/{id}/role");

    let response = app
        .patch_json(&path, &json!({"role": "support"}), Some(&admin))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let granted = json_body(response).await;
    assert_eq!(granted["role"], "support");
    assert_eq!(granted["email"], email.as_str());

    // A new log-in carries the new role (the old token is served with it too, see
    // `roles_take_effect_on_the_next_request`).
    let token = app.token(&email, "customer password").await;
    let me = json_body(app.get_as("/api/v1/users/me", &token).await).await;
    assert_eq!(me["role"], "support");
    // Support is not admin.
    let response = app
        .patch_json(&path, &json!({"role": "admin"}), Some(&token))
        .await;
    assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let response = app
        .patch_json(
            "/api/v1/users/999999/role",
            &json!({"role": "support"}),
            Some(&admin),
        )
        .await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    for bad in [
        json!({"role": "owner"}),
        json!({"role": "Admin"}),
        json!({"role": 1}),
        json!({}),
        json!({"role": "support", "extra": 1}),
    ] {
        let response = app.patch_json(&path, &bad, Some(&admin)).await;
        assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    for bad_id in ["0", "-1", "abc", "99999999999999999999"] {
        let response = app
            .patch_json(
                &format!("/api/v1/users/{bad_id}/role"),
                &json!({"role": "support"}),
                Some(&admin),
            )
            .await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;
    }
    let admin_id = json_body(app.get_as("/api/v1/users/me", &admin).await).await["id"]
        .as_i64()
        .expect("id");
    let response = app
        .patch_json(
            &format!("/api/v1/users/{admin_id}/role"),
            &json!({"role": "customer"}),
            Some(&admin),
        )
        .await;
    assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

/// A role granted or revoked applies to the account's next request, with the token it has:
/// role-gated routes read the account's role, not the token's.
async fn roles_take_effect_on_the_next_request(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, token) = app.customer().await;
    let id = json_body(app.get_as("/api/v1/users/me", &token).await).await["id"]
        .as_i64()
        .expect("id");
    let role = format!("/api/v1/users/{id}/role");
    let response = app.get_as("/api/v1/users", &token).await;
    assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    let response = app
        .patch_json(&role, &json!({"role": "admin"}), Some(&admin))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The token still says `customer`; the account is an admin now, and so is its caller.
    let response = app.get_as("/api/v1/users", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app.get_as("/api/v1/orders?scope=all", &token).await;
    assert_eq!(response.status(), StatusCode::OK);

    // A token issued while the account was an admin loses the role with the account.
    let stale_admin = app
        .token(
            json_body(app.get_as("/api/v1/users/me", &token).await).await["email"]
                .as_str()
                .expect("email"),
            "customer password",
        )
        .await;
    let response = app
        .patch_json(&role, &json!({"role": "customer"}), Some(&admin))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for token in [&token, &stale_admin] {
        let response = app.get_as("/api/v1/users", token).await;
        assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
        let response = app.get_as("/api/v1/orders?scope=all", token).await;
        assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
        let response = app
            .post_json(
                "/api/v1/products",
                &json!({"sku": "STALE-1", "name": "Stale", "category": "home", "price_cents": 1, "stock": 1}),
                Some(token),
            )
            .await;
        assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Even a token signed with the deployment's key that claims `admin` for a customer
    // account opens nothing an admin may do.
    let tokens = Tokens::new(
        JWT_SECRET.as_bytes(),
        KEY_ID,
        std::time::Duration::from_secs(60),
    )
    .expect("keys");
    let now = unix_now();
    let claiming = tokens
        .sign(&Claims {
            sub: id.to_string(),
            email: "claims@example.com".into(),
            role: Role::Admin,
            iat: now,
            exp: now + 60,
        })
        .expect("sign");
    let response = app.get_as("/api/v1/users", &claiming).await;
    assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
}

/// Admins list and find accounts, a page at a time, never seeing a password hash.
async fn admins_find_accounts(app: TestApp) {
    let admin = app.admin_token().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    for (i, name) in ["Ann", "Bob", "Cyd"].iter().enumerate() {
        let email = format!("find-{tag}-{i}@Example.com");
        let response = app.register(&email, "find password", name).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let bob = app
        .token(&format!("find-{tag}-1@example.com"), "find password")
        .await;
    let bob_id = json_body(app.get_as("/api/v1/users/me", &bob).await).await["id"]
        .as_i64()
        .expect("id");
    let response = app
        .patch_json(
            &format!("/api/v1/users/{bob_id}/role"),
            &json!({"role": "support"}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Case-insensitive, anywhere in the email.
    let page = json_body(
        app.get_as(&format!("/api/v1/users?email=FIND-{tag}"), &admin)
            .await,
    )
    .await;
    assert_eq!(page["total"], 3, "{page}");
    let names: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["display_name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Ann", "Bob", "Cyd"], "oldest first: {page}");
    for user in page["items"].as_array().expect("items") {
        assert!(user.get("password_hash").is_none(), "{user}");
        assert!(user["email"].as_str().expect("email").starts_with("find-"));
    }
    assert!(!page.to_string().contains("argon2"), "{page}");

    // By role, and both.
    let page = json_body(
        app.get_as(&format!("/api/v1/users?email={tag}&role=support"), &admin)
            .await,
    )
    .await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["id"], bob_id, "{page}");
    let page = json_body(app.get_as("/api/v1/users?role=admin", &admin).await).await;
    assert_eq!(page["items"][0]["email"], ADMIN_EMAIL, "{page}");

    // Pages.
    let page = json_body(
        app.get_as(
            &format!("/api/v1/users?email={tag}&page=2&per_page=2"),
            &admin,
        )
        .await,
    )
    .await;
    assert_eq!(
        (page["total"].as_i64(), page["page"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(page["items"][0]["display_name"], "Cyd", "{page}");

    // Wildcards are plain characters: `%` matches no email of the shop.
    let page = json_body(app.get_as("/api/v1/users?email=%25", &admin).await).await;
    assert_eq!(page["total"], 0, "{page}");

    for bad in [
        "role=owner",
        "page=0",
        "per_page=101",
        "colour=blue",
        &format!("email={}", "a".repeat(255)),
    ] {
        let response = app.get_as(&format!("/api/v1/users?{bad}"), &admin).await;
        assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
    }
    let response = app.get_as("/api/v1/users", &bob).await;
    assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.get("/api/v1/users").await;
    assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn registration_input_is_validated(app: TestApp) {
    let cases: [(&str, &str, &str, &str); 8] = [
        ("not-an-email", "long enough", "Ann", "email"),
        ("ann@example", "long enough", "Ann", "email"),
        ("", "long enough", "Ann", "email"),
        ("ann@example.com", "short", "Ann", "password"),
        ("ann@example.com", &"p".repeat(129), "Ann", "password"),
        ("ann@example.com", "long enough", "   ", "display_name"),
        (
            "ann@example.com",
            "long enough",
            &"n".repeat(65),
            "display_name",
        ),
        ("ann@example.com", "long enough", "a\u{7}b", "display_name"),
    ];
    for (email, password, name, field) in cases {
        let response = app.register(email, password, name).await;
        let message =
            assert_json_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert!(message.contains(field), "{field}: {message}");
    }
    assert_eq!(
        app.store.users().count().await.expect("count"),
        1,
        "only the admin"
    );
    assert_eq!(
        app.log_in(ADMIN_EMAIL, ADMIN_PASSWORD).await.status(),
        StatusCode::OK
    );
}
