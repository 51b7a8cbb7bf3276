//! Secrets never reach the logs: the whole stack (`strata up`) at the most verbose level, every
//! request in the access log, used the way its users and operators use it — the admin
//! bootstrapped, a customer who registers, logs in (and fails to), shops and chats with the
//! token in the WebSocket URL, forged tokens, the gateway's and the worker's admin endpoints
//! with right and wrong tokens — writes none of the secrets, passwords or tokens, in any role
//! or library.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use strata_chat::client::{ChatClient, Event, ws_url};
use strata_chat::protocol::{ClientFrame, ServerFrame};

use crate::harness::{START_TIMEOUT, spawn_up_with_env};

const JWT_SECRET: &str = "a jwt secret of at least thirty-two bytes, for the log test";
const ADMIN_PASSWORD: &str = "the admin's password";
const GATEWAY_TOKEN: &str = "gateway-admin-token-for-the-log-test";
const WORKER_TOKEN: &str = "worker-admin-token-for-the-log-test";

#[tokio::test]
async fn no_secret_or_token_reaches_the_logs_of_any_role() {
    let mut up = spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        &[
            ("STRATA_LOG_LEVEL", "trace"),
            ("STRATA_LOG_ACCESS_SAMPLE", "1.0"),
            ("STRATA_LOG_FORMAT", "json"),
            ("STRATA_LOG_ACCESS_SAMPLE", "1"),
            ("STRATA_AUTH_JWT_SECRET", JWT_SECRET),
            ("STRATA_ADMIN_EMAIL", "root@example.com"),
            ("STRATA_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("STRATA_GATEWAY_ADMIN_TOKEN", GATEWAY_TOKEN),
            ("STRATA_WORKER_ADMIN_TOKEN", WORKER_TOKEN),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let password = "a customer's secret password";
    let wrong_password = "a wrong guess of it";
    let token = up.customer(&client, "logs@example.com", password).await;
    let wrong = up.log_in(&client, "logs@example.com", wrong_password).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let admin = up.token(&client, "root@example.com", ADMIN_PASSWORD).await;
    let forged = format!("{token}x");
    let user_id = up.user_id(&client, &token).await;
    for (path, bearer, status) in [
        ("/api/v1/users/me", token.as_str(), StatusCode::OK),
        ("/api/v1/orders", admin.as_str(), StatusCode::OK),
        (
            "/api/v1/users/me",
            forged.as_str(),
            StatusCode::UNAUTHORIZED,
        ),
        // A failing request is logged with its cause: that path is covered too.
        (
            "/api/v1/orders/999999",
            token.as_str(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = client
            .get(up.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), status, "{path}");
    }
    up.place_order(&client, &token, "logs-1").await;

    // Chat through the gateway, the token in the URL (as browsers must send it), and a
    // forged one refused.
    let room = format!("support-{user_id}");
    let url = ws_url(&up.url(""), Some(&token), Some(&room), None);
    let mut chat = ChatClient::connect(&url).await.expect("chat connects");
    let frame = ClientFrame::Send {
        room: room.clone(),
        client_id: "log-test-1".to_owned(),
        body: "hello".to_owned(),
    };
    chat.send(&frame).await.expect("send");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Frame(ServerFrame::Ack { .. }) = chat.next().await.expect("a frame") {
                return;
            }
        }
    })
    .await
    .expect("the message is acknowledged");
    chat.close().await;
    let url = ws_url(&up.url(""), Some(&forged), Some(&room), None);
    assert!(ChatClient::connect(&url).await.is_err(), "a forged token");

    // The operators' endpoints, with their tokens and with wrong ones.
    let worker = up.instances("worker")[0].addr;
    for (url, bearer, status) in [
        (
            format!("http://{}/admin/pools", up.admin),
            GATEWAY_TOKEN,
            StatusCode::OK,
        ),
        (
            format!("http://{}/admin/pools", up.admin),
            "not-the-gateway-admin-token",
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("http://{worker}/events/stats"),
            WORKER_TOKEN,
            StatusCode::OK,
        ),
        (
            format!("http://{worker}/events/stats"),
            "not-the-worker-admin-token",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let response = client
            .get(&url)
            .bearer_auth(bearer)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), status, "{url}");
    }

    up.process.terminate();
    assert!(
        up.process.wait_exit(START_TIMEOUT).await.is_some(),
        "strata up stops on SIGTERM"
    );
    let logs = format!("{}\n{}", up.process.stdout(), up.process.stderr());
    // Enough of the run is in the logs to judge: every role's request lines at least.
    for needle in [
        "/api/v1/sessions",
        "/api/v1/chat/ws",
        "/admin/pools",
        "/events/stats",
    ] {
        assert!(logs.contains(needle), "no {needle} in the logs");
    }
    let signature = |token: &str| token.rsplit('.').next().expect("signature").to_owned();
    for (what, secret) in [
        ("the JWT secret", JWT_SECRET.to_owned()),
        ("the admin's password", ADMIN_PASSWORD.to_owned()),
        ("a customer's password", password.to_owned()),
        ("a wrong password", wrong_password.to_owned()),
        ("a customer's token", token.clone()),
        ("its signature", signature(&token)),
        ("the admin's token", admin.clone()),
        ("its signature", signature(&admin)),
        ("a forged token", forged.clone()),
        ("the gateway's admin token", GATEWAY_TOKEN.to_owned()),
        (
            "a wrong gateway admin token",
            "not-the-gateway-admin-token".to_owned(),
        ),
        ("the worker's admin token", WORKER_TOKEN.to_owned()),
        (
            "a wrong worker admin token",
            "not-the-worker-admin-token".to_owned(),
        ),
    ] {
        if let Some(at) = logs.find(&secret) {
            let line = logs[..at].rsplit('\n').next().unwrap_or_default();
            let rest = logs[at..].split('\n').next().unwrap_or_default();
            panic!("{what} is in the logs:\n{line}{rest}");
        }
    }
}

