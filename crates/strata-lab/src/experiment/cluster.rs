//! One deployment of the lab: a gateway and N api processes of one cart mode, each a
//! `strata serve` child on loopback, all on one embedded store directory (SQLite in WAL mode:
//! every process opens the same file, readers never block, writers take turns), with
//! in-memory caches and buses. Only [`Launch`] settings differ between the modes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::process::{Launch, Proc, Usage, free_addr, fresh_dir, total_usage};
use super::{Mode, probe};
use crate::LabError;

/// The api processes' token signing secret (the same for all, as a deployment needs).
const JWT_SECRET: &str = "strata-lab-secret-0123456789abcdef-0123";
/// How long a debug build may take to start a role (migrations, seed, bind).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a role may take to stop after SIGTERM (drain, hand-over).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a new deployment's hand-overs to end.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and how the lab starts processes.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The `strata` executable.
    pub(crate) exe: PathBuf,
    /// Logs of every child.
    pub(crate) logs: PathBuf,
    /// Data directories of the deployments.
    pub(crate) work: PathBuf,
    pub(crate) stop: CancellationToken,
}

/// An api process of a deployment (running or not).
pub(crate) struct Api {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) proc: Option<Proc>,
}

/// A gateway and its api processes.
pub(crate) struct Cluster {
    host: Host,
    pub(crate) mode: Mode,
    dir: PathBuf,
    pub(crate) gateway: SocketAddr,
    pub(crate) admin: SocketAddr,
    _gateway: Proc,
    pub(crate) apis: Vec<Api>,
    tag: String,
}

/// The environment of an api process of `mode` keeping its data under `dir`: the settings
/// that make the two designs. A stateful instance behind a gateway learns its peers from the
/// gateway's admin listener `peers` (which carts it owns, where to hand carts over).
pub(crate) fn api_env(
    mode: Mode,
    dir: &Path,
    preload: u64,
    peers: Option<SocketAddr>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("STRATA_AUTH_JWT_SECRET".into(), JWT_SECRET.into()),
        (
            "STRATA_STORE_DATA_DIR".into(),
            dir.join("store").display().to_string(),
        ),
        ("STRATA_LOG_LEVEL".into(), "warn".into()),
        ("STRATA_CARTS_MODE".into(), mode.as_str().into()),
        ("STRATA_CARTS_PRELOAD".into(), preload.to_string()),
    ];
    if mode == Mode::Local {
        env.push((
            "STRATA_CARTS_DIR".into(),
            dir.join("carts").display().to_string(),
        ));
        if let Some(admin) = peers {
            env.push(("STRATA_CARTS_PEERS_URL".into(), format!("http://{admin}")));
        }
    }
    env
}

/// `strata serve api` as `name` on `addr`, its peers at the gateway admin listener `peers`.
pub(crate) fn api_launch(
    mode: Mode,
    dir: &Path,
    name: &str,
    addr: SocketAddr,
    peers: Option<SocketAddr>,
) -> Launch {
    Launch {
        name: name.to_owned(),
        args: vec![
            "serve".into(),
            "api".into(),
            "--listen".into(),
            addr.to_string(),
            "--instance".into(),
            name.to_owned(),
        ],
        env: api_env(mode, dir, 0, peers),
    }
}

/// `strata serve gateway` in front of `apis`.
fn gateway_launch(
    mode: Mode,
    name: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    apis: &[SocketAddr],
) -> Launch {
    let upstream: Vec<String> = apis.iter().map(|a| format!("http://{a}")).collect();
    let mut env = vec![("STRATA_LOG_LEVEL".into(), "warn".into())];
    if mode == Mode::Local {
        // A cart is served by the instance that owns it: the pool hashes on the owner cookie
        // the api sets, without bounded load (which would send a cart elsewhere under load).
        for (key, value) in [
            ("STRATA_GATEWAY_API_ALGORITHM", "consistent_hash"),
            ("STRATA_GATEWAY_API_HASH_KEY", "cookie:strata_cart_owner"),
            ("STRATA_GATEWAY_API_BALANCE_FACTOR", "0"),
        ] {
            env.push((key.into(), value.into()));
        }
    }
    Launch {
        name: name.to_owned(),
        args: vec![
            "serve".into(),
            "gateway".into(),
            "--listen".into(),
            listen.to_string(),
            "--admin-listen".into(),
            admin.to_string(),
            "--upstream".into(),
            format!("api={}", upstream.join(",")),
        ],
        env,
    }
}

