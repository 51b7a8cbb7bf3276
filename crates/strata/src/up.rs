//! `strata up`: the whole stack in one process. Every instance is a role built by its library
//! with its own listener, so the gateway balances real sockets exactly as it would across hosts.
//!
//! Start-up order is bottom-up (store, cache, bus, instances, gateway), so the gateway's pools
//! are built from addresses that already answer. Shutdown is top-down: the gateway stops
//! accepting and drains its in-flight requests while every instance is still there to answer
//! them, and the chat instances drain at the same time, so that their "reconnect" close
//! (4012) reaches each client through the gateway's tunnel, which the gateway keeps until the
//! instance closes it; then the other instances stop; then the bus and the store close (the
//! SQLite WAL is checkpointed into the database file).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use strata_api::{ApiServer, ApiSettings};
use strata_bus::{AnyBus, Bus};
use strata_chat::{ChatServer, ChatSettings};
use strata_core::Shutdown;
use strata_core::domain::instance_name;
use strata_core::table::{Align, Table};
use strata_gateway::config::PoolConfig;
use strata_gateway::{Gateway, GatewayError};
use strata_store::Store;
use strata_worker::Worker;
use tokio::task::JoinHandle;

use crate::SHUTDOWN_DEADLINE;
use crate::backends::{self, Seed};
use crate::config::Config;

/// How long the simulated fulfilment takes when `worker.fulfilment_delay_ms` is not set: long
/// enough to see an order move from paid to shipped in the shop, short enough not to wait.
const DEMO_FULFILMENT_DELAY: Duration = Duration::from_secs(3);

/// Runs the stack until Ctrl-C or SIGTERM (or until a part of it stops on its own, which is an
/// error), then shuts it down in order within [`SHUTDOWN_DEADLINE`].
///
/// # Errors
/// When a backend or listener cannot be set up (the message names the address), when a part of
/// the stack fails while running, or when shutdown overruns its deadline.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let signalled = crate::on_signal();
    let data_dir = &config.store.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let store = backends::api_store(&config).await?;
    let mut stack = Stack::new(store);
    if let Err(e) = stack.start(&config).await {
        // Stop whatever did start, so listeners close and the store is checkpointed.
        if let Err(stop_error) = stack.stop().await {
            tracing::error!(
                error = crate::describe(&stop_error),
                "stopping after a failed start-up failed"
            );
        }
        return Err(e);
    }
    print_stdout(&stack.banner());

    let unexpected = tokio::select! {
        () = signalled.cancelled() => false,
        () = stack.died.cancelled() => true,
    };
    if unexpected {
        tracing::error!("a part of the stack stopped on its own; shutting down");
    }
    match tokio::time::timeout(SHUTDOWN_DEADLINE, stack.stop()).await {
        Ok(Ok(())) if unexpected => {
            anyhow::bail!("a part of the stack stopped unexpectedly; see the log")
        }
        Ok(Ok(())) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Ok(result) => result,
        Err(_) => {
            tracing::error!(deadline = ?SHUTDOWN_DEADLINE, "shutdown overran its deadline; exiting anyway");
            anyhow::bail!("shutdown did not finish within {SHUTDOWN_DEADLINE:?}")
        }
    }
}

/// One running part of the stack.
struct Unit {
    role: &'static str,
    name: String,
    addr: SocketAddr,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Everything `strata up` started, and the signals that stop it in order.
struct Stack {
    store: Store,
    bus: Option<AnyBus>,
    /// Stops the gateway, first.
    gateway_stop: Shutdown,
    /// Stops (drains) the chat instances, together with the gateway.
    chat_stop: Shutdown,
    /// Stops every instance, once the gateway has drained.
    roles_stop: Shutdown,
    /// Cancelled by a unit that returns before it was asked to stop.
    died: Shutdown,
    gateway: Option<Unit>,
    admin_addr: Option<SocketAddr>,
    roles: Vec<Unit>,
}

impl Stack {
    fn new(store: Store) -> Self {
        Self {
            store,
            bus: None,
            gateway_stop: Shutdown::new(),
            chat_stop: Shutdown::new(),
            roles_stop: Shutdown::new(),
            died: Shutdown::new(),
            gateway: None,
            admin_addr: None,
            roles: Vec::new(),
        }
    }