/// Log lines of `stderr` that are JSON objects, each checked to be one.
pub(crate) fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with("strata: "))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[tokio::test]
async fn the_default_level_writes_no_line_per_request_or_health_check() {
    let up = spawn_up_with_env(&["--api", "1", "--chat", "1"], &[]).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        let response = client
            .get(up.url("/api/v1/products?per_page=1"))
            .send()
            .await
            .expect("GET /products");
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Three rounds of the gateway's health checks (every 500 ms).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let stderr = up.process.stderr();
    let lines = json_lines(&stderr);
    let per_request: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request")
        .collect();
    assert!(per_request.is_empty(), "{per_request:#?}");
    assert!(
        lines.len() < 40,
        "{} lines at start-up:\n{stderr}",
        lines.len()
    );
}

#[tokio::test]
async fn the_access_log_is_a_setting_and_leaves_health_checks_out() {
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        &[("STRATA_LOG_ACCESS_SAMPLE", "1")],
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        client
            .get(up.url("/api/v1/products?per_page=1"))
            .send()
            .await
            .expect("GET /products");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let lines = json_lines(&up.process.stderr());
    let requests = |target: &str| {
        lines
            .iter()
            .filter(|line| line["target"] == target && line["message"] == "request")
            .map(|line| line["path"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let (gateway, instance) = (
        requests("strata_gateway::access"),
        requests("strata_core::access"),
    );
    assert_eq!(gateway, vec!["/api/v1/products"; 5], "{lines:#?}");
    assert_eq!(instance, vec!["/api/v1/products"; 5], "{lines:#?}");
}

#[tokio::test]
async fn pretty_logs_are_lines_for_people() {
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "1", "--log-format", "pretty"],
        &[],
    )
    .await;
    let stderr = up.process.stderr();
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        stderr.lines().all(|line| !line.starts_with('{')),
        "{stderr}"
    );
}
