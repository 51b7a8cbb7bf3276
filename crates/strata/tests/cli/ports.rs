//! A second stack on one machine: a taken port is named with the flag that moves the stack,
//! once, and `--port-offset` moves every port of the stack at once.

use std::net::TcpListener;

use crate::harness::{Process, START_TIMEOUT, TempDir, UP_BANNER_END, run_to_exit, strata};

#[tokio::test]
async fn a_taken_instance_port_is_named_once_with_the_flag_that_moves_the_stack() {
    let dir = TempDir::new("ports");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = dir.path().join("data");
    let mut command = strata(&[
        "up",
        "--port",
        "0",
        "--admin-port",
        "0",
        "--api",
        "1",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    command
        .env("STRATA_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("STRATA_CHAT_LISTEN", "127.0.0.1:0")
        .env("STRATA_WORKER_LISTEN", "127.0.0.1:0");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is in use")) && stderr.contains("--port-offset"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("stopped cleanly"), "{stderr}");
    assert_eq!(stderr.matches("strata: error:").count(), 1, "{stderr}");
    assert!(!stderr.contains("exiting with an error"), "{stderr}");
}

/// Five consecutive ports from `base`, all free a moment ago.
fn free_run(base: u16) -> bool {
    (base..base + 5).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

#[tokio::test]
async fn port_offset_moves_every_port_of_a_second_stack() {
    const OFFSET: u16 = 7;
    // The first stack's ports (taken here, as a running stack holds them) and the same ports
    // moved by the offset (free).
    let base = (0..200u16)
        .map(|i| 21_000 + i * 97)
        .find(|&base| free_run(base) && free_run(base + OFFSET))
        .expect("free ports");
    let _first: Vec<TcpListener> = (base..base + 5)
        .map(|port| TcpListener::bind(("127.0.0.1", port)).unwrap())
        .collect();
    let dir = TempDir::new("ports");
    let data = dir.path().join("data");
    let offset = OFFSET.to_string();
    let mut command = strata(&[
        "up",
        "--api",
        "1",
        "--chat",
        "1",
        "--port-offset",
        &offset,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    for (i, key) in [
        "GATEWAY_LISTEN",
        "GATEWAY_ADMIN_LISTEN",
        "API_LISTEN",
        "CHAT_LISTEN",
        "WORKER_LISTEN",
    ]
    .iter()
    .enumerate()
    {
        let port = base + u16::try_from(i).unwrap();
        command.env(format!("STRATA_{key}"), format!("127.0.0.1:{port}"));
    }
    let mut up = Process::spawn(command);
    let started = up
        .wait_for_stdout_or_exit(UP_BANNER_END, START_TIMEOUT)
        .await;
    assert!(started.is_ok(), "{}", up.stderr());
    let banner = up.stdout();
    for port in base + OFFSET..base + OFFSET + 5 {
        assert!(
            banner.contains(&format!("127.0.0.1:{port}")),
            "{port}:\n{banner}"
        );
    }
}

/// The public address in `strata up`'s banner (`  public    http://ADDR/`).
fn public_of(banner: &str) -> std::net::SocketAddr {
    banner
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("public")?
                .trim()
                .strip_prefix("http://")
        })
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no public address in:\n{banner}"))
}

#[tokio::test]
async fn port_offset_auto_starts_two_stacks_side_by_side_on_free_ports() {
    let dirs = [TempDir::new("ports-auto"), TempDir::new("ports-auto")];
    let mut stacks = Vec::new();
    for dir in &dirs {
        let data = dir.path().join("data");
        // Nothing but the flag: the configured ports (8080, 9090, 8101, …) are not used.
        let command = strata(&[
            "up",
            "--api",
            "1",
            "--chat",
            "1",
            "--port-offset",
            "auto",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        let mut up = Process::spawn(command);
        let started = up
            .wait_for_stdout_or_exit(UP_BANNER_END, START_TIMEOUT)
            .await;
        assert!(started.is_ok(), "{}", up.stderr());
        stacks.push(up);
    }
    let banners: Vec<String> = stacks.iter().map(Process::stdout).collect();
    let publics: Vec<_> = banners.iter().map(|b| public_of(b)).collect();
    assert_ne!(publics[0], publics[1]);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (public, banner) in publics.iter().zip(&banners) {
        assert_ne!(public.port(), 8080, "{banner}");
        // Each role's row names where it listens.
        for role in ["api", "chat", "worker"] {
            assert!(
                banner.lines().any(|l| l.trim_start().starts_with(role)),
                "no {role} row in:\n{banner}"
            );
        }
        let products = client
            .get(format!("http://{public}/api/v1/products?per_page=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(products.status(), 200, "{banner}");
    }
}
