//! `strata up`: the catalog through the gateway, round-robin spread, metrics that agree with
//! the client, JSON errors, and `strata bench` against it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::harness::{
    BIN, gateway_requests_by_instance, run_to_exit, spawn_up, spawn_up_with_env, strata,
};

#[tokio::test]
async fn up_serves_the_catalog_and_spreads_requests_evenly() {
    let up = spawn_up(&["--api", "3", "--chat", "2"]).await;
    assert_eq!(up.instances("api").len(), 3, "{}", up.process.stdout());
    assert_eq!(up.instances("chat").len(), 2);
    let client = reqwest::Client::new();

    // The seeded catalog, page by page.
    let mut products = Vec::new();
    let mut total = None;
    for page in 1..=20 {
        let response = client
            .get(up.url(&format!("/api/v1/products?page={page}&per_page=20")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let body: Value = response.json().await.unwrap();
        total = body["total"].as_u64();
        let items = body["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        products.extend(items);
    }
    let total = total.unwrap();
    assert!(total >= 50, "total {total}");
    assert_eq!(products.len() as u64, total);
    let categories: BTreeSet<&str> = products
        .iter()
        .filter_map(|p| p["category"].as_str())
        .collect();
    assert!(categories.len() >= 5, "{categories:?}");

    // Which address each instance name listens on, as the instance itself says.
    let mut address_of = BTreeMap::new();
    for row in up.instances("api") {
        let health: Value = client
            .get(format!("http://{}/healthz", row.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            health["instance"],
            row.name.as_str(),
            "the table and /healthz disagree"
        );
        address_of.insert(row.name.clone(), row.addr.to_string());
    }

    // 300 sequential requests: round robin gives each of the 3 instances 100 (±1 for whatever
    // position the rotation was in).
    let before = gateway_requests_by_instance(&client, up.admin).await;
    let mut served_by: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..300 {
        let response = client
            .get(up.url("/api/v1/products?per_page=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let instance = response.headers()["x-strata-instance"]
            .to_str()
            .unwrap()
            .to_owned();
        *served_by.entry(instance).or_default() += 1;
    }
    assert_eq!(
        served_by.keys().collect::<Vec<_>>(),
        address_of.keys().collect::<Vec<_>>()
    );
    for (name, n) in &served_by {
        assert!((99..=101).contains(n), "{name} served {n}: {served_by:?}");
    }

    // The gateway's own per-instance counters saw exactly what the client saw.
    let after = gateway_requests_by_instance(&client, up.admin).await;
    for (name, n) in &served_by {
        let addr = &address_of[name];
        let delta = after.get(addr).copied().unwrap_or(0) - before.get(addr).copied().unwrap_or(0);
        assert_eq!(
            delta, *n,
            "{name} at {addr}: metrics {delta}, client {n}; before {before:?} after {after:?}"
        );
    }
}

#[tokio::test]
async fn up_answers_errors_as_json_and_never_with_5xx() {
    let up = spawn_up(&["--api", "2", "--chat", "1"]).await;
    let client = reqwest::Client::new();
    for (path, status) in [
        ("/api/v1/no-such-route", 404),
        ("/definitely/not/here", 404),
        ("/api/v1/products/abc", 400),
        ("/api/v1/products/-1", 400),
        ("/api/v1/products/999999999", 404),
        ("/api/v1/products?per_page=0", 400),
    ] {
        let response = client.get(up.url(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: {content_type}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
        assert!(body["error"]["message"].is_string(), "{path}: {body}");
    }

    // `strata bench` against the same stack: a JSON report on stdout, nothing else there.
    let url = up.url("/api/v1/products?per_page=2");
    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench", "--url", &url, "-c", "4", "-n", "200", "--json",
    ]))
    .await;
    assert!(status.success(), "{BIN} bench: {status}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["requests"], 200);
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["statuses"]["200"], 200);
    assert_eq!(
        report["per_instance"].as_object().unwrap().len(),
        2,
        "{report}"
    );
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][key].as_f64().unwrap() > 0.0,
            "{key}: {report}"
        );
    }
    assert!(report["req_per_sec"].as_f64().unwrap() > 0.0);
}

/// Accounts in `strata up`: the generated JWT secret is kept (0600) in the data directory, the
/// admin from `STRATA_ADMIN_*` exists, every instance accepts every token, and an admin's price
/// change is read back by every instance at once (they share one memory cache).
#[tokio::test]
async fn up_keeps_its_secret_bootstraps_the_admin_and_invalidates_every_instance() {
    let up = spawn_up_with_env(
        &["--api", "3", "--chat", "1"],
        &[
            ("STRATA_ADMIN_EMAIL", "Root@Example.com"),
            ("STRATA_ADMIN_PASSWORD", "root password"),
        ],
    )
    .await;
    let secret_file = up.data_dir().join("jwt.secret");
    let secret = std::fs::read_to_string(&secret_file).expect("jwt.secret");
    assert_eq!(secret.trim().len(), 64, "32 random bytes, hex");
    assert!(secret.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    let client = reqwest::Client::new();
    let token = up.token(&client, "root@example.com", "root password").await;
    for row in up.instances("api") {
        let me: Value = client
            .get(format!("http://{}/api/v1/users/me", row.addr))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["role"], "admin", "via {}", row.name);
    }

    for price in [123_456_i64, 654_321] {
        // Fill every instance's view of product 1 (one cache, but every instance reads it).
        for row in up.instances("api") {
            let response = client
                .get(format!("http://{}/api/v1/products/1", row.addr))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        let response = client
            .patch(up.url("/api/v1/products/1"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"price_cents": price}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        for row in up.instances("api") {
            let product: Value = client
                .get(format!("http://{}/api/v1/products/1", row.addr))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(product["price_cents"], price, "via {}", row.name);
        }
    }
}

/// What happens once is said once: three api instances bootstrap one admin account (one line),
/// and a restart finds the demo catalog seeded (no line about it).
#[tokio::test]
async fn start_up_events_are_logged_once() {
    let dir = crate::harness::TempDir::new("once");
    let data = dir.path().join("data");
    let env = [
        ("STRATA_ADMIN_EMAIL", "root@example.com"),
        ("STRATA_ADMIN_PASSWORD", "the admin's password"),
    ];
    let mut first = crate::harness::spawn_up_in(&data, &["--api", "3", "--chat", "1"], &env).await;
    let stderr = first.process.stderr();
    assert_eq!(stderr.matches("admin account").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("demo catalog seeded").count(), 1, "{stderr}");
    first.process.terminate();
    let stopped = first.process.wait_exit(crate::harness::START_TIMEOUT).await;
    assert!(stopped.is_some());
    let second = crate::harness::spawn_up_in(&data, &["--api", "3", "--chat", "1"], &env).await;
    let stderr = second.process.stderr();
    assert!(!stderr.contains("admin account"), "{stderr}");
    assert!(!stderr.contains("demo catalog"), "{stderr}");
}

/// `/openapi.json` through the gateway describes the whole public interface: the api's
/// endpoints and chat's (the WebSocket, history, presence), which the gateway routes to chat.
#[tokio::test]
async fn the_openapi_document_describes_the_chat_endpoints_too() {
    let up = spawn_up(&["--api", "1", "--chat", "1"]).await;
    let document: Value = reqwest::get(up.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/chat/ws",
        "/api/v1/chat/rooms/{id}/messages",
        "/api/v1/chat/presence",
        "/api/v1/products",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "{path}");
    }
    let history = &document["paths"]["/api/v1/chat/rooms/{id}/messages"]["get"];
    let page = history["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let name = page.rsplit('/').next().unwrap();
    let schema = &document["components"]["schemas"][name];
    assert!(schema["properties"]["next_after"].is_object(), "{schema}");
    let message = document["components"]["schemas"]["ChatMessage"]["properties"].clone();
    for field in ["id", "sender", "sent_at", "client_id", "body", "room"] {
        assert!(message[field].is_object(), "{field}: {message}");
    }
}