    /// Starts the cache, the bus, every instance and the gateway in front of them.
    async fn start(&mut self, config: &Config) -> anyhow::Result<()> {
        let cache = backends::cache(config).await?;
        let bus = backends::bus(config).await?;
        self.bus = Some(bus.clone());
        // One object store for every api instance: they share one directory (or bucket).
        let objects = backends::objects(config, &self.store, Seed::IfEmpty).await?;
        let cache_ttl = Duration::from_secs(config.cache.ttl_secs);
        let max_body_bytes = usize::try_from(config.gateway.max_body_bytes).unwrap_or(usize::MAX);
        // One secret for every api instance: any of them verifies the tokens of any other.
        let jwt_secret = backends::up_jwt_secret(config)?;
        let auth = backends::api_auth(config, jwt_secret.clone());
        let currencies = config.web.currencies()?;

        for i in 0..config.api.instances {
            let settings = ApiSettings {
                instance: instance_name("api", i),
                listen: config.api.instance_addr(i),
                cache_ttl,
                max_body_bytes,
                request_timeout: Duration::from_millis(config.api.request_timeout_ms),
                auth: auth.clone(),
                // The gateway drains first and stops sending before the instances stop.
                drain_delay: Duration::ZERO,
                documents: vec![strata_chat::openapi()],
                currencies: currencies.clone(),
                carts: config.carts.settings(&config.store.data_dir),
            };
            let (name, listen) = (settings.instance.clone(), settings.listen);
            let server =
                ApiServer::build(settings, self.store.clone(), cache.clone(), objects.clone())
                    .await
                    .map_err(|e| start_failed(e.into(), &name, Some(listen)))?;
            let addr = server.local_addr();
            let task = self.spawn_role(server.run(self.roles_stop.clone()));
            self.roles.push(Unit {
                role: "api",
                name,
                addr,
                task,
            });
        }
        for i in 0..config.chat.instances {
            let settings = ChatSettings {
                instance: instance_name("chat", i),
                listen: config.chat.instance_addr(i),
                jwt_secret: jwt_secret.expose().as_bytes().to_vec(),
                key_id: config.auth.key_id.clone(),
                limits: strata_chat::ChatLimits {
                    request_timeout: Duration::from_millis(config.chat.request_timeout_ms),
                    ..strata_chat::ChatLimits::default()
                },
            };
            let (name, listen) = (settings.instance.clone(), settings.listen);
            let server =
                ChatServer::build(settings, self.store.clone(), cache.clone(), bus.clone())
                    .await
                    .map_err(|e| start_failed(e.into(), &name, Some(listen)))?;
            let addr = server.local_addr();
            let task = spawn_unit(
                server.run(self.chat_stop.clone()),
                &self.chat_stop,
                &self.died,
            );
            self.roles.push(Unit {
                role: "chat",
                name,
                addr,
                task,
            });
        }
        for i in 0..config.worker.instances {
            // SQLite has no row locks to share the outbox between relays: one relay there.
            let relay = i == 0 || self.store.dialect() == strata_store::Dialect::Postgres;
            let settings = backends::worker_settings(
                config,
                instance_name("worker", i),
                config.worker.instance_addr(i),
                relay,
                DEMO_FULFILMENT_DELAY,
            );
            let (name, listen) = (settings.instance.clone(), settings.listen);
            let worker = Worker::build(settings, self.store.clone(), bus.clone())
                .await
                .map_err(|e| start_failed(e.into(), &name, Some(listen)))?;
            let addr = worker.local_addr();
            let task = self.spawn_role(worker.run(self.roles_stop.clone()));
            self.roles.push(Unit {
                role: "worker",
                name,
                addr,
                task,
            });
        }

        let mut gateway_config = config.gateway.clone();
        gateway_config.pools = ["api", "chat"]
            .into_iter()
            .map(|pool| PoolConfig {
                name: pool.to_owned(),
                instances: self
                    .addrs_of(pool)
                    .map(|addr| format!("http://{addr}"))
                    .collect(),
            })
            .filter(|pool| !pool.instances.is_empty())
            .collect();
        let gateway = Gateway::build(&gateway_config)
            .await
            .map_err(|e| start_failed(e.into(), "the gateway", None))?;
        gateway
            .handle()
            .verify_tokens_with(backends::token_key(config, &jwt_secret)?);
        let (addr, admin_addr) = (gateway.local_addr(), gateway.admin_addr());
        let task = spawn_unit(
            gateway.run(self.gateway_stop.clone()),
            &self.gateway_stop,
            &self.died,
        );
        self.gateway = Some(Unit {
            role: "gateway",
            name: "gateway".to_owned(),
            addr,
            task,
        });
        self.admin_addr = Some(admin_addr);
        Ok(())
    }

    fn spawn_role<E>(
        &self,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> JoinHandle<anyhow::Result<()>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        spawn_unit(run, &self.roles_stop, &self.died)
    }

    fn addrs_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = SocketAddr> + 'a {
        self.roles
            .iter()
            .filter(move |u| u.role == role)
            .map(|u| u.addr)
    }

