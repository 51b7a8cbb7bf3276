//! `strata serve <role>`: one role in this process, against the configured store, cache and
//! bus (PostgreSQL, Redis and NATS when scaled out). Several processes of a role may start at
//! once against one database: migrations and the demo seed are safe to race.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use strata_api::{ApiServer, ApiSettings};
use strata_bus::Bus;
use strata_chat::{ChatServer, ChatSettings};
use strata_core::config::Problem;
use strata_core::{ConfigError, Shutdown};
use strata_gateway::Gateway;
use strata_gateway::config::HashKey;
use strata_store::Store;
use strata_worker::Worker;

use crate::SHUTDOWN_DEADLINE;
use crate::backends::{self, Seed};
use crate::cli::{Role, ServeArgs};
use crate::config::Config;
use crate::up::print_stdout;

/// Runs the role until Ctrl-C or SIGTERM, then stops it gracefully and closes its backends.
///
/// # Errors
/// [`ConfigError`] for a configuration the role cannot run with (the caller exits with 2);
/// otherwise when a backend or the listener cannot be set up, or the role fails.
pub async fn run(args: &ServeArgs, config: Config) -> anyhow::Result<()> {
    let signalled = crate::on_signal();
    if args.admin_listen.is_some() && args.role != Role::Gateway {
        return Err(invalid(
            "gateway.admin_listen",
            "--admin-listen applies to `strata serve gateway` only",
        ));
    }
    match args.role {
        Role::Gateway => gateway(args, config, signalled).await,
        Role::Api => api(args, &config, signalled).await,
        Role::Chat => chat(args, &config, signalled).await,
        Role::Worker => worker(args, &config, signalled).await,
    }
}

async fn gateway(args: &ServeArgs, config: Config, signalled: Shutdown) -> anyhow::Result<()> {
    if !config.gateway.pools.iter().any(|p| p.name == "api") {
        return Err(invalid(
            "gateway.upstream",
            "`strata serve gateway` needs an `api` pool: --upstream api=http://HOST:PORT[,…] \
             (or STRATA_GATEWAY_UPSTREAM, or [[gateway.pools]] in the config file)",
        ));
    }
    // Rate limits keyed on `jwt_subject` check tokens with the api's secret.
    let by_user = config
        .gateway
        .rate_limits
        .iter()
        .any(|rule| rule.key == HashKey::JwtSubject);
    if by_user && config.auth.jwt_secret.is_empty() {
        return Err(invalid(
            "auth.jwt_secret",
            "a rate limit keyed on `jwt_subject` needs the api's token signing secret to check \
             tokens: STRATA_AUTH_JWT_SECRET (or [auth] jwt_secret)",
        ));
    }
    let token_key = if config.auth.jwt_secret.is_empty() {
        None
    } else {
        let key = backends::token_key(&config, &config.auth.jwt_secret)
            .map_err(|e| invalid("auth.jwt_secret", &e.to_string()))?;
        Some(key)
    };
    let mut gateway = Gateway::build(&config.gateway)
        .await
        .context("cannot start the gateway")?;
    if let Some(key) = token_key {
        gateway.handle().verify_tokens_with(key);
    }
    if let Some(name) = &args.instance {
        gateway = gateway.named(name);
    }
    let (public, admin) = (gateway.local_addr(), gateway.admin_addr());
    print_stdout(&format!(
        "strata gateway: public http://{public}/  admin http://{admin}/admin/pools  metrics http://{admin}/metrics\n"
    ));
    reload_on_sighup(gateway.handle());
    // The gateway lets in-flight requests finish (up to the request timeout) and keeps its
    // WebSocket tunnels until the instances close them (up to the drain timeout).
    let drains = config
        .gateway
        .request_timeout_ms
        .max(config.gateway.drain_timeout_ms);
    let deadline = SHUTDOWN_DEADLINE.max(Duration::from_millis(drains) + Duration::from_secs(2));
    until_signal("gateway", &signalled, deadline, |stop| gateway.run(stop)).await
}

