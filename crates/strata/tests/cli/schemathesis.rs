//! Chat's HTTP operations keep the promises of the document `strata up` serves: schemathesis
//! reads the merged `/openapi.json` through the gateway and runs every check on chat's
//! operations (the WebSocket's upgrade route, history, presence), as anonymous, a customer, a
//! support agent and the admin. The shop's own operations are run against an api instance by
//! `crates/strata-api/tests/api/schemathesis.rs`, with the same runner
//! (`strata_core::testkit::schemathesis_run`).

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use strata_core::testkit::{schemathesis, schemathesis_run};

use crate::harness::spawn_up_with_env;

/// Cases per operation and run: three operations, four runs.
const MAX_EXAMPLES: &str = "40";
/// Fixed, so that a run is reproducible; change it to explore other inputs.
const SEED: &str = "20261206";
/// The longest one run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_chats_operations() {
    let Some(st) = schemathesis() else {
        return;
    };
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "1"],
        &[
            ("STRATA_ADMIN_EMAIL", "root@example.com"),
            ("STRATA_ADMIN_PASSWORD", "root password"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let admin = up.token(&client, "root@example.com", "root password").await;
    let customer = up
        .customer(&client, "st-customer@example.test", "customer password")
        .await;
    let agent = up
        .customer(&client, "st-agent@example.test", "agent password")
        .await;
    let agent_id = up.user_id(&client, &agent).await;
    let granted = client
        .patch(up.url(&format!("/api/v1/users/{agent_id}/role")))
        .bearer_auth(&admin)
        .json(&json!({"role": "support"}))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 200);

    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/schemathesis.toml");
    let document = up.url("/openapi.json");
    let mut failed = Vec::new();
    let mut operations = 0;
    for (who, token) in [
        ("anonymous", None),
        ("customer", Some(customer.as_str())),
        ("support", Some(agent.as_str())),
        ("admin", Some(admin.as_str())),
    ] {
        let mut command = tokio::process::Command::from(schemathesis_run(
            &st,
            Path::new(config),
            &document,
            token,
            MAX_EXAMPLES,
            SEED,
        ));
        command
            .args(["--include-path-regex", "^/api/v1/chat/"])
            .kill_on_drop(true);
        let output = tokio::time::timeout(RUN_LIMIT, command.output())
            .await
            .expect("a schemathesis run ends in time")
            .expect("schemathesis starts");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("{text}");
        // The filter kept chat's operations, and only those.
        operations = operations.max(text.matches("GET /api/v1/chat/").count());
        assert!(!text.contains("/api/v1/products"), "{text}");
        if !output.status.success() {
            failed.push(format!("=== as {who} ===\n{text}"));
        }
    }
    assert!(operations >= 3, "chat's operations were not run");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
