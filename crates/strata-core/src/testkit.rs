//! Helpers for tests that need a real server (PostgreSQL, Redis, NATS).
//!
//! A test asks for a service by the environment variable that names its URL. When the server
//! cannot be reached, the test fails under CI (`CI=true`) and is skipped with a loud message on a
//! developer machine, so a missing server is never mistaken for a passing test.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The URL of PostgreSQL for tests: `TEST_POSTGRES_URL`, or the local default.
pub const POSTGRES: (&str, &str) = (
    "TEST_POSTGRES_URL",
    "postgres://postgres@127.0.0.1:5432/test",
);
/// The URL of Redis for tests: `TEST_REDIS_URL`, or the local default.
pub const REDIS: (&str, &str) = ("TEST_REDIS_URL", "redis://127.0.0.1:6379");
/// The URL of NATS (with JetStream) for tests: `TEST_NATS_URL`, or the local default.
pub const NATS: (&str, &str) = ("TEST_NATS_URL", "nats://127.0.0.1:4222");
/// The endpoint of an S3-compatible server for tests (moto's, as `scripts/services.sh` starts
/// it): `TEST_S3_URL`, or the local default.
pub const S3: (&str, &str) = ("TEST_S3_URL", "http://127.0.0.1:5000");

/// Returns the service's URL when its server accepts TCP connections.
///
/// # Panics
/// When the server is unreachable and `CI` is `true` (or `1`): in CI a missing server is a failure.
pub fn require_service(service: (&str, &str)) -> Option<String> {
    let (var, default) = service;
    let url = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    if reachable(&url) {
        return Some(url);
    }
    let in_ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(
        !in_ci,
        "{var}: server at {url} is unreachable and CI=true: failing, not skipping"
    );
    eprintln!(
        "\n!!!! SKIPPED: {var}: server at {url} is unreachable (set CI=true to fail instead) !!!!\n"
    );
    None
}

/// The `st` executable of schemathesis (PyPI), the OpenAPI contract tester: `$SCHEMATHESIS`,
/// or where `scripts/schemathesis.sh` installs it
/// (`${XDG_CACHE_HOME:-$HOME/.cache}/strata/schemathesis/bin/st`). `None` (after a loud
/// message) when there is none and `CI` is not `true`.
///
/// # Panics
/// When there is none and `CI=true`.
pub fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|cache| cache.join("strata/schemathesis/bin/st"))
        })
        .filter(|path| path.is_file());
    if path.is_some() {
        return path;
    }
    let in_ci = matches!(std::env::var("CI").as_deref(), Ok("true" | "1"));
    assert!(
        !in_ci,
        "schemathesis is not installed and CI=true: run scripts/schemathesis.sh (or set SCHEMATHESIS)"
    );
    eprintln!(
        "\n!!!! SKIPPED: schemathesis is not installed (run scripts/schemathesis.sh, or set \
         SCHEMATHESIS to an `st`; CI=true fails instead) !!!!\n"
    );
    None
}

/// One schemathesis run (`st run`) of every check and phase against the document at
/// `openapi_url`, with the settings file `config`, `max_examples` cases per operation and a
/// fixed `seed` (a run is reproducible), `token` as the bearer of every request. More `run`
/// options may be appended.
pub fn schemathesis_run(
    st: &Path,
    config: &Path,
    openapi_url: &str,
    token: Option<&str>,
    max_examples: &str,
    seed: &str,
) -> Command {
    let mut command = Command::new(st);
    command
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(openapi_url)
        .args(["--checks", "all"])
        .args(["--max-examples", max_examples])
        .args(["--seed", seed])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        // One worker: hypothesis's caches are not safe to share between threads (runs with
        // two failed inside schemathesis itself now and then).
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        .arg("--no-color")
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        // Its cache directory (`.schemathesis/`) goes there, not into the source tree.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    command
}

/// True when a TCP connection to the URL's host and port succeeds within a second.
fn reachable(url: &str) -> bool {
    let Some(host_port) = host_port(url) else {
        return false;
    };
    let Ok(addrs) = host_port.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Extracts `host:port` from `scheme://[user[:pass]@]host:port[/path][?query]`.
fn host_port(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    (!host_port.is_empty()).then(|| host_port.to_owned())
}

/// Write system calls made so far by this process's threads named `name` (Linux's
/// `/proc/<pid>/task/<tid>/io`): how a test running client and server on a thread of its own
/// sees that their writes were gathered. 0 where `/proc` cannot tell.
pub fn writes_by_threads(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .map(|task| task.path())
        .filter(|path| {
            std::fs::read_to_string(path.join("comm")).is_ok_and(|comm| comm.trim_end() == name)
        })
        .filter_map(|path| std::fs::read_to_string(path.join("io")).ok())
        .filter_map(|io| {
            io.lines()
                .find_map(|line| line.strip_prefix("syscw: "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

/// `len` bytes that change along the way (`i % 251`), so a piece of a body lost, repeated or
/// out of place shows when it is compared with what was sent.
pub fn patterned_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Runs the future `test` makes on a thread of its own named `name`, in a current-thread
/// runtime: whatever the test spawns runs on that thread too, so [`writes_by_threads`] counts
/// its writes and no other test's, and a connection writes only once everything queued for it
/// in one turn is queued, whatever the machine's load.
///
/// # Panics
/// When the test panics (its panic is passed on), or the thread or runtime cannot start.
pub fn on_own_thread<F, T>(name: &str, test: T)
where
    T: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime")
                .block_on(test());
        })
        .expect("a thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// The status and whole body of a response on a raw `h2` client stream, answered within
/// `wait`; the body's flow-control capacity is given back as it is read, so bodies larger than
/// a window arrive.
///
/// # Panics
/// When no answer comes within `wait`, or the stream fails.
pub async fn h2_response(
    response: h2::client::ResponseFuture,
    wait: Duration,
) -> (http::StatusCode, Vec<u8>) {
    let response = tokio::time::timeout(wait, response)
        .await
        .expect("answered in time")
        .expect("a response");
    let status = response.status();
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the body's data");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    (status, got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_taken_from_urls() {
        assert_eq!(
            host_port("postgres://u:p@db:5432/test?x=1").as_deref(),
            Some("db:5432")
        );
        assert_eq!(
            host_port("redis://127.0.0.1:6379").as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(host_port("nats://h:4222").as_deref(), Some("h:4222"));
        assert_eq!(host_port("x://"), None);
    }
}