/// On each SIGHUP, loads the configuration again as at start (file, `STRATA_*` variables, the
/// same flags) and applies it to the running gateway (pools, weights, algorithms, health,
/// the TLS certificate) without dropping a connection. A configuration that does not load
/// is logged and changes nothing.
fn reload_on_sighup(handle: strata_gateway::GatewayHandle) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload disabled");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let loaded = <crate::cli::Cli as clap::Parser>::try_parse()
                .map_err(anyhow::Error::from)
                .and_then(|cli| cli.load_config().map_err(anyhow::Error::from));
            match loaded.and_then(|config| Ok(handle.reload(&config.gateway)?)) {
                Ok(()) => {}
                Err(error) => {
                    tracing::error!(
                        error = crate::describe(&error),
                        "reload failed; configuration unchanged"
                    );
                }
            }
        }
    });
    #[cfg(not(unix))]
    drop(handle);
}

async fn api(args: &ServeArgs, config: &Config, signalled: Shutdown) -> anyhow::Result<()> {
    // Every api process of a deployment must sign with the same secret, so it cannot be made
    // up here: it is configuration.
    if config.auth.jwt_secret.is_empty() {
        return Err(invalid(
            "auth.jwt_secret",
            "`strata serve api` needs the token signing secret, the same for every api \
             process: at least 32 bytes in STRATA_AUTH_JWT_SECRET (or [auth] jwt_secret)",
        ));
    }
    let store = backends::api_store(config).await?;
    let started = async {
        let cache = backends::cache(config).await?;
        let settings = ApiSettings {
            instance: instance(args, config.api.listen),
            listen: config.api.listen,
            cache_ttl: Duration::from_secs(config.cache.ttl_secs),
            max_body_bytes: usize::try_from(config.gateway.max_body_bytes).unwrap_or(usize::MAX),
            request_timeout: Duration::from_millis(config.api.request_timeout_ms),
            auth: backends::api_auth(config, config.auth.jwt_secret.clone()),
            drain_delay: Duration::from_millis(config.api.drain_delay_ms),
            // The gateway in front routes `/api/v1/chat/` to chat: one document for both.
            documents: vec![strata_chat::openapi()],
            currencies: config.web.currencies()?,
            carts: config.carts.settings(&config.store.data_dir),
        };
        let name = settings.instance.clone();
        let objects = backends::objects(config, &store, Seed::IfEmpty).await?;
        let server = ApiServer::build(settings, store.clone(), cache, objects)
            .await
            .with_context(|| format!("cannot start {name}"))?;
        announce("api", &name, server.local_addr());
        anyhow::Ok(server)
    }
    .await;
    let served = match started {
        Ok(server) => {
            let mut deadline = SHUTDOWN_DEADLINE + Duration::from_millis(config.api.drain_delay_ms);
            if !config.carts.peers_url.is_empty() {
                // A local-cart instance hands its carts over before it stops.
                deadline += strata_api::LEAVE_LIMIT;
            }
            until_signal("api", &signalled, deadline, |stop| server.run(stop)).await
        }
        Err(e) => Err(e),
    };
    finish(served, &store).await
}

async fn chat(args: &ServeArgs, config: &Config, signalled: Shutdown) -> anyhow::Result<()> {
    // Chat verifies the tokens the api issues, so it needs the api's secret.
    if config.auth.jwt_secret.is_empty() {
        return Err(invalid(
            "auth.jwt_secret",
            "`strata serve chat` needs the api's token signing secret: at least 32 bytes in \
             STRATA_AUTH_JWT_SECRET (or [auth] jwt_secret)",
        ));
    }
    let store = backends::store(config, Seed::Never).await?;
    let started = async {
        let cache = backends::cache(config).await?;
        let bus = backends::bus(config).await?;
        let settings = ChatSettings {
            instance: instance(args, config.chat.listen),
            listen: config.chat.listen,
            jwt_secret: config.auth.jwt_secret.expose().as_bytes().to_vec(),
            key_id: config.auth.key_id.clone(),
            limits: strata_chat::ChatLimits {
                drain_delay: Duration::from_millis(config.chat.drain_delay_ms),
                request_timeout: Duration::from_millis(config.chat.request_timeout_ms),
                ..strata_chat::ChatLimits::default()
            },
        };
        let name = settings.instance.clone();
        let server = ChatServer::build(settings, store.clone(), cache, bus.clone())
            .await
            .with_context(|| format!("cannot start {name}"))?;
        announce("chat", &name, server.local_addr());
        anyhow::Ok((server, bus))
    }
    .await;
    let served = match started {
        Ok((server, bus)) => {
            let deadline = SHUTDOWN_DEADLINE + Duration::from_millis(config.chat.drain_delay_ms);
            let served = until_signal("chat", &signalled, deadline, |stop| server.run(stop)).await;
            close_bus(&bus).await;
            served
        }
        Err(e) => Err(e),
    };
    finish(served, &store).await
}

