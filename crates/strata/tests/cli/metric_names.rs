//! Every metric the alert rules (`deploy/prometheus/rules.yml`) and the dashboards
//! (`deploy/grafana/*.json`) name exists: the stack is started as `strata up` (embedded
//! store, memory cache and bus) and as `strata serve` roles on PostgreSQL, Redis and NATS
//! (where the Redis circuit breaker's metrics live), each `/metrics` is scraped, and a name
//! the files use but no process exposes fails the test. The `strata serve` roles run with the
//! Kubernetes ConfigMap's `deploy/k8s/base/strata.toml`, as the pods do (so it loads, without
//! an unknown key), with loopback addresses and one bus replica in place of the cluster's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use strata_core::testkit::{NATS, POSTGRES, REDIS, require_service};

use serde_json::Value;

use crate::harness::{
    Process, START_TIMEOUT, Up, free_port, spawn_up_with_env, strata, with_search_path,
};

/// The token signing secret the `strata serve` roles share.
const JWT_SECRET: &str = "metric-names-test-secret-0123456789abcdef";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The files whose metric names must exist: the alert rules and every dashboard.
fn files_naming_metrics() -> Vec<PathBuf> {
    let root = repository();
    let mut files = vec![root.join("deploy/prometheus/rules.yml")];
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(root.join("deploy/grafana"))
        .expect("deploy/grafana")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    dashboards.sort();
    assert!(!dashboards.is_empty(), "no dashboard in deploy/grafana");
    files.extend(dashboards);
    files
}

