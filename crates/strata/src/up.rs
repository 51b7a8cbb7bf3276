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
//!
//! The api and chat instances can be stopped and started one by one while the stack runs
//! ([`Control`], the gateway's operations view and its admin API): a stop ends the instance's
//! server as a crash would for the gateway (its listener closes, its connections end), a start
//! builds it again on the same address.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use strata_api::{ApiServer, ApiSettings};
use strata_bus::{AnyBus, Bus};
use strata_cache::AnyCache;
use strata_chat::{ChatServer, ChatSettings};
use strata_core::Shutdown;
use strata_core::domain::instance_name;
use strata_core::table::{Align, Table};
use strata_gateway::config::PoolConfig;
use strata_gateway::ops::{ControlError, ControlFuture, InstanceControl};
use strata_gateway::{Gateway, GatewayError};
use strata_objects::AnyObjects;
use strata_store::Store;
use strata_worker::Worker;
use tokio::sync::Mutex;
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

/// How long a stopped instance may take to finish its in-flight requests (and chat, to tell
/// its clients to reconnect) before its task is cut short.
const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// One part of the stack.
struct Unit {
    role: &'static str,
    name: String,
    addr: SocketAddr,
    running: Arc<Mutex<Running>>,
}

/// A unit's current run: its task (`None` once stopped from the admin API) and what stops it.
struct Running {
    task: Option<JoinHandle<anyhow::Result<()>>>,
    stop: Shutdown,
}

impl Unit {
    fn new(
        role: &'static str,
        name: String,
        addr: SocketAddr,
        task: JoinHandle<anyhow::Result<()>>,
        stop: Shutdown,
    ) -> Self {
        let running = Running {
            task: Some(task),
            stop,
        };
        Self {
            role,
            name,
            addr,
            running: Arc::new(Mutex::new(running)),
        }
    }
}

/// A built instance's serving future, which returns once its stop token is cancelled and it
/// has drained.
type Run = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// An instance being built: its address and its run once it listens.
type Launching = Pin<Box<dyn Future<Output = anyhow::Result<(SocketAddr, Run)>> + Send>>;

/// Builds an api or chat instance listening on the given address and returns its address and
/// its run, stopped by the given token: how an instance starts, at start-up and after a stop.
type Launch = Arc<dyn Fn(SocketAddr, Shutdown) -> Launching + Send + Sync>;

/// The api and chat instances, which the gateway's admin API may stop and start
/// ([`InstanceControl`]).
struct Control {
    instances: Vec<Controlled>,
    died: Shutdown,
}

/// One instance under [`Control`].
struct Controlled {
    pool: &'static str,
    name: String,
    addr: SocketAddr,
    running: Arc<Mutex<Running>>,
    /// The stack's signal that stops this kind of instance: each run's token is its child.
    parent: Shutdown,
    launch: Launch,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.instances.iter().map(|i| (&i.name, i.addr)))
            .finish()
    }
}

impl Control {
    fn find(&self, pool: &str, address: &str) -> Result<&Controlled, ControlError> {
        self.instances
            .iter()
            .find(|i| i.pool == pool && i.addr.to_string() == address)
            .ok_or_else(|| ControlError::Unknown {
                pool: pool.to_owned(),
                address: address.to_owned(),
            })
    }
}

