//! `strata serve`: two api processes and a gateway, one role per process, sharing one
//! PostgreSQL database (a fresh schema per test, dropped at the end).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use strata_core::testkit::{POSTGRES, require_service};

use crate::harness::{
    Process, START_TIMEOUT, TempDir, free_port, run_to_exit, strata, wait_ready, with_search_path,
};

/// The token signing secret every `strata serve api` of a deployment shares.
const JWT_SECRET: &str = "serve-test-secret-0123456789abcdef";

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
        let mut command = strata(&[
            "serve",
            "api",
            "--listen",
            &listen,
            "--database-url",
            &database_url,
        ]);
        // One secret for both processes: a token from one is accepted by the other.
        command.env("STRATA_AUTH_JWT_SECRET", JWT_SECRET);
        processes.push(Process::spawn(command));
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
        "--instance",
        "gateway-a",
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
    // The gateway answers its probes under the name it was given, as every role does.
    let health: Value = client
        .get(format!("http://127.0.0.1:{admin}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["instance"], "gateway-a", "{health}");
    // The gateway started with the instances and may have found one not listening yet: it is
    // out until it passes `rise` checks. Round robin is judged once both are in.
    strata_core::wait::eventually(
        START_TIMEOUT,
        "both api instances up in the gateway",
        || {
            let client = client.clone();
            async move {
                let pools: Value = client
                    .get(format!("http://127.0.0.1:{admin}/admin/pools"))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let api = pools["pools"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == "api")?;
                let up = api["instances"]
                    .as_array()?
                    .iter()
                    .filter(|i| i["health"] == "up")
                    .count();
                (up == 2).then_some(())
            }
        },
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

    // An account made through one process logs in and is recognised by every process: the
    // token is verified with the shared secret, no session lives in a process.
    let account = serde_json::json!({
        "email": "serve@example.com", "password": "serve password", "display_name": "S"
    });
    let response = client
        .post(format!("http://127.0.0.1:{}/api/v1/users", api_ports[0]))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: Value = client
        .post(format!("http://127.0.0.1:{}/api/v1/sessions", api_ports[1]))
        .json(&serde_json::json!({"email": "serve@example.com", "password": "serve password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().expect("token");
    for port in api_ports {
        let me = client
            .get(format!("http://127.0.0.1:{port}/api/v1/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200, "api on {port}");
    }

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

/// A gateway rate limit keyed on `jwt_subject` checks tokens with the api's secret:
/// `strata serve gateway` refuses to start without it (exit 2, naming the key) rather than
/// quietly counting every user on their address.
#[tokio::test]
async fn a_rate_limit_by_user_needs_the_token_secret() {
    let dir = TempDir::new("jwt-subject");
    let file = dir.path().join("strata.toml");
    std::fs::write(
        &file,
        "[[gateway.rate_limits]]\nkey = \"jwt_subject\"\nper_second = 10.0\n",
    )
    .unwrap();
    let upstream = format!("api=http://127.0.0.1:{}", free_port());
    let args = ["serve", "gateway", "--upstream", &upstream];
    let mut command = strata(&args);
    command.env("STRATA_CONFIG", &file);
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auth.jwt_secret") && stderr.contains("jwt_subject"),
        "{stderr}"
    );
    let mut command = strata(&args);
    command
        .env("STRATA_CONFIG", &file)
        .env("STRATA_AUTH_JWT_SECRET", "too short");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auth.jwt_secret") && !stderr.contains("too short"),
        "{stderr}"
    );
}