/// The `strata_…` names in `text`: words that start with `strata_`, so label values, prose
/// and PromQL around them do not matter.
fn strata_names(text: &str) -> BTreeSet<String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("strata_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_word(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_word) {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names a Prometheus text exposition offers: every sample line's name, and for
/// each `# TYPE` line the names of its samples, so that a family without a labelled child
/// yet (no request served, no handler run) still counts.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["", "_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// A catalog read through the gateway, then an account, a cart and a checkout, until the
/// worker has shipped the order.
async fn place_an_order_and_wait_until_shipped(client: &reqwest::Client, up: &Up) {
    let catalog = client
        .get(up.url("/api/v1/products/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(catalog.status(), 200);
    let token = up
        .customer(client, "metrics@example.test", "correct horse battery")
        .await;
    let placed = up.place_order(client, &token, "metric-names-1").await;
    let id = placed["id"].as_i64().expect("an order id");
    strata_core::wait::eventually(START_TIMEOUT, "the order shipped", || {
        let (client, token) = (client.clone(), token.clone());
        let url = up.url(&format!("/api/v1/orders/{id}"));
        async move {
            let order: Value = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (order["status"] == "shipped").then_some(())
        }
    })
    .await;
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.expect("a metrics body")
}

#[test]
fn names_are_found_in_rules_dashboards_and_expositions() {
    let names = strata_names(
        "rate(strata_gateway_requests_total{pool=\"api\"}[5m]) not_strata_x strata_chat_slow_closed_total",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "strata_chat_slow_closed_total",
            "strata_gateway_requests_total"
        ]
    );
    let exposed = exposed_names(
        "# HELP strata_a_requests Requests.\n# TYPE strata_a_requests counter\n\
         # TYPE strata_a_seconds histogram\nstrata_a_seconds_count 0\nstrata_b 1\n# EOF\n",
    );
    for name in [
        "strata_a_requests_total",
        "strata_a_seconds_bucket",
        "strata_a_seconds_sum",
        "strata_a_seconds_count",
        "strata_b",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed:?}");
    }
    assert!(!exposed.contains("strata_a_requests"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_alerts_and_dashboards_use_is_exposed() {
    let mut used = BTreeSet::new();
    for file in files_naming_metrics() {
        let text = std::fs::read_to_string(&file).expect("read a file naming metrics");
        let names = strata_names(&text);
        assert!(
            names.len() >= 5,
            "{} names only {names:?}: is it read right?",
            file.display()
        );
        used.extend(names);
    }
    let (Some(postgres), Some(redis), Some(nats)) = (
        require_service(POSTGRES),
        require_service(REDIS),
        require_service(NATS),
    ) else {
        return;
    };

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut exposed = BTreeSet::new();

    // The whole stack in one process, with a catalog read and an order the worker pays and
    // ships: families with labels show once a child exists (a response, a cache lookup, a
    // handled event).
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        &[("STRATA_WORKER_PAYMENT_DECLINE_RATE", "0")],
    )
    .await;
    place_an_order_and_wait_until_shipped(&client, &up).await;
    let mut urls = vec![format!("http://{}/metrics", up.admin)];
    for role in ["api", "chat", "worker"] {
        let rows = up.instances(role);
        assert!(
            !rows.is_empty(),
            "no {role} instance in:\n{}",
            up.process.stdout()
        );
        urls.extend(
            rows.iter()
                .map(|row| format!("http://{}/metrics", row.addr)),
        );
    }
    for url in &urls {
        exposed.extend(exposed_names(&scrape(&client, url).await));
    }
    drop(up);

    // One role per process, configured as the Kubernetes pods are.
    let (store, schema) = strata_store::testing::fresh_postgres(&postgres)
        .await
        .unwrap();
    store.close().await.unwrap();
    let database_url = with_search_path(&postgres, schema.schema());
    let namespace = format!("metrics{}", uuid::Uuid::new_v4().simple());
    let config = repository().join("deploy/k8s/base/strata.toml");
    let config = config.to_str().expect("a UTF-8 path");
    let env = [
        ("STRATA_STORE_DATABASE_URL", database_url.as_str()),
        ("STRATA_CACHE_URL", redis.as_str()),
        ("STRATA_CACHE_PREFIX", namespace.as_str()),
        ("STRATA_BUS_URL", nats.as_str()),
        ("STRATA_BUS_NAMESPACE", namespace.as_str()),
        // One NATS server here: the cluster's three stream copies cannot be made.
        ("STRATA_BUS_REPLICAS", "1"),
        ("STRATA_AUTH_JWT_SECRET", JWT_SECRET),
        ("STRATA_GATEWAY_ADMIN_TOKEN", "metric-names-admin-token"),
        ("STRATA_WORKER_ADMIN_TOKEN", "metric-names-admin-token"),
    ];
    let (api, chat, worker) = (free_port(), free_port(), free_port());
    let (public, admin) = (free_port(), free_port());
    let loopback = |port: u16| format!("127.0.0.1:{port}");
    let roles: [(&str, Vec<String>); 4] = [
        ("api", vec!["--listen".into(), loopback(api)]),
        ("chat", vec!["--listen".into(), loopback(chat)]),
        ("worker", vec!["--listen".into(), loopback(worker)]),
        (
            "gateway",
            vec![
                "--listen".into(),
                loopback(public),
                "--admin-listen".into(),
                loopback(admin),
                "--upstream".into(),
                format!("api=http://{}", loopback(api)),
                "--upstream".into(),
                format!("chat=http://{}", loopback(chat)),
            ],
        ),
    ];
    let mut processes = Vec::new();
    for (role, flags) in &roles {
        let mut args = vec!["--config", config, "serve", role];
        args.extend(flags.iter().map(String::as_str));
        let mut command = strata(&args);
        command.envs(env);
        processes.push(Process::spawn(command));
    }
    for port in [api, chat, worker, admin] {
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(response) = client.get(&ready).send().await
                && response.status() == 200
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let logs: Vec<String> = processes.iter().map(Process::stderr).collect();
                panic!("{ready} not ready; stderr:\n{}", logs.join("\n---\n"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    for port in [api, chat, worker, admin] {
        exposed.extend(exposed_names(
            &scrape(&client, &format!("http://127.0.0.1:{port}/metrics")).await,
        ));
    }
    for process in &processes {
        process.terminate();
    }
    for process in &mut processes {
        process.wait_exit(std::time::Duration::from_secs(20)).await;
    }
    drop(processes);
    drop(schema);

    let missing: Vec<&String> = used.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "metrics named in deploy/prometheus/rules.yml or deploy/grafana but exposed by no \
         process: {missing:?}\n(exposed: {exposed:?})"
    );
    assert!(
        used.len() >= 30,
        "only {} metric names found in the rules and dashboards: {used:?}",
        used.len()
    );
}
