//! The cluster of `deploy/compose.yaml` as a test fixture, driven by the Docker CLI: one
//! compose project per test, brought up on a fresh set of volumes and removed (volumes too)
//! when dropped, and the faults a test injects into it (kill, stop, start, cut a container
//! off a network and connect it again, replace a service's container with another image).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

/// The strata image the cluster runs (`CLUSTER_IMAGE`, default `strata:dev`).
pub fn strata_image() -> String {
    std::env::var("CLUSTER_IMAGE").unwrap_or_else(|_| "strata:dev".to_owned())
}

/// The images `deploy/compose.yaml` starts besides strata's.
const SERVICE_IMAGES: [&str; 4] = [
    "postgres:15-bookworm",
    "redis:7-bookworm",
    "nats:2.9",
    "prom/prometheus:v2.42.0",
];

/// Host ports of the test clusters, away from a cluster a developer may run on the defaults.
pub const GATEWAY_PORT: u16 = 18680;
pub const ADMIN_PORT: u16 = 18690;
const PROMETHEUS_PORT: u16 = 18691;
/// The gateway's admin token and the first admin account in the test clusters.
pub const ADMIN_TOKEN: &str = "cluster-test-admin-token";
pub const ADMIN_EMAIL: &str = "admin@cluster.test";
pub const ADMIN_PASSWORD: &str = "cluster-test-admin-password";

/// Why the cluster tests cannot run here, or `None` when they can: Docker answers, a compose
/// tool exists and every image is there (`deploy/test/run.sh` builds them).
pub fn missing_prerequisite() -> Option<String> {
    match Command::new("docker")
        .args(["version", "-f", "{{.Server.Version}}"])
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Some(format!("docker engine: {}", text(&out.stderr))),
        Err(e) => return Some(format!("docker: {e}")),
    }
    if compose_tool().is_none() {
        return Some("neither `docker compose` nor `docker-compose` is installed".into());
    }
    let image = strata_image();
    std::iter::once(image.as_str())
        .chain(SERVICE_IMAGES)
        .find(|image| !docker_ok(&["image", "inspect", image]))
        .map(|image| format!("image {image} is missing: run deploy/test/run.sh (it builds them)"))
}

