//! Spawning `strata` and talking to it: free ports, a temporary directory per test, a child
//! process that is killed on drop, and the addresses `strata up` prints.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The binary under test (the debug build of this package).
pub const BIN: &str = env!("CARGO_BIN_EXE_strata");
/// How long a debug build may take to migrate, seed and bind everything.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The line `strata up` prints last, once everything listens.
pub const UP_BANNER_END: &str = "Ctrl-C stops everything";

/// A port that was free a moment ago: bound on port 0, then released for the child to take.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "strata-cli-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `strata ARGS` with a clean configuration environment: no `STRATA_*` variable of the
/// caller leaks in.
pub fn strata(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STRATA_") {
            command.env_remove(key);
        }
    }
    command
}

/// A running `strata` process whose output is collected; killed (SIGKILL) on drop if it is
/// still running.
pub struct Process {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn strata");
        let stdout = collect(child.stdout.take().expect("stdout piped"));
        let stderr = collect(child.stderr.take().expect("stderr piped"));
        Process {
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    /// As [`Process::spawn`], with a pipe to the child's stdin.
    pub fn spawn_with_stdin(mut command: Command) -> (Process, std::process::ChildStdin) {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn strata");
        let stdin = child.stdin.take().expect("stdin piped");
        let stdout = collect(child.stdout.take().expect("stdout piped"));
        let stderr = collect(child.stderr.take().expect("stderr piped"));
        let process = Process {
            child,
            stdout,
            stderr,
            status: None,
        };
        (process, stdin)
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until stdout contains `needle` (`Ok`) or the process exits (`Err` with its
    /// status); panics (with stderr) when `timeout` passes.
    pub async fn wait_for_stdout_or_exit(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<(), ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.try_status() {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {timeout:?}\nstderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGKILL: the process dies at once, with no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Sends SIGTERM, as an orchestrator would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status, once the process has exited within `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                // Let the reader threads take the last of the output.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe to its end on a thread, so the child never blocks on a full pipe.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("pipe lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Runs `strata ARGS` to completion (bounded) and returns its status, stdout and stderr.
pub async fn run_to_exit(command: Command) -> (ExitStatus, String, String) {
    let mut process = Process::spawn(command);
    let status = process
        .wait_exit(START_TIMEOUT)
        .await
        .expect("strata did not exit");
    (status, process.stdout(), process.stderr())
}

/// One row of the instance table `strata up` prints.
#[derive(Debug, Clone)]
pub struct Row {
    pub role: String,
    pub name: String,
    pub addr: SocketAddr,
}

/// A running `strata up` and the addresses it printed. Fields drop in order: the process is
/// killed before its data directory is removed (when the data directory is its own).
pub struct Up {
    pub process: Process,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    pub rows: Vec<Row>,
    data: PathBuf,
    _dir: Option<TempDir>,
}

impl Up {
    /// The stack's data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }

    /// Instance rows of `role` (`api`, `chat`, `worker`).
    pub fn instances(&self, role: &str) -> Vec<Row> {
        self.rows
            .iter()
            .filter(|r| r.role == role)
            .cloned()
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// `POST /api/v1/sessions` through the gateway.
    pub async fn log_in(
        &self,
        client: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        client
            .post(self.url("/api/v1/sessions"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .expect("POST /api/v1/sessions")
    }

    /// Logs in through the gateway, expecting success: the session token.
    pub async fn token(&self, client: &reqwest::Client, email: &str, password: &str) -> String {
        let session: serde_json::Value = self
            .log_in(client, email, password)
            .await
            .json()
            .await
            .expect("a session");
        session["token"].as_str().expect("a token").to_owned()
    }

    /// Registers a customer through the gateway and logs them in: their session token.
    pub async fn customer(&self, client: &reqwest::Client, email: &str, password: &str) -> String {
        let registered = client
            .post(self.url("/api/v1/users"))
            .json(&serde_json::json!({"email": email, "password": password, "display_name": email}))
            .send()
            .await
            .expect("POST /api/v1/users");
        assert_eq!(registered.status(), 201, "register {email}");
        self.token(client, email, password).await
    }

    /// The id of `token`'s account (`GET /api/v1/users/me`).
    pub async fn user_id(&self, client: &reqwest::Client, token: &str) -> i64 {
        let me: serde_json::Value = client
            .get(self.url("/api/v1/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /api/v1/users/me")
            .json()
            .await
            .expect("an account");
        me["id"].as_i64().expect("an account id")
    }

    /// Puts one unit of product 1 in the cart of `token`'s customer and checks out with
    /// `idempotency_key`: the order placed.
    pub async fn place_order(
        &self,
        client: &reqwest::Client,
        token: &str,
        idempotency_key: &str,
    ) -> serde_json::Value {
        let added = client
            .post(self.url("/api/v1/cart/items"))
            .bearer_auth(token)
            .json(&serde_json::json!({"product_id": 1, "quantity": 1}))
            .send()
            .await
            .expect("POST /api/v1/cart/items");
        assert!(added.status().is_success(), "{}", added.status());
        let placed = client
            .post(self.url("/api/v1/orders"))
            .bearer_auth(token)
            .header("Idempotency-Key", idempotency_key)
            .send()
            .await
            .expect("POST /api/v1/orders");
        assert_eq!(placed.status(), 201, "checkout");
        placed.json().await.expect("an order")
    }
}

/// Starts `strata up ARGS` on free gateway ports and a fresh data directory, with every
/// instance on an OS-chosen port (port 0: N consecutive free ports cannot be reserved
/// reliably), and waits for its banner.
pub async fn spawn_up(args: &[&str]) -> Up {
    spawn_up_with_env(args, &[]).await
}

/// As [`spawn_up`], with extra environment variables (`STRATA_ADMIN_EMAIL`, …).
pub async fn spawn_up_with_env(args: &[&str], env: &[(&str, &str)]) -> Up {
    spawn_up_at(None, args, env).await
}

/// As [`spawn_up_with_env`], on the data directory `data_dir`, which the caller owns (and
/// removes): for a stack started again on the data of an earlier one.
pub async fn spawn_up_in(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Up {
    spawn_up_at(Some(data_dir), args, env).await
}

async fn spawn_up_at(data: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Up {
    // The gateway's ports are chosen here and taken by the child later: meanwhile another
    // socket (another test's, or one of the child's own instances on port 0) may take one.
    // Such a start is repeated on other ports, a few times at most.
    let mut attempts = 0;
    let (dir, data, process, port, admin_port) = loop {
        attempts += 1;
        let (dir, data) = match data {
            Some(data) => (None, data.to_path_buf()),
            None => {
                let dir = TempDir::new("up");
                let data = dir.path().join("data");
                (Some(dir), data)
            }
        };
        let (port, admin_port) = (free_port().to_string(), free_port().to_string());
        let data_dir = data.to_str().expect("utf-8 temp path");
        let mut all = vec![
            "up",
            "--port",
            &port,
            "--admin-port",
            &admin_port,
            "--data-dir",
            data_dir,
        ];
        all.extend_from_slice(args);
        let mut command = strata(&all);
        command
            .env("STRATA_API_LISTEN", "127.0.0.1:0")
            .env("STRATA_CHAT_LISTEN", "127.0.0.1:0")
            .env("STRATA_WORKER_LISTEN", "127.0.0.1:0");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(command);
        match process
            .wait_for_stdout_or_exit(UP_BANNER_END, START_TIMEOUT)
            .await
        {
            Ok(()) => break (dir, data, process, port, admin_port),
            Err(_) if attempts < 3 && process.stderr().contains("Address already in use") => {}
            Err(status) => panic!(
                "strata exited ({status}) before printing {UP_BANNER_END:?}\nstdout:\n{}\nstderr:\n{}",
                process.stdout(),
                process.stderr()
            ),
        }
    };
    let rows = parse_table(&process.stdout());
    let find = |name: &str| {
        rows.iter()
            .find(|r| r.role == "gateway" && r.name == name)
            .map(|r| r.addr)
            .unwrap_or_else(|| panic!("no gateway {name} row in:\n{}", process.stdout()))
    };
    let (public, admin) = (find("public"), find("admin"));
    assert_eq!(public.port().to_string(), port);
    assert_eq!(admin.port().to_string(), admin_port);
    Up {
        process,
        public,
        admin,
        rows,
        data,
        _dir: dir,
    }
}

/// Parses the `ROLE NAME ADDRESS` rows of the banner.
fn parse_table(stdout: &str) -> Vec<Row> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (role, name, addr) = (words.next()?, words.next()?, words.next()?);
            let addr = addr.parse().ok()?;
            ["gateway", "api", "chat", "worker"]
                .contains(&role)
                .then(|| Row {
                    role: role.to_owned(),
                    name: name.to_owned(),
                    addr,
                })
        })
        .collect()
}

/// Polls `url` until it answers 200, within `timeout`.
pub async fn wait_ready(client: &reqwest::Client, url: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `strata_gateway_requests_total` summed over pools and statuses, by `instance` label.
pub async fn gateway_requests_by_instance(
    client: &reqwest::Client,
    admin: SocketAddr,
) -> BTreeMap<String, u64> {
    let text = client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    let mut counts = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("strata_gateway_requests_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(instance) = labels
            .split("instance=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value: f64 = value.parse().expect("counter value");
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let value = value as u64;
        *counts.entry(instance.to_owned()).or_default() += value;
    }
    counts
}

/// `base` (a PostgreSQL URL) with every connection's `search_path` set to `schema`.
pub fn with_search_path(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}