impl Cluster {
    /// Starts `instances` api processes of `mode` and a gateway in front of them, each ready,
    /// holding `held` carts (stateful: preloaded, split among the instances; stateless: put
    /// in the store), and waits until the instances have handed over the carts they do not
    /// own.
    ///
    /// # Errors
    /// [`LabError::Process`] or [`LabError::Experiment`] when a process does not start or
    /// get ready.
    pub(crate) async fn start(
        host: &Host,
        mode: Mode,
        instances: usize,
        tag: &str,
        held: u64,
    ) -> Result<Cluster, LabError> {
        let tag = format!("{tag}-{}", mode.as_str());
        let dir = fresh_dir(&host.work, &tag)?;
        let (gateway, admin) = (free_addr()?, free_addr()?);
        let mut apis = Vec::with_capacity(instances);
        for i in 1..=instances {
            let name = format!("{tag}-api-{i}");
            let addr = free_addr()?;
            let mut launch = api_launch(mode, &dir, &name, addr, Some(admin));
            // Local: each instance preloads its share (and hands over what it does not own);
            // shared: the first preloads them all into the empty store, the others find it
            // holding carts and add none.
            let preload = match mode {
                Mode::Local => held / instances as u64,
                Mode::Shared => held,
            };
            launch.env = api_env(mode, &dir, preload, Some(admin));
            let proc = Proc::spawn(&host.exe, &host.logs, &launch)?;
            // The first creates the store (and, shared, preloads every cart into it); the
            // others find it made.
            probe::wait_ok(addr, "/readyz", START_TIMEOUT * 5, &host.stop).await?;
            apis.push(Api {
                name,
                addr,
                proc: Some(proc),
            });
        }
        let addrs: Vec<SocketAddr> = apis.iter().map(|a| a.addr).collect();
        let launch = gateway_launch(mode, &format!("{tag}-gateway"), gateway, admin, &addrs);
        let gateway_proc = Proc::spawn(&host.exe, &host.logs, &launch)?;
        probe::wait_ok(admin, "/readyz", START_TIMEOUT, &host.stop).await?;
        probe::wait_ok(
            gateway,
            "/api/v1/products?per_page=1",
            START_TIMEOUT,
            &host.stop,
        )
        .await?;
        let cluster = Cluster {
            host: host.clone(),
            mode,
            dir,
            gateway,
            admin,
            _gateway: gateway_proc,
            apis,
            tag,
        };
        cluster.settle().await;
        Ok(cluster)
    }

    /// Waits (at most [`SETTLE_TIMEOUT`]) until no instance has handed a cart over for a
    /// second: stateful instances that preloaded carts another instance owns send them there
    /// once they learn their peers.
    pub(crate) async fn settle(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let (mut last, mut quiet) = (f64::NAN, 0);
        while quiet < 4 && Instant::now() < deadline && !self.host.stop.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let sent = self
                .api_metric(
                    "strata_api_carts_handed_over",
                    &["direction=\"sent\""],
                    None,
                )
                .await;
            quiet = if sent == last { quiet + 1 } else { 0 };
            last = sent;
        }
    }

    /// Starts one more api process and, once ready, adds it to the gateway's pool. Returns
    /// its index and when it was added.
    ///
    /// # Errors
    /// As [`Cluster::start`], and when the gateway refuses the instance.
    pub(crate) async fn add_api(&mut self) -> Result<(usize, Instant), LabError> {
        let name = format!("{}-api-{}", self.tag, self.apis.len() + 1);
        let addr = free_addr()?;
        let launch = api_launch(self.mode, &self.dir, &name, addr, Some(self.admin));
        let proc = Proc::spawn(&self.host.exe, &self.host.logs, &launch)?;
        probe::wait_ok(addr, "/readyz", START_TIMEOUT, &self.host.stop).await?;
        probe::admin(
            self.admin,
            "POST",
            "/admin/pools/api/instances",
            Some(&format!(r#"{{"url": "http://{addr}"}}"#)),
        )
        .await?;
        let added = Instant::now();
        self.apis.push(Api {
            name,
            addr,
            proc: Some(proc),
        });
        Ok((self.apis.len() - 1, added))
    }

    /// Takes api `i` out as an orchestrator scales in: drained at the gateway (no new
    /// request), stopped with SIGTERM (a stateful instance hands its carts over before it
    /// exits), then removed from the pool. Returns when the drain began and when the process
    /// exited.
    ///
    /// # Errors
    /// When the gateway refuses the drain or the removal, or the process cannot be signalled.
    pub(crate) async fn remove_api(&mut self, i: usize) -> Result<(Instant, Instant), LabError> {
        let addr = self.apis[i].addr;
        let path = format!("/admin/pools/api/instances/{addr}");
        let began = Instant::now();
        probe::admin(self.admin, "POST", &format!("{path}/drain"), None).await?;
        if let Some(mut proc) = self.apis[i].proc.take() {
            proc.stop(STOP_TIMEOUT).await?;
        }
        let exited = Instant::now();
        probe::admin(self.admin, "DELETE", &path, None).await?;
        Ok((began, exited))
    }

    /// SIGKILLs api `i`, then starts it again at once on the same address and data, as a
    /// supervisor would. Returns when it was killed and when the new process was ready.
    ///
    /// # Errors
    /// When the new process does not start or get ready.
    pub(crate) async fn kill_and_restart(
        &mut self,
        i: usize,
    ) -> Result<(Instant, Instant), LabError> {
        let killed = Instant::now();
        if let Some(mut proc) = self.apis[i].proc.take() {
            proc.kill();
            proc.wait_exit(STOP_TIMEOUT).await;
        }
        let launch = api_launch(
            self.mode,
            &self.dir,
            &self.apis[i].name,
            self.apis[i].addr,
            Some(self.admin),
        );
        let proc = Proc::spawn(&self.host.exe, &self.host.logs, &launch)?;
        let ready =
            probe::wait_ok(self.apis[i].addr, "/readyz", START_TIMEOUT, &self.host.stop).await?;
        self.apis[i].proc = Some(proc);
        Ok((killed, ready))
    }

    /// CPU time and resident memory of the running api processes, summed.
    pub(crate) fn api_usage(&self) -> Usage {
        total_usage(self.apis.iter().filter_map(|a| a.proc.as_ref()))
    }

    /// The sum of a metric over the running api processes but `skip`.
    pub(crate) async fn api_metric(&self, name: &str, labels: &[&str], skip: Option<usize>) -> f64 {
        let mut sum = 0.0;
        let running = self
            .apis
            .iter()
            .enumerate()
            .filter(|(i, a)| a.proc.is_some() && Some(*i) != skip);
        for (_, api) in running {
            sum += probe::metric(api.addr, name, labels).await.unwrap_or(0.0);
        }
        sum
    }
}
