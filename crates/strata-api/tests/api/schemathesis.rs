//! The server keeps the promises of its OpenAPI document: schemathesis reads `/openapi.json`,
//! generates requests from it (valid ones and ones that break a declared limit) and runs all
//! of its checks on the answers: no 5xx, every status documented, every body and content type
//! as documented, invalid input refused, valid input accepted. Three runs: anonymous, as a
//! customer and as the admin.
//!
//! schemathesis comes from PyPI: `scripts/schemathesis.sh` installs it (`.ci/run` calls it).
//! The test runs `$SCHEMATHESIS` when set, else the script's install. Without it the test
//! fails under `CI=true` and is skipped loudly elsewhere. Chat's operations, in the document
//! `strata up` serves, are run by the binary's tests (`crates/strata/tests/cli/schemathesis.rs`).

use std::path::Path;
use std::time::Duration;

use strata_core::testkit::{schemathesis, schemathesis_run};

use crate::helpers::{Backend, TestApp, spawn_app};

/// Cases per operation and run: with about 17 operations, three runs stay within a couple of
/// minutes on a 2-core machine.
const MAX_EXAMPLES: &str = "40";
/// Fixed, so that a run is reproducible and CI does not turn red at random; change it to
/// explore other inputs.
const SEED: &str = "20261205";
/// The longest one run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure() {
    let Some(st) = schemathesis() else {
        return;
    };
    let app = spawn_app(Backend::Sqlite).await.expect("SQLite app");
    let (_, customer) = app.customer().await;
    let admin = app.admin_token().await;
    let mut failed = Vec::new();
    for (who, token) in [
        ("anonymous", None),
        ("customer", Some(customer.as_str())),
        ("admin", Some(admin.as_str())),
    ] {
        if let Some(report) = run(&st, &app, token).await {
            failed.push(format!("=== as {who} ===\n{report}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// One schemathesis run against `app`, with `token` as the bearer of every request. `None`
/// when it passed; its output when it did not.
async fn run(st: &Path, app: &TestApp, token: Option<&str>) -> Option<String> {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let url = format!("{}/openapi.json", app.base);
    let mut command = tokio::process::Command::from(schemathesis_run(
        st,
        Path::new(config),
        &url,
        token,
        MAX_EXAMPLES,
        SEED,
    ));
    command.kill_on_drop(true);
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
    (!output.status.success()).then_some(text)
}
