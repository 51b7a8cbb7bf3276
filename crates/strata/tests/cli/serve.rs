//! `strata serve`: two api processes and a gateway, one role per process, sharing one
//! PostgreSQL database (a fresh schema per test, dropped at the end).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use strata_core::testkit::{POSTGRES, require_service};

use crate::harness::{Process, START_TIMEOUT, free_port, strata, wait_ready};

/// `base` with every connection's `search_path` set to `schema`.
fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_roles_as_separate_processes_on_postgres() {
    let Some(base) = require_service(POSTGRES) else {
        return;
    };
    // The schema only: the api processes migrate and seed it themselves, both at once.
    let (store, schema) = strata_store::testing::fresh_postgres(&base).await.unwrap();
    store.close().await.unwrap();
    let database_url = with_search_path(&base, schema.schema());

    let api_ports = [free_port(), free_port()];
    let mut processes = Vec::new();
    for port in api_ports {
        let listen = format!("127.0.0.1:{port}");
        processes.push(Process::spawn(strata(&[
            "serve",
            "api",
            "--listen",
            &listen,
            "--database-url",
            &database_url,
        ])));
    }
    let (public, admin) = (free_port(), free_port());
    let upstream = format!(
        "api=http://127.0.0.1:{},http://127.0.0.1:{}",
        api_ports[0], api_ports[1]
    );
    processes.push(Process::spawn(strata(&[
        "serve",
        "gateway",
        "--listen",
        &format!("127.0.0.1:{public}"),
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--upstream",
        &upstream,
    ])));

    let client = reqwest::Client::new();
    for port in api_ports {
        wait_ready(
            &client,
            &format!("http://127.0.0.1:{port}/readyz"),
            START_TIMEOUT,
        )
        .await;
    }
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{admin}/readyz"),
        START_TIMEOUT,
    )
    .await;

    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let response = client
            .get(format!(
                "http://127.0.0.1:{public}/api/v1/products?per_page=10"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        seen.insert(
            response.headers()["x-strata-instance"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["total"].as_u64().unwrap() >= 50, "{body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 10);
    }
    let expected: BTreeSet<String> = api_ports
        .iter()
        .map(|p| format!("api@127.0.0.1:{p}"))
        .collect();
    assert_eq!(seen, expected);

    // Every role stops cleanly on SIGTERM.
    for process in &processes {
        process.terminate();
    }
    for process in &mut processes {
        let status = process
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("exit after SIGTERM");
        assert!(status.success(), "{status}\n{}", process.stderr());
    }
    // Only now, with every connection closed, is the schema dropped (by the guard).
    drop(processes);
    drop(schema);
}