impl InstanceControl for Control {
    fn stop<'a>(&'a self, pool: &'a str, address: &'a str) -> ControlFuture<'a> {
        Box::pin(async move {
            let instance = self.find(pool, address)?;
            let mut running = instance.running.lock().await;
            let Some(mut task) = running.task.take() else {
                return Err(ControlError::Already(format!(
                    "{} ({address}) is stopped already",
                    instance.name
                )));
            };
            running.stop.cancel();
            match tokio::time::timeout(STOP_DEADLINE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(name = %instance.name, error = crate::describe(&e), "instance failed while stopping");
                }
                Ok(Err(e)) => {
                    tracing::warn!(name = %instance.name, error = %e, "instance task panicked");
                }
                Err(_) => {
                    tracing::warn!(name = %instance.name, deadline = ?STOP_DEADLINE, "instance still draining; cut short");
                    task.abort();
                }
            }
            tracing::info!(name = %instance.name, addr = %instance.addr, "instance stopped");
            Ok(())
        })
    }

    fn start<'a>(&'a self, pool: &'a str, address: &'a str) -> ControlFuture<'a> {
        Box::pin(async move {
            let instance = self.find(pool, address)?;
            let mut running = instance.running.lock().await;
            if running.task.is_some() {
                return Err(ControlError::Already(format!(
                    "{} ({address}) is running already",
                    instance.name
                )));
            }
            if instance.parent.is_cancelled() {
                return Err(ControlError::Failed("the stack is shutting down".into()));
            }
            let stop = instance.parent.child_token();
            let (_, run) = (instance.launch)(instance.addr, stop.clone())
                .await
                .map_err(|e| ControlError::Failed(crate::describe(&e)))?;
            running.task = Some(spawn_unit(run, &stop, &self.died));
            running.stop = stop;
            tracing::info!(name = %instance.name, addr = %instance.addr, "instance started");
            Ok(())
        })
    }
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
    /// The api and chat instances, for the gateway's admin API to stop and start.
    controlled: Vec<Controlled>,
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
            controlled: Vec::new(),
        }
    }

    /// Builds an instance with `launch` on `listen` and runs it until `parent` (or its own
    /// stop) is cancelled; it stays under the control of the gateway's admin API.
    async fn start_instance(
        &mut self,
        role: &'static str,
        name: String,
        listen: SocketAddr,
        launch: Launch,
        parent: &Shutdown,
    ) -> anyhow::Result<()> {
        let stop = parent.child_token();
        let (addr, run) = launch(listen, stop.clone()).await?;
        let task = spawn_unit(run, &stop, &self.died);
        let unit = Unit::new(role, name.clone(), addr, task, stop);
        self.controlled.push(Controlled {
            pool: role,
            name,
            addr,
            running: Arc::clone(&unit.running),
            parent: parent.clone(),
            launch,
        });
        self.roles.push(unit);
        Ok(())
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
                carts: config.carts.up_settings(
                    &config.store.data_dir,
                    config.api.instances,
                    &config.gateway,
                ),
            };
            let (name, listen) = (settings.instance.clone(), settings.listen);
            let launch = api_launch(settings, self.store.clone(), cache.clone(), objects.clone());
            let parent = self.roles_stop.clone();
            self.start_instance("api", name, listen, launch, &parent)
                .await?;
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
            let launch = chat_launch(settings, self.store.clone(), cache.clone(), bus.clone());
            let parent = self.chat_stop.clone();
            self.start_instance("chat", name, listen, launch, &parent)
                .await?;
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
            let stop = self.roles_stop.clone();
            self.roles.push(Unit::new("worker", name, addr, task, stop));
        }

        let mut gateway_config = config.gateway.clone();
        config
            .carts
            .pin_pool(config.api.instances, &mut gateway_config.api);
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
        // The operations view shows the event pipeline as the workers report it.
        if gateway_config.ops.sources.is_empty() {
            gateway_config.ops.sources = self
                .addrs_of("worker")
                .map(|addr| format!("http://{addr}/metrics"))
                .collect();
        }
        let control = Control {
            instances: std::mem::take(&mut self.controlled),
            died: self.died.clone(),
        };
        let gateway = Gateway::build(&gateway_config)
            .await
            .map_err(|e| start_failed(e.into(), "the gateway", None))?
            .with_control(Arc::new(control));
        gateway
            .handle()
            .verify_tokens_with(backends::token_key(config, &jwt_secret)?);
        let (addr, admin_addr) = (gateway.local_addr(), gateway.admin_addr());
        let task = spawn_unit(
            gateway.run(self.gateway_stop.clone()),
            &self.gateway_stop,
            &self.died,
        );
        let stop = self.gateway_stop.clone();
        self.gateway = Some(Unit::new("gateway", "gateway".to_owned(), addr, task, stop));
        self.admin_addr = Some(admin_addr);
        Ok(())
    }

    fn spawn_role<E>(
        &self,
        run: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> JoinHandle<anyhow::Result<()>>
    where
        E: Into<anyhow::Error>,
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
            let _ = writeln!(out, "  ops       http://{admin}/ops");
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

/// How an api instance starts: built from `settings` on the address given, over `store`,
/// `cache` and `objects` (the product images).
fn api_launch(settings: ApiSettings, store: Store, cache: AnyCache, objects: AnyObjects) -> Launch {
    Arc::new(move |listen: SocketAddr, stop: Shutdown| -> Launching {
        let settings = ApiSettings {
            listen,
            ..settings.clone()
        };
        let (store, cache, objects) = (store.clone(), cache.clone(), objects.clone());
        Box::pin(async move {
            let name = settings.instance.clone();
            let server = ApiServer::build(settings, store, cache, objects)
                .await
                .map_err(|e| start_failed(e.into(), &name, Some(listen)))?;
            let addr = server.local_addr();
            let run: Run = Box::pin(async move { Ok(server.run(stop).await?) });
            Ok((addr, run))
        })
    })
}

/// How a chat instance starts: built from `settings` on the address given, over `store`,
/// `cache` and `bus`.
fn chat_launch(settings: ChatSettings, store: Store, cache: AnyCache, bus: AnyBus) -> Launch {
    Arc::new(move |listen: SocketAddr, stop: Shutdown| -> Launching {
        let settings = ChatSettings {
            listen,
            ..settings.clone()
        };
        let (store, cache, bus) = (store.clone(), cache.clone(), bus.clone());
        Box::pin(async move {
            let name = settings.instance.clone();
            let server = ChatServer::build(settings, store, cache, bus)
                .await
                .map_err(|e| start_failed(e.into(), &name, Some(listen)))?;
            let addr = server.local_addr();
            let run: Run = Box::pin(async move { Ok(server.run(stop).await?) });
            Ok((addr, run))
        })
    })
}

/// Spawns a unit's `run` future; if it returns before `stop` was cancelled, `died` is cancelled
/// so `strata up` notices and shuts everything down instead of limping on.
fn spawn_unit<E>(
    run: impl Future<Output = Result<(), E>> + Send + 'static,
    stop: &Shutdown,
    died: &Shutdown,
) -> JoinHandle<anyhow::Result<()>>
where
    E: Into<anyhow::Error>,
{
    let (stop, died) = (stop.clone(), died.clone());
    tokio::spawn(async move {
        let result = run.await.map_err(Into::into);
        if !stop.is_cancelled() {
            died.cancel();
        }
        result
    })
}

/// Waits for a unit to finish (at once when it was stopped from the admin API); returns its
/// name when it failed.
async fn join(unit: Unit) -> Option<String> {
    // `None`: stopped from the admin API, nothing left to wait for.
    let task = unit.running.lock().await.task.take()?;
    match task.await {
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
