//! `strata health`: the probe container images use as their health check.

use crate::harness::{free_port, run_to_exit, spawn_up, strata};

#[tokio::test]
async fn health_exits_zero_only_for_a_2xx_answer_in_time() {
    let up = spawn_up(&["--api", "1", "--chat", "1"]).await;
    let ready = format!("http://{}/readyz", up.admin);
    let (status, stdout, stderr) = run_to_exit(strata(&["health", &ready])).await;
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("200 OK"), "{stdout}");

    // The URL may come from STRATA_HEALTH_URL (a container sets it per role).
    let mut from_env = strata(&["health"]);
    from_env.env("STRATA_HEALTH_URL", &ready);
    let (status, stdout, stderr) = run_to_exit(from_env).await;
    assert!(status.success(), "{stdout}{stderr}");

    // A 404 is not healthy.
    let missing = up.url("/no-such-page");
    let (status, _, stderr) = run_to_exit(strata(&["health", &missing])).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");

    // Nothing listening: exit 1, saying who did not answer.
    let closed = format!("http://127.0.0.1:{}/readyz", free_port());
    let (status, _, stderr) = run_to_exit(strata(&["health", &closed])).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer"), "{stderr}");

    // A nonsense timeout is a usage error.
    let (status, _, stderr) = run_to_exit(strata(&["health", &ready, "--timeout", "0"])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
}