    /// The human summary on stdout: where to go, and what runs where.
    fn banner(&self) -> String {
        let mut out = String::new();
        let count = |role| self.roles.iter().filter(|u| u.role == role).count();
        let mut table = Table::new(&[
            ("ROLE", Align::Left),
            ("NAME", Align::Left),
            ("ADDRESS", Align::Left),
        ])
        .indent(2);
        let _ = writeln!(
            out,
            "strata is up: {} api, {} chat, {} worker",
            count("api"),
            count("chat"),
            count("worker")
        );
        let _ = writeln!(out);
        if let (Some(gateway), Some(admin)) = (&self.gateway, self.admin_addr) {
            let public = gateway.addr;
            let _ = writeln!(out, "  public    http://{public}/");
            let _ = writeln!(out, "  admin     http://{admin}/admin/pools");
            let _ = writeln!(out, "  metrics   http://{admin}/metrics");
            let _ = writeln!(
                out,
                "  try       curl -s 'http://{public}/api/v1/products?per_page=3'"
            );
            let _ = writeln!(out);
            table.row([
                "gateway".to_owned(),
                "public".to_owned(),
                public.to_string(),
            ]);
            table.row(["gateway".to_owned(), "admin".to_owned(), admin.to_string()]);
        }
        for unit in &self.roles {
            table.row([
                unit.role.to_owned(),
                unit.name.clone(),
                unit.addr.to_string(),
            ]);
        }
        out.push_str(&table.render());
        let _ = writeln!(out);
        let _ = writeln!(out, "Ctrl-C stops everything (the gateway drains first).");
        out
    }

    /// Stops the stack top-down: gateway and chat (both draining), the other instances, bus,
    /// store. Every part is stopped even when an earlier one failed; the first failures are
    /// reported.
    async fn stop(self) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        self.gateway_stop.cancel();
        // While the gateway drains, its WebSocket tunnels stay until the instances behind
        // them close them: chat's drain sends every client "reconnect" through its tunnel.
        self.chat_stop.cancel();
        if let Some(gateway) = self.gateway {
            failed.extend(join(gateway).await);
        }
        self.roles_stop.cancel();
        for unit in self.roles {
            failed.extend(join(unit).await);
        }
        if let Some(bus) = &self.bus
            && let Err(e) = bus.close().await
        {
            tracing::warn!(error = %e, "closing the bus failed");
        }
        if let Err(e) = backends::close_store(&self.store).await {
            tracing::error!(error = crate::describe(&e), "closing the store failed");
            failed.push("store".to_owned());
        }
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("stopped with failures in: {}", failed.join(", "))
        }
    }
}

/// Why `what` (an instance, or the gateway) could not start; when its port is taken, says which
/// port and how to move the whole stack off it (the usual cause: a second `strata up` on the
/// default ports). `listen` is the address the instance was given, when it has one.
fn start_failed(error: anyhow::Error, what: &str, listen: Option<SocketAddr>) -> anyhow::Error {
    let in_use = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    });
    let gateway_addr = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(GatewayError::Bind { addr, .. }) => Some(*addr),
        _ => None,
    });
    match gateway_addr.or(listen) {
        Some(addr) if in_use => error.context(format!(
            "cannot start {what}: port {} is in use (another strata up?); move every port \
             of this stack with `--port-offset N` (e.g. `strata up --port-offset 1000`), or \
             let the OS pick free ones with `--port-offset auto`",
            addr.port()
        )),
        _ => error.context(format!("cannot start {what}")),
    }
}

/// Spawns a unit's `run` future; if it returns before `stop` was cancelled, `died` is cancelled
/// so `strata up` notices and shuts everything down instead of limping on.
fn spawn_unit<E>(
    run: impl Future<Output = Result<(), E>> + Send + 'static,
    stop: &Shutdown,
    died: &Shutdown,
) -> JoinHandle<anyhow::Result<()>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let (stop, died) = (stop.clone(), died.clone());
    tokio::spawn(async move {
        let result = run.await.map_err(anyhow::Error::from);
        if !stop.is_cancelled() {
            died.cancel();
        }
        result
    })
}

/// Waits for a unit to finish; returns its name when it failed.
async fn join(unit: Unit) -> Option<String> {
    match unit.task.await {
        Ok(Ok(())) => {
            // The instance logged its own "stopped".
            tracing::debug!(role = unit.role, name = %unit.name, "stopped");
            None
        }
        Ok(Err(e)) => {
            tracing::error!(role = unit.role, name = %unit.name, error = crate::describe(&e), "failed");
            Some(unit.name)
        }
        Err(e) => {
            tracing::error!(role = unit.role, name = %unit.name, error = %e, "task panicked or was cancelled");
            Some(unit.name)
        }
    }
}

/// Writes the human output. A closed stdout (`strata up | head`) must not stop the server.
pub fn print_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        tracing::debug!(error = %e, "cannot write to stdout");
    }
}
