//! `strata bench` as a user runs it: the summary and its exit code, JSON and Markdown output,
//! nonsense settings, its log line, and the shop mix against `strata up`.

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::{Process, run_to_exit, spawn_up, spawn_up_with_env, strata};

/// A keep-alive HTTP/1.1 server that answers every request with `status` and an empty body.
async fn spawn_answering(status: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn bench_names_the_path_it_measured_and_exits_1_when_nothing_succeeded() {
    // Every answer a 404: the summary names the path, the exit code the failure.
    let addr = spawn_answering("404 Not Found").await;
    let url = format!("http://{addr}");
    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench", "--url", &url, "--path", "/missing", "-n", "20", "-c", "2",
    ]))
    .await;
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(&format!("GET http://{addr}/missing\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("20 requests: 0 ok, 20 other status"),
        "{stdout}"
    );
    assert!(
        stderr.contains("not one request succeeded (20 sent: status 404 20)"),
        "{stderr}"
    );
    let (status, stdout, _) = run_to_exit(strata(&[
        "bench", "--url", &url, "--path", "/missing", "-n", "5", "--json",
    ]))
    .await;
    assert_eq!(status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["url"], format!("http://{addr}/missing"));

    // Nothing listening: every connection refused.
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let (status, stdout, stderr) =
        run_to_exit(strata(&["bench", "--url", &url, "-n", "10", "-c", "2"])).await;
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("10 failed (connect 10)"), "{stdout}");
    assert!(stderr.contains("connect 10"), "{stderr}");
}

#[tokio::test]
async fn bench_refuses_nonsense_settings_with_a_clear_message() {
    let addr = spawn_answering("200 OK").await;
    let url = format!("http://{addr}/");
    for (args, needle) in [
        (
            &["-d", "-1"][..],
            "duration: expected more than 0 s and at most 3600 s, got `-1`",
        ),
        (&["-d", "0"], "duration: expected more than 0 s"),
        (&["--rate", "0"], "rate: 0/s cannot be scheduled"),
        (&["--rate", "1e9"], "rate: 1000000000/s cannot be scheduled"),
        (&["--rate", "0.01", "-d", "1"], "schedules no request"),
        (&["--rate", "10,20"], "step: several rates need a step"),
        (&["--rate", "-5"], "rate: -5/s cannot be scheduled"),
        (
            &["--scenario", "nope"],
            "unknown scenario `nope`: expected one of endpoint, shop",
        ),
        (&["--threads", "0"], "threads: expected 1..=256"),
        (&["-c", "0"], "concurrency"),
    ] {
        let mut all = vec!["bench", "--url", &url];
        all.extend_from_slice(args);
        let (status, stdout, stderr) = run_to_exit(strata(&all)).await;
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
}

#[tokio::test]
async fn bench_logs_its_settings_without_placeholders() {
    let addr = spawn_answering("200 OK").await;
    let url = format!("http://{addr}/healthz");
    let (status, stdout, stderr) = run_to_exit(strata(&[
        "--log-level",
        "info",
        "bench",
        "--url",
        &url,
        "-d",
        "0.3",
    ]))
    .await;
    assert!(status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("bench starting"))
        .unwrap_or_else(|| panic!("no start line in {stderr}"));
    let log: Value = serde_json::from_str(line).unwrap();
    let fields = if log["fields"].is_object() {
        &log["fields"]
    } else {
        &log
    };
    assert!(fields.get("requests").is_none(), "{line}");
    assert!(!line.contains("None"), "{line}");
    assert_eq!(fields["url"], url, "{line}");
    assert!(stdout.contains("req/s"), "{stdout}");
}

#[tokio::test]
async fn bench_holds_a_rate_and_prints_json_and_markdown() {
    let addr = spawn_answering("200 OK").await;
    let url = format!("http://{addr}/healthz");
    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        &url,
        "--rate",
        "100",
        "-d",
        "2.5",
        "--json",
        "--progress",
    ]))
    .await;
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mode"], "open");
    assert_eq!(report["requests"], 250, "{report}");
    assert_eq!(report["rate"]["scheduled"], 250);
    let achieved = report["rate"]["achieved"].as_f64().unwrap();
    assert!((achieved / 100.0 - 1.0).abs() < 0.01, "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    let progress = stderr
        .lines()
        .filter(|l| l.contains("(target 100/s)"))
        .count();
    assert_eq!(progress, 2, "a progress line a second: {stderr}");

    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        &url,
        "--rate",
        "100,200",
        "--step",
        "500ms",
        "--markdown",
    ]))
    .await;
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("| requests | ok |"), "{stdout}");
    assert!(stdout.contains("| 100 | "), "{stdout}");
    assert!(stdout.contains("| 200 | "), "{stdout}");
}