async fn worker(args: &ServeArgs, config: &Config, signalled: Shutdown) -> anyhow::Result<()> {
    let store = backends::store(config, Seed::Never).await?;
    let started = async {
        let bus = backends::bus(config).await?;
        let settings = backends::worker_settings(
            config,
            instance(args, config.worker.listen),
            config.worker.listen,
            true,
            Duration::ZERO,
        );
        let name = settings.instance.clone();
        let worker = Worker::build(settings, store.clone(), bus.clone())
            .await
            .with_context(|| format!("cannot start {name}"))?;
        announce("worker", &name, worker.local_addr());
        anyhow::Ok((worker, bus))
    }
    .await;
    let served = match started {
        Ok((worker, bus)) => {
            let served = until_signal("worker", &signalled, SHUTDOWN_DEADLINE, |stop| {
                worker.run(stop)
            })
            .await;
            close_bus(&bus).await;
            served
        }
        Err(e) => Err(e),
    };
    finish(served, &store).await
}

/// Runs a role until a signal, then cancels it and waits for its graceful stop, at most
/// `deadline` ([`SHUTDOWN_DEADLINE`] plus what the role is configured to wait for).
async fn until_signal<F, E>(
    role: &'static str,
    signalled: &Shutdown,
    deadline: Duration,
    run: impl FnOnce(Shutdown) -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let stop = Shutdown::new();
    let mut task = tokio::spawn(run(stop.clone()));
    let joined = tokio::select! {
        () = signalled.cancelled() => {
            stop.cancel();
            match tokio::time::timeout(deadline, &mut task).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::error!(role, ?deadline, "shutdown overran its deadline; exiting anyway");
                    task.abort();
                    anyhow::bail!("{role} did not stop within {deadline:?}");
                }
            }
        }
        joined = &mut task => {
            let joined = joined.context("the role's task panicked")?;
            joined.with_context(|| format!("{role} failed"))?;
            anyhow::bail!("{role} stopped on its own");
        }
    };
    joined
        .context("the role's task panicked")?
        .with_context(|| format!("{role} failed"))?;
    tracing::info!(role, "stopped");
    Ok(())
}

/// Closes the store whatever happened before, and reports the first failure.
async fn finish(served: anyhow::Result<()>, store: &Store) -> anyhow::Result<()> {
    let closed = backends::close_store(store).await;
    served?;
    closed
}

async fn close_bus(bus: &strata_bus::AnyBus) {
    if let Err(e) = bus.close().await {
        tracing::warn!(error = %e, "closing the bus failed");
    }
}

/// `--instance`, or `<role>@<listen address>`: unique across hosts without coordination.
fn instance(args: &ServeArgs, listen: SocketAddr) -> String {
    args.instance
        .clone()
        .unwrap_or_else(|| format!("{}@{listen}", args.role.as_str()))
}

fn announce(role: &str, name: &str, addr: SocketAddr) {
    print_stdout(&format!(
        "strata {role}: {name} listening on http://{addr}/\n"
    ));
}

fn invalid(key: &str, message: &str) -> anyhow::Error {
    ConfigError::Invalid(vec![Problem::new(key, message)]).into()
}