/// `docker compose` (v2) when the plugin is there, else `docker-compose` (v1).
fn compose_tool() -> Option<Vec<&'static str>> {
    if docker_ok(&["compose", "version"]) {
        return Some(vec!["docker", "compose"]);
    }
    Command::new("docker-compose")
        .arg("version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|_| vec!["docker-compose"])
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// Runs a command; panics with its output when it fails.
fn run(mut command: Command) -> String {
    let shown = format!("{command:?}");
    let out: Output = command.output().unwrap_or_else(|e| panic!("{shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `docker ARGS`; panics when it fails.
pub fn docker(args: &[&str]) -> String {
    let mut command = Command::new("docker");
    command.args(args);
    run(command)
}

/// One compose project of `deploy/compose.yaml`.
pub struct Cluster {
    project: String,
    file: PathBuf,
    tool: Vec<&'static str>,
}

/// The strata instances and the port of their `/readyz`.
pub const INSTANCES: [(&str, u16); 8] = [
    ("gateway", 9090),
    ("api-1", 8101),
    ("api-2", 8101),
    ("api-3", 8101),
    ("chat-1", 8201),
    ("chat-2", 8201),
    ("worker-1", 8301),
    ("worker-2", 8301),
];

impl Cluster {
    /// Brings up project `strata-cluster-NAME` (fresh volumes) and waits until every strata
    /// instance answers `/readyz`. Returns the cluster and the time that took.
    pub fn up(name: &str) -> (Cluster, Duration) {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose.yaml");
        // A project of its own per run: what an interrupted run left behind (a volume, or a
        // network the engine failed to remove) never meets the next one.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() % 1_000_000);
        let cluster = Cluster {
            project: format!("strata-cluster-{name}-{run}"),
            file,
            tool: compose_tool().expect("a compose tool"),
        };
        cluster.remove();
        let started = Instant::now();
        cluster.compose(&["up", "-d"]);
        let deadline = Instant::now() + Duration::from_secs(180);
        for (service, port) in INSTANCES {
            loop {
                let ready = cluster
                    .address(service)
                    .is_some_and(|ip| readyz(&format!("http://{ip}:{port}/readyz")));
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    cluster.dump_logs();
                    panic!("{service} never became ready");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let took = started.elapsed();
        (cluster, took)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.tool[0]);
        command
            .args(&self.tool[1..])
            .args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(args)
            .env("CLUSTER_IMAGE", strata_image())
            .env("CLUSTER_PORT", GATEWAY_PORT.to_string())
            .env("CLUSTER_ADMIN_PORT", ADMIN_PORT.to_string())
            .env("CLUSTER_PROMETHEUS_PORT", PROMETHEUS_PORT.to_string())
            .env("CLUSTER_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("CLUSTER_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("CLUSTER_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CLUSTER_LOG_LEVEL", "warn");
        command
    }

    /// Runs `docker compose ARGS` on this project; panics when it fails.
    pub fn compose(&self, args: &[&str]) -> String {
        run(self.command(args))
    }

    /// Runs `docker compose ARGS` with `CLUSTER_IMAGE=image`.
    pub fn compose_with_image(&self, image: &str, args: &[&str]) -> String {
        let mut command = self.command(args);
        command.env("CLUSTER_IMAGE", image);
        run(command)
    }

    /// The container of a service (empty when it has none).
    pub fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service])
    }

    /// The first address of a service's container, when it runs.
    pub fn address(&self, service: &str) -> Option<String> {
        let id = self.container(service);
        if id.is_empty() {
            return None;
        }
        let out = Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                &id,
            ])
            .output()
            .ok()?;
        text(&out.stdout)
            .split_whitespace()
            .next()
            .map(str::to_owned)
    }

    /// The name of one of the project's networks (`app`, `data`, `edge`).
    pub fn network(&self, name: &str) -> String {
        let project = format!("label=com.docker.compose.project={}", self.project);
        let network = format!("label=com.docker.compose.network={name}");
        let id = docker(&[
            "network", "ls", "-q", "--filter", &project, "--filter", &network,
        ]);
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "network {name}: {id:?}"
        );
        id
    }

    /// `docker kill` of a service's container (SIGKILL: no draining, no goodbye).
    pub fn kill(&self, service: &str) {
        docker(&["kill", &self.container(service)]);
    }

    /// `docker stop` of a service's container (SIGTERM, then SIGKILL after `grace`).
    pub fn stop(&self, service: &str, grace: Duration) {
        let grace = grace.as_secs().to_string();
        docker(&["stop", "-t", &grace, &self.container(service)]);
    }

    /// `docker start` of a service's (stopped or killed) container.
    pub fn start(&self, service: &str) {
        docker(&["start", &self.container(service)]);
    }

    /// Cuts a service's container off network `name` (a partition).
    pub fn disconnect(&self, service: &str, name: &str) {
        docker(&[
            "network",
            "disconnect",
            &self.network(name),
            &self.container(service),
        ]);
    }

    /// Connects a service's container to network `name` again, under its service name.
    pub fn connect(&self, service: &str, name: &str) {
        docker(&[
            "network",
            "connect",
            "--alias",
            service,
            &self.network(name),
            &self.container(service),
        ]);
    }

    /// Runs SQL on the primary PostgreSQL; returns the unaligned, tuples-only output.
    pub fn sql(&self, query: &str) -> String {
        docker(&[
            "exec",
            &self.container("postgres"),
            "psql",
            "-U",
            "postgres",
            "-d",
            "strata",
            "-At",
            "-c",
            query,
        ])
    }

    /// When a service's container last started (`StartedAt`) or stopped (`FinishedAt`), by
    /// the engine's clock (this host's).
    pub fn state_time(&self, service: &str, field: &str) -> SystemTime {
        let format = format!("{{{{.State.{field}}}}}");
        let raw = docker(&["inspect", "-f", &format, &self.container(service)]);
        parse_time(&raw).unwrap_or_else(|| panic!("{service} {field}: {raw:?}"))
    }

    /// The last lines of every container's log, on standard error (for a failing test).
    pub fn dump_logs(&self) {
        let mut command = self.command(&["logs", "--no-color", "--tail", "40"]);
        if let Ok(out) = command.output() {
            eprintln!("{}\n{}", text(&out.stdout), text(&out.stderr));
        }
    }

    /// Removes the project: containers, networks and volumes. `down` stops at the first
    /// network the engine refuses to remove, before the volumes, so what is left is removed
    /// by the project's label.
    fn remove(&self) {
        let _ = self
            .command(&["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
        let label = format!("label=com.docker.compose.project={}", self.project);
        for kind in ["volume", "network"] {
            let listed = Command::new("docker")
                .args([kind, "ls", "-q", "--filter", &label])
                .output();
            for id in listed
                .map(|out| text(&out.stdout))
                .unwrap_or_default()
                .lines()
            {
                if !remove_object(kind, id) {
                    eprintln!("cluster {}: {kind} {id} could not be removed", self.project);
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        self.remove();
    }
}

/// Removes a volume or network, bounded: up to 5 tries a second apart. A network the
/// engine still believes has endpoints (a stale one, left by a container killed while
/// attached) has them disconnected by force before each retry.
fn remove_object(kind: &str, id: &str) -> bool {
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let removed = Command::new("docker").args([kind, "rm", id]).output();
        if removed.is_ok_and(|out| out.status.success()) {
            return true;
        }
        if kind == "network" {
            let endpoints = Command::new("docker")
                .args([
                    "network",
                    "inspect",
                    "-f",
                    "{{range .Containers}}{{.Name}} {{end}}",
                    id,
                ])
                .output()
                .map(|out| text(&out.stdout))
                .unwrap_or_default();
            for endpoint in endpoints.split_whitespace() {
                let _ = Command::new("docker")
                    .args(["network", "disconnect", "-f", id, endpoint])
                    .output();
            }
        }
    }
    false
}

/// True when `url` answers 200 within half a second.
fn readyz(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return false;
    };
    let Ok(addr) = authority.parse::<std::net::SocketAddr>() else {
        return false;
    };
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// What the gateway's admin API says of a pool's instances: `(resolved_from or url, health,
/// draining)` for each.
pub fn gateway_instances(pools: &Value, pool: &str) -> Vec<(String, String, bool)> {
    pools["pools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["instances"].as_array().cloned().unwrap_or_default())
        .map(|i| {
            let from = i["resolved_from"]
                .as_str()
                .or(i["url"].as_str())
                .unwrap_or_default()
                .to_owned();
            let health = i["health"].as_str().unwrap_or_default().to_owned();
            (from, health, i["draining"].as_bool().unwrap_or(false))
        })
        .collect()
}

/// `2026-12-05T01:43:51.498811234Z` (the engine's RFC 3339 times, always UTC).
fn parse_time(raw: &str) -> Option<SystemTime> {
    let raw = raw.strip_suffix('Z')?;
    let (date, time) = raw.split_once('T')?;
    let mut date = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date.next()??, date.next()??, date.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|p| p.parse::<u64>().ok());
    let (hh, mm, ss) = (hms.next()??, hms.next()??, hms.next()??);
    let nanos: u64 = format!("{fraction:0<9}").get(..9)?.parse().ok()?;
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    let secs = days * 86_400 + hh * 3_600 + mm * 60 + ss;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos))
}

#[test]
fn engine_times_are_parsed() {
    let t = parse_time("2026-12-05T01:43:51.498811234Z").unwrap();
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    assert_eq!(since.as_secs(), 1_796_435_031);
    assert_eq!(since.subsec_nanos(), 498_811_234);
    let t = parse_time("2000-03-01T00:00:00Z").unwrap();
    assert_eq!(
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
        951_868_800
    );
    assert!(parse_time("yesterday").is_none());
}
