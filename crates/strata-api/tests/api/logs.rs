//! Secrets and tokens never reach the logs: a run at the most verbose level that bootstraps
//! the admin, registers, logs in (and fails to), and uses valid and forged tokens, captured
//! whole, holds none of the JWT secret, the passwords or the tokens.

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, Backend, JWT_SECRET, spawn_app};

/// The captured log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// On the test's one thread, where the server's tasks run too, so their events are captured.
#[tokio::test(flavor = "current_thread")]
async fn secrets_and_tokens_never_reach_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let app = spawn_app(Backend::Sqlite).await.expect("SQLite app");
    let password = "a customer's secret password";
    let response = app.register("logs@example.com", password, "Logs").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let token = app.token("logs@example.com", password).await;
    let wrong = app.log_in("logs@example.com", "a wrong guess of it").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let admin = app.admin_token().await;
    assert_eq!(
        app.get_as("/api/v1/users/me", &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_as("/api/v1/orders", &admin).await.status(),
        StatusCode::OK
    );
    let line = json!({"product_id": 1, "quantity": 1});
    let response = app
        .post_json("/api/v1/cart/items", &line, Some(&token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let forged = format!("{token}x");
    let response = app.get_as("/api/v1/users/me", &forged).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A failing request is logged with its cause: that path is covered too.
    let response = app.get_as("/api/v1/orders/1", &token).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    app.stop().await.expect("stops");

    let logs = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("UTF-8");
    assert!(
        logs.lines().count() > 10,
        "too little was logged to judge:\n{logs}"
    );
    let signature = |token: &str| token.rsplit('.').next().expect("signature").to_owned();
    for (what, secret) in [
        ("the JWT secret", JWT_SECRET.to_owned()),
        ("the admin's password", ADMIN_PASSWORD.to_owned()),
        ("a customer's password", password.to_owned()),
        ("a wrong password", "a wrong guess of it".to_owned()),
        ("a customer's token", token.clone()),
        ("its signature", signature(&token)),
        ("the admin's token", admin.clone()),
        ("its signature", signature(&admin)),
        ("a forged token", forged.clone()),
    ] {
        assert!(!logs.contains(&secret), "{what} is in the logs:\n{logs}");
    }
}
