//! The event pipeline in `strata up`: a checkout through the gateway is paid and shipped by the
//! worker, the customer sees each step in the order's history and in their notifications, and
//! `strata events` reports the streams and the (empty) dead-letter stream.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_bus::{AnyBus, Bus, NatsBus};
use strata_core::testkit::{NATS, POSTGRES, require_service};
use strata_store::testing::{self, pipeline};
use strata_worker::EventStats;

use crate::harness::{Process, run_to_exit, spawn_up_with_env, strata, with_search_path};

#[tokio::test]
async fn a_checkout_in_up_is_paid_shipped_and_notified() {
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        // Nobody is declined, so the order must end shipped.
        &[("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0")],
    )
    .await;
    let worker = up.instances("worker")[0].addr;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let email = "pipeline@example.test";
    let password = "correct horse battery";
    let registered = client
        .post(up.url("/api/v1/users"))
        .json(&json!({"email": email, "password": password, "display_name": "Pip"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let session: Value = client
        .post(up.url("/api/v1/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();

    // Notifications need a token.
    let anonymous = client
        .get(up.url("/api/v1/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let added = client
        .post(up.url("/api/v1/cart/items"))
        .bearer_auth(&token)
        .json(&json!({"product_id": 1, "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success(), "{}", added.status());
    let placed: Value = client
        .post(up.url("/api/v1/orders"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "pipeline-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = placed["id"].as_i64().unwrap();
    assert_eq!(placed["status"], "placed");

    // The worker takes it from there, with `strata up`'s demo fulfilment delay (3 s) between
    // paid and shipped, so the order is seen to move.
    let placed_at = Instant::now();
    let mut seen_paid = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let order = loop {
        let order: Value = client
            .get(up.url(&format!("/api/v1/orders/{order_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if order["status"] == "shipped" {
            break order;
        }
        seen_paid |= order["status"] == "paid";
        assert!(Instant::now() < deadline, "{order}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let history: Vec<&str> = order["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["placed", "paid", "shipped"]);
    assert!(seen_paid, "never seen paid");
    assert!(
        placed_at.elapsed() >= Duration::from_millis(2500),
        "shipped after {:?}",
        placed_at.elapsed()
    );
    assert!(order["history"][2]["at"].is_string());

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = client
            .get(up.url("/api/v1/notifications"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["total"] == 3 {
            let kinds: Vec<&str> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["kind"].as_str().unwrap())
                .collect();
            // Newest change first, seconds apart.
            assert_eq!(kinds, ["shipped", "paid", "placed"], "{page}");
            assert_eq!(page["items"][0]["order_id"], order_id);
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The operator's view.
    let url = format!("http://{worker}");
    let (status, stdout, stderr) =
        run_to_exit(strata(&["events", "stats", "--json", "--url", &url])).await;
    assert!(status.success(), "{stderr}");
    let stats: Value = serde_json::from_str(stdout.trim()).unwrap();
    let order_stream = stats["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "order")
        .unwrap();
    assert_eq!(order_stream["published"], 3, "{stats}");
    let consumers: Vec<&str> = order_stream["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["consumer"].as_str().unwrap())
        .collect();
    assert_eq!(consumers, ["fulfilment", "notifications", "payment"]);
    let (status, stdout, stderr) = run_to_exit(strata(&["events", "stats", "--url", &url])).await;
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("dead letters: 0"), "{stdout}");
    let (status, stdout, stderr) =
        run_to_exit(strata(&["events", "dlq", "list", "--url", &url])).await;
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("0 dead letter(s)"), "{stdout}");
    let (status, stdout, stderr) =
        run_to_exit(strata(&["events", "dlq", "replay", "7", "--url", &url])).await;
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("not in the dead-letter stream: [7]"),
        "{stdout}"
    );

    // A worker that is not there is a clear error, not a hang.
    let (status, _, stderr) =
        run_to_exit(strata(&["events", "stats", "--url", "http://127.0.0.1:9"])).await;
    assert!(!status.success());
    assert!(stderr.contains("cannot reach the worker"), "{stderr}");
}

/// 1,000 checkouts on PostgreSQL + NATS while the `strata serve worker` process is killed with
/// SIGKILL twice mid-processing and started again: nothing is lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_killed_twice_lose_nothing_on_nats_and_postgres() {
    const ORDERS: usize = 1000;
    let Some(base) = require_service(POSTGRES) else {
        return;
    };
    let Some(nats) = require_service(NATS) else {
        return;
    };
    let (store, schema) = testing::fresh_postgres(&base).await.unwrap();
    store.migrate().await.unwrap();
    let database_url = with_search_path(&base, schema.schema());
    let namespace = format!("kill{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let products = pipeline::products(&store, 4).await;

    let start_worker = || {
        let mut command = strata(&[
            "serve",
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
            "--bus",
            &nats,
        ]);
        command
            .env("STRATA_BUS_NAMESPACE", &namespace)
            .env("STRATA_WORKER_ACK_WAIT_MS", "1500")
            .env("STRATA_WORKER_RETRY_BASE_MS", "20")
            .env("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0.2")
            .env("STRATA_WORKER_PAYMENT_LATENCY_MS", "1");
        Process::spawn(command)
    };
    let mut worker = start_worker();
    let placing = {
        let store = store.clone();
        let products = products.clone();
        tokio::spawn(async move { pipeline::place_orders(&store, &products, 20, ORDERS).await })
    };
    for round in 1..=2_i64 {
        pipeline::wait_final(&store, round * 250, Duration::from_secs(90)).await;
        worker.kill();
        assert!(worker.wait_exit(Duration::from_secs(5)).await.is_some());
        worker = start_worker();
    }
    placing.await.unwrap();
    let bus = AnyBus::Nats(NatsBus::connect(&nats, &namespace).await.unwrap());
    pipeline::settle(&store, Duration::from_secs(120), || async {
        EventStats::read(&bus, &store)
            .await
            .is_ok_and(|s| s.is_quiet())
    })
    .await;
    worker.terminate();
    assert!(worker.wait_exit(Duration::from_secs(15)).await.is_some());
    pipeline::check_invariants(&store, &products, ORDERS).await;
    if let AnyBus::Nats(bus) = &bus {
        let _ = bus.delete_namespace_streams().await;
    }
    let _ = bus.close().await;
}

/// `strata events dlq list` lines its columns up whatever their width: an RFC 3339 time with
/// fractions, a long subject, the error text.
#[tokio::test]
async fn the_dead_letter_table_lines_up() {
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        &[
            // Every payment call fails and is dead-lettered at once.
            ("STRATA_WORKER_PAYMENT_ERROR_RATE", "1"),
            ("STRATA_WORKER_MAX_DELIVERIES", "1"),
        ],
    )
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = up
        .customer(&client, "dlq@example.test", "correct horse battery")
        .await;
    up.place_order(&client, &token, "dlq-1").await;
    let url = format!("http://{}", up.instances("worker")[0].addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stdout = loop {
        let (status, stdout, stderr) =
            run_to_exit(strata(&["events", "dlq", "list", "--url", &url])).await;
        assert!(status.success(), "{stderr}");
        if !stdout.contains("0 dead letter(s)") {
            break stdout;
        }
        assert!(Instant::now() < deadline, "{stdout}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lines: Vec<&str> = stdout.lines().collect();
    let (header, row) = (lines[0], lines[1]);
    // Where each of the row's first six words starts (the error is the rest of the line).
    let mut starts = Vec::new();
    let mut from = 0;
    for word in row.split_whitespace().take(6) {
        let at = from + row[from..].find(word).unwrap();
        starts.push(at);
        from = at + word.len();
    }
    let head = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("{name}: {stdout}"))
    };
    // Left-aligned columns start where their header starts; right-aligned ones end there.
    assert_eq!(starts[1], head("handler"), "{stdout}");
    assert_eq!(starts[2], head("subject"), "{stdout}");
    let tries_end = starts[3] + row[starts[3]..].find(' ').unwrap();
    assert_eq!(tries_end, head("tries") + "tries".len(), "{stdout}");
    assert_eq!(starts[4], head("failed at"), "{stdout}");
    assert_eq!(starts[5], head("error"), "{stdout}");
}
