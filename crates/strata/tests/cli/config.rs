//! Bad configuration and bad usage exit with code 2 and name the culprit; a port in use exits
//! with 1 and names the address.

use crate::harness::{TempDir, run_to_exit, strata};

#[tokio::test]
async fn a_bad_environment_value_exits_2_naming_its_key() {
    let dir = TempDir::new("config");
    let data = dir.path().join("data");
    let mut command = strata(&["up", "--data-dir", data.to_str().unwrap()]);
    command.env("STRATA_API_INSTANCES", "abc");
    let (status, stdout, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("api.instances"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!data.exists(), "nothing may start on a bad configuration");
}

#[tokio::test]
async fn a_read_replica_on_the_embedded_store_exits_2_with_the_other_problems() {
    let dir = TempDir::new("config");
    let data = dir.path().join("data");
    let mut command = strata(&["up", "--data-dir", data.to_str().unwrap()]);
    command
        .env(
            "STRATA_STORE_READ_URL",
            "postgres://postgres@replica/strata",
        )
        .env("STRATA_CACHE_TTL_SECS", "0");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("store.read_url") && stderr.contains("PostgreSQL database_url"),
        "{stderr}"
    );
    assert!(stderr.contains("cache.ttl_secs"), "{stderr}");
    assert!(!data.exists(), "nothing may start on a bad configuration");

    let mut command = strata(&["serve", "api", "--database-url", "postgres://postgres@db/s"]);
    command.env("STRATA_STORE_READ_URL", "mysql://replica/strata");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("store.read_url") && stderr.contains("expected postgres://"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_unknown_key_in_the_config_file_exits_2_naming_it() {
    let dir = TempDir::new("config");
    let file = dir.path().join("strata.toml");
    std::fs::write(&file, "[api]\ninstances = 2\nreplicas = 3\n").unwrap();
    let (status, _, stderr) =
        run_to_exit(strata(&["--config", file.to_str().unwrap(), "up"])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("replicas"), "{stderr}");

    // The same file through STRATA_CONFIG, which is not itself taken for a configuration key.
    let mut command = strata(&["up"]);
    command.env("STRATA_CONFIG", &file);
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("replicas") && !stderr.contains("STRATA_CONFIG"),
        "{stderr}"
    );
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let (status, _, stderr) = run_to_exit(strata(&["up", "--api", "three"])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, _, stderr) = run_to_exit(strata(&["serve", "gateway"])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("gateway.upstream"), "{stderr}");
    let (status, _, stderr) =
        run_to_exit(strata(&["serve", "api", "--admin-listen", "127.0.0.1:1"])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    // `serve api` needs the shared token secret, at least 32 bytes.
    let (status, _, stderr) = run_to_exit(strata(&["serve", "api"])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.jwt_secret"), "{stderr}");
    let mut command = strata(&["serve", "api"]);
    command.env("STRATA_AUTH_JWT_SECRET", "too short");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("auth.jwt_secret") && !stderr.contains("too short"),
        "{stderr}"
    );
    let mut command = strata(&["up"]);
    command.env("STRATA_ADMIN_EMAIL", "root@example.com");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("admin.password"), "{stderr}");
    let (status, _, stderr) = run_to_exit(strata(&[
        "bench",
        "--url",
        "http://127.0.0.1:1/",
        "-c",
        "0",
    ]))
    .await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("concurrency"), "{stderr}");
}

#[tokio::test]
async fn a_port_in_use_exits_1_naming_the_address() {
    let dir = TempDir::new("bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let data = dir.path().join("data");
    let mut command = strata(&[
        "up",
        "--port",
        &port,
        "--admin-port",
        "0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    command
        .env("STRATA_API_LISTEN", "127.0.0.1:0")
        .env("STRATA_CHAT_LISTEN", "127.0.0.1:0")
        .env("STRATA_WORKER_LISTEN", "127.0.0.1:0");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

#[tokio::test]
async fn every_problem_of_file_environment_and_flags_is_reported_at_once_with_its_origin() {
    let dir = TempDir::new("config");
    let file = dir.path().join("strata.toml");
    std::fs::write(
        &file,
        "[api]\ninstancs = 2\n\n[chat]\nlisten_at = \"x\"\n[gateway]\nworkerz = 1\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let mut command = strata(&["up", "--config", file, "--log-level", "=bad="]);
    command.env("STRATA_CACHE_TTL_SECS", "soon");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    for expected in [
        format!("api.instancs: unknown configuration key (from {file}:2:1)"),
        format!("chat.listen_at: unknown configuration key (from {file}:5:1)"),
        format!("gateway.workerz: unknown configuration key (from {file}:7:1)"),
        "(from STRATA_CACHE_TTL_SECS)".to_owned(),
        "(from --log-level)".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected} not in:\n{stderr}");
    }
    assert!(stderr.contains("5 problems"), "{stderr}");
}

#[tokio::test]
async fn a_toml_syntax_error_names_its_line_and_column() {
    let dir = TempDir::new("config");
    let file = dir.path().join("strata.toml");
    std::fs::write(&file, "[api]\ninstances = 2\nlisten = \"127.0.0.1:8101\n").unwrap();
    let file = file.to_str().unwrap();
    let (status, _, stderr) = run_to_exit(strata(&["up", "--config", file])).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{file}:3:")), "{stderr}");
    assert!(stderr.contains("invalid TOML"), "{stderr}");
}

#[tokio::test]
async fn a_missing_config_file_is_reported_with_the_other_problems() {
    let dir = TempDir::new("config");
    let data = dir.path().join("data");
    let missing = dir.path().join("nope.toml");
    let missing = missing.to_str().unwrap();
    let mut command = strata(&[
        "up",
        "--config",
        missing,
        "--log-level",
        "=bad=",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    command.env("STRATA_CACHE_TTL_SECS", "soon");
    let (status, _, stderr) = run_to_exit(command).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    for expected in [
        format!("{missing}: cannot read the configuration file"),
        "(from STRATA_CACHE_TTL_SECS)".to_owned(),
        "(from --log-level)".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected} not in:\n{stderr}");
    }
    assert!(stderr.contains("3 problems"), "{stderr}");
    assert!(!data.exists(), "nothing may start on a bad configuration");
}