#[tokio::test]
async fn bench_on_one_thread_runs_both_loops() {
    // `--threads 1` runs everything on the calling thread's event loop: the closed loop's
    // connections, and the open loop's connections fed by its schedule thread.
    let addr = spawn_answering("200 OK").await;
    let url = format!("http://{addr}/healthz");
    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        &url,
        "--threads",
        "1",
        "-n",
        "300",
        "-c",
        "4",
        "--json",
    ]))
    .await;
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mode"], "closed", "{report}");
    assert_eq!(report["requests"], 300, "{report}");
    assert_eq!(report["ok"], 300, "{report}");

    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        &url,
        "--threads",
        "1",
        "--rate",
        "200",
        "-d",
        "1.5",
        "--json",
    ]))
    .await;
    assert!(status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["requests"], 300, "{report}");
    let achieved = report["rate"]["achieved"].as_f64().unwrap();
    assert!((achieved / 200.0 - 1.0).abs() < 0.01, "{report}");
}

#[tokio::test]
async fn sigterm_ends_a_run_early_with_its_report() {
    let addr = spawn_answering("200 OK").await;
    let url = format!("http://{addr}/healthz");
    let mut bench = Process::spawn(strata(&["bench", "--url", &url, "-d", "60", "--json"]));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    bench.terminate();
    let status = bench
        .wait_exit(std::time::Duration::from_secs(10))
        .await
        .expect("bench stops on SIGTERM");
    assert!(status.success(), "{}", bench.stderr());
    let report: Value = serde_json::from_str(&bench.stdout()).unwrap();
    let elapsed = report["elapsed_secs"].as_f64().unwrap();
    assert!((1.0..10.0).contains(&elapsed), "{report}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
}

/// The shop mix through the gateway of `strata up`: customers register and log in, every
/// operation of the mix is sent and answered, none fails.
#[tokio::test]
async fn bench_runs_the_shop_mix_against_strata_up() {
    let up = spawn_up(&["--api", "2", "--chat", "1"]).await;
    let url = up.url("");
    let (status, stdout, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        &url,
        "--scenario",
        "shop",
        "--users",
        "4",
        "--rate",
        "100",
        "-d",
        "3",
        "-c",
        "16",
        "--json",
    ]))
    .await;
    assert!(status.success(), "{stderr}\n{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["scenario"], "shop");
    assert_eq!(report["requests"], 300, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["setup"]["register"]["ok"], 4, "{report}");
    assert_eq!(report["setup"]["login"]["ok"], 4, "{report}");
    for op in [
        "browse",
        "product",
        "search",
        "view_cart",
        "add_to_cart",
        "quote",
        "home",
    ] {
        let op = &report["operations"][op];
        assert!(op["requests"].as_u64().unwrap() > 0, "{op}: {report}");
        assert_eq!(op["ok"], op["requests"], "{report}");
    }
    // A checkout needs a filled cart: in 300 requests some customers have one by then.
    assert!(
        report["operations"]["checkout"]["ok"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    // A checkout racing another of the same customer may find the cart emptied (422); no
    // request may fail on the server's side.
    for status in report["statuses"].as_object().unwrap().keys() {
        assert!(!status.starts_with('5'), "{report}");
    }
}

/// Chat through the gateway of `strata up`: listeners in rooms, a sender per room at a rate,
/// every message stored (acked) and received by every listener, fan-out latency reported.
#[tokio::test]
async fn bench_runs_chat_listeners_and_senders_against_strata_up() {
    let up = spawn_up_with_env(
        &["--api", "1", "--chat", "2"],
        &[
            ("STRATA_ADMIN_EMAIL", "root@example.com"),
            ("STRATA_ADMIN_PASSWORD", "root password"),
        ],
    )
    .await;
    let token = up
        .token(&reqwest::Client::new(), "root@example.com", "root password")
        .await;
    let token = token.as_str();

    // Without the token: a clear refusal.
    let url = up.url("");
    let (status, _, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        &url,
        "--scenario",
        "chat",
        "--rate",
        "10",
        "-d",
        "1",
    ]))
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("token"), "{stderr}");

    let mut command = strata(&[
        "bench",
        "--url",
        &url,
        "--scenario",
        "chat",
        "--rooms",
        "4",
        "--listeners",
        "5",
        "--rate",
        "40",
        "-d",
        "2",
        "--json",
    ]);
    command.env("STRATA_BENCH_TOKEN", token);
    let (status, stdout, stderr) = run_to_exit(command).await;
    assert!(status.success(), "{stderr}\n{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["scenario"], "chat");
    assert_eq!(report["connections"], 24, "{report}");
    assert_eq!(report["requests"], 80, "{report}");
    assert_eq!(report["ok"], 80, "every message acked: {report}");
    assert_eq!(report["operations"]["receipt"]["requests"], 400, "{report}");
    assert_eq!(report["operations"]["receipt"]["ok"], 400, "{report}");
    let p99 = report["latency_ms"]["p99"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 1000.0, "{report}");
}
