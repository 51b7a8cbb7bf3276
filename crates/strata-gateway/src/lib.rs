//! strata-gateway: strata's own L7 load balancer.
//!
//! Requests arrive on the public listener, are routed to a pool by the first matching rule of
//! `gateway.routes` (by default `/api/v1/chat/` → `chat`, everything else → `api`), spread over
//! the pool's instances by its [`balance`] algorithm and forwarded over pooled keep-alive
//! connections ([`upstream`]); WebSocket upgrades are tunnelled and responses compressed when
//! the client accepts it ([`proxy`]). Requests whose framing an instance could read
//! differently are refused on the raw bytes ([`framing`]). The public listener speaks HTTPS when a certificate is
//! configured ([`tls`]), and HTTP/2 as well as HTTP/1.1 ([`http2`]: by ALPN, prior knowledge
//! or an h2c upgrade, [`h2c_upgrade`]). The admin listener serves `/metrics`, `/healthz`, `/readyz` and the
//! membership API ([`admin`]), and the operations view with its live stream ([`ops`]); instance host names are re-resolved ([`dns`]); a running
//! gateway takes a new configuration through [`GatewayHandle::reload`] (SIGHUP in the binary).
//!
//! ```no_run
//! # async fn example(config: strata_gateway::config::GatewayConfig) -> Result<(), strata_gateway::GatewayError> {
//! let gateway = strata_gateway::Gateway::build(&config).await?;
//! println!("listening on {}", gateway.local_addr());
//! let shutdown = strata_core::Shutdown::new();
//! gateway.run(shutdown).await
//! # }
//! ```
#![forbid(unsafe_code)]

/// `AsyncWrite` for a wrapper that only changes what is read: writes go straight to its `io`
/// field (the wrappers that watch, rewind or splice a client connection's first bytes).
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                data: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, data)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}

pub(crate) use write_through;

pub mod admin;
pub mod balance;
pub mod config;
pub mod error;
pub mod framing;
pub mod h2c_upgrade;
pub mod health;
pub mod http2;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod ops;
pub mod proxy;
pub mod rate_limit;
pub mod retry_budget;
mod server;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use crate::config::GatewayConfig;
use prometheus_client::registry::Registry;
use strata_core::Shutdown;
use tokio::net::{TcpListener, TcpSocket};

pub use error::{GatewayError, Party, ProxyError, RetrySafety};
pub use limits::Limits;
pub use membership::dns;

use crate::admin::{Admin, OpsView};
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::ops::InstanceControl;
use crate::ops::sources::Sources;
use crate::proxy::{ClientInfo, Proxy};
use crate::rate_limit::{ConnectionCap, RateLimiter};
use crate::tls::Tls;

/// hyper refuses read buffers below 8 KiB, so request heads cannot be limited below that.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// A built gateway: listeners bound, pools ready, not yet serving.
#[derive(Debug)]
pub struct Gateway {
    /// One listening socket per worker (`SO_REUSEPORT` when there are several).
    public: Vec<TcpListener>,
    admin: TcpListener,
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    limits: Limits,
    membership: Arc<Membership>,
    registry: Arc<Registry>,
    handle: GatewayHandle,
    /// The name the admin listener's `/healthz` and `/readyz` answer with.
    instance: Arc<str>,
    /// Stops and starts instances for the operations view; `None`: it cannot.
    control: Option<Arc<dyn InstanceControl>>,
}

impl Gateway {
    /// Binds the public and admin listeners (port 0 allowed) and builds the pools, with the
    /// [`Limits`] derived from `config`.
    ///
    /// # Errors
    /// [`GatewayError::Config`] for unusable pools, [`GatewayError::Bind`] when a listener
    /// cannot be bound.
    pub async fn build(config: &GatewayConfig) -> Result<Gateway, GatewayError> {
        Self::build_with_limits(config, Limits::from_config(config)).await
    }

    /// Like [`Gateway::build`], with explicit limits (tests, benchmarks).
    ///
    /// # Errors
    /// As [`Gateway::build`], and [`GatewayError::Config`] for limits hyper cannot apply.
    pub async fn build_with_limits(
        config: &GatewayConfig,
        limits: Limits,
    ) -> Result<Gateway, GatewayError> {
        if limits.max_header_bytes < MIN_HEADER_BYTES {
            return Err(GatewayError::Config {
                problems: vec![format!(
                    "max_header_bytes: at least {MIN_HEADER_BYTES} bytes"
                )],
            });
        }
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let tls = match tls::paths(config) {
            Some((cert, key)) => Some(Arc::new(Tls::load(&cert, &key, metrics.tls_expiry())?)),
            None => None,
        };
        if !config.admin_listen.ip().is_loopback() && config.admin_token.is_empty() {
            return Err(GatewayError::Config {
                problems: vec![
                    "gateway.admin_token: required when gateway.admin_listen is not a loopback address"
                        .into(),
                ],
            });
        }
        let membership = Arc::new(Membership::build(config, &limits, &metrics)?);
        // Host names become the addresses they resolve to before the first request.
        dns::refresh(&membership).await;
        let (public, local_addr) = bind_public(config.listen, limits.workers.max(1)).await?;
        let (admin, admin_addr) = bind("admin", config.admin_listen).await?;
        for pool in membership.snapshot().pools() {
            let instances: Vec<&str> = pool.instances().iter().map(|i| i.address()).collect();
            tracing::info!(pool = pool.name(), algorithm = %pool.algorithm(), ?instances, "pool ready");
        }
        let handle = GatewayHandle {
            shared: Arc::new(Shared {
                membership: Arc::clone(&membership),
                tls,
                started_with: config.clone(),
                rate_limits: Arc::new(RateLimiter::new(&config.rate_limits)),
                per_ip: Arc::new(ConnectionCap::new(config.max_connections_per_ip)),
                accepted: (0..limits.workers.max(1))
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            }),
        };
        Ok(Gateway {
            public,
            admin,
            local_addr,
            admin_addr,
            limits,
            membership,
            registry: Arc::new(registry),
            handle,
            // As `strata serve` names a role instance without `--instance`: `<role>@<listen
            // address>`, unique across hosts without coordination.
            instance: format!("gateway@{local_addr}").into(),
            control: None,
        })
    }

    /// Lets the admin API stop and start instances through `control` (the operations view's
    /// buttons, `POST /admin/pools/{pool}/instances/{id}/stop|start`): for a program that runs
    /// the instances itself, as `strata up` does.
    #[must_use]
    pub fn with_control(mut self, control: Arc<dyn InstanceControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// Names this gateway in its admin listener's `/healthz` and `/readyz` (`strata serve
    /// gateway --instance NAME`); `gateway@<public address>` otherwise.
    #[must_use]
    pub fn named(mut self, instance: &str) -> Self {
        self.instance = instance.into();
        self
    }

    /// A handle that reloads the running gateway's configuration (clone it before
    /// [`Gateway::run`]).
    pub fn handle(&self) -> GatewayHandle {
        self.handle.clone()
    }

    /// Applies a new configuration; see [`GatewayHandle::reload`].
    ///
    /// # Errors
    /// As [`GatewayHandle::reload`].
    pub fn reload(&self, config: &GatewayConfig) -> Result<(), GatewayError> {
        self.handle.reload(config)
    }

    /// The address of the public listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Serves until `shutdown` is cancelled; then stops accepting, lets in-flight requests
    /// finish (for at most the request timeout), closes idle keep-alive connections to clients
    /// and instances, and returns.
    ///
    /// # Errors
    /// None today: accept errors are logged and retried. The `Result` leaves room for failures
    /// of later features (discovery, TLS) without changing callers.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), GatewayError> {
        let Gateway {
            public,
            admin,
            local_addr,
            admin_addr,
            limits,
            membership,
            registry,
            handle,
            instance,
            control,
        } = self;
        let config = &handle.shared.started_with;
        let tls = handle.shared.tls.clone();
        let https = tls.is_some();
        let workers = public.len();
        tracing::info!(%local_addr, %admin_addr, https, workers, "gateway serving");
        let drain = limits.request_timeout;
        let proxy = Arc::new(Proxy::new(
            Arc::clone(&membership),
            limits.clone(),
            Arc::clone(&handle.shared.rate_limits),
        ));
        // Health checks, DNS refreshes and the operations view's sampling run until
        // shutdown, or until `run` returns or is dropped.
        let _health = membership.start_health(&shutdown);
        let background = shutdown.child_token();
        let _background = background.clone().drop_guard();
        let sources = Sources::start(&config.ops.sources, ops::stream::INTERVAL, &background);
        let view = OpsView {
            stream: ops::Stream::start(
                Arc::clone(&membership),
                sources,
                control.is_some(),
                config.ops.max_clients,
                background.clone(),
            ),
            control,
        };
        let admin_api = Arc::new(Admin::new(
            Arc::clone(&membership),
            registry,
            &config.admin_token,
            instance,
            view,
        ));
        if config.dns_refresh_ms > 0 {
            let every = Duration::from_millis(config.dns_refresh_ms);
            dns::spawn(Arc::clone(&membership), every, background);
        }

        let shared = Arc::clone(&handle.shared);
        let public = server::serve_on_workers(
            "public",
            public,
            &limits,
            drain,
            tls,
            move |peer| {
                if let Some(accepted) = shared.accepted.get(upstream::current_worker()) {
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                let proxy = Arc::clone(&proxy);
                // Held by the handler, so for as long as the connection is served.
                let slot = shared.per_ip.enter(peer.ip()).map(Arc::new);
                let client = ClientInfo::new(peer.ip());
                let client = Arc::new(if https { client.over_tls() } else { client });
                move |request| {
                    let (proxy, client) = (Arc::clone(&proxy), Arc::clone(&client));
                    let within_cap = slot.is_some();
                    async move {
                        if within_cap {
                            proxy.handle(&client, request).await
                        } else {
                            rate_limit::too_many_connections()
                        }
                    }
                }
            },
            shutdown.clone(),
        );
        let admin = server::serve(
            "admin",
            admin,
            &limits,
            drain,
            None,
            move |_peer| {
                let admin_api = Arc::clone(&admin_api);
                move |request| {
                    let admin_api = Arc::clone(&admin_api);
                    async move { admin_api.handle(request).await }
                }
            },
            shutdown,
        );
        tokio::join!(public, admin);
        membership.close_idle();
        tracing::info!("gateway stopped");
        Ok(())
    }
}

async fn bind(
    listener: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), GatewayError> {
    let bound = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind {
            listener,
            addr,
            source,
        })?;
    let local = bound.local_addr().map_err(|source| GatewayError::Bind {
        listener,
        addr,
        source,
    })?;
    Ok((bound, local))
}

/// Binds the public listener: one socket for one worker; for several, one socket per worker,
/// all on the same address with `SO_REUSEPORT`, so the kernel spreads new connections over
/// the workers (a shared socket lets whichever worker wakes first take them all). With port 0
/// the first socket picks the port and the others bind to it.
async fn bind_public(
    addr: SocketAddr,
    workers: usize,
) -> Result<(Vec<TcpListener>, SocketAddr), GatewayError> {
    let listener = "public";
    let failed = |addr| {
        move |source| GatewayError::Bind {
            listener,
            addr,
            source,
        }
    };
    if workers <= 1 {
        let (bound, local) = bind(listener, addr).await?;
        return Ok((vec![bound], local));
    }
    let mut listeners = Vec::with_capacity(workers);
    let mut local = addr;
    for _ in 0..workers {
        let socket = if local.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(failed(local))?;
        socket.set_reuseaddr(true).map_err(failed(local))?;
        socket.set_reuseport(true).map_err(failed(local))?;
        socket.bind(local).map_err(failed(local))?;
        // tokio's `TcpListener::bind` backlog.
        let bound = socket.listen(1024).map_err(failed(local))?;
        // Port 0: the others join the port the first one got.
        local = bound.local_addr().map_err(failed(local))?;
        listeners.push(bound);
    }
    Ok((listeners, local))
}

/// Reloads a running gateway (see [`GatewayHandle::reload`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    membership: Arc<Membership>,
    tls: Option<Arc<Tls>>,
    /// The configuration the gateway was built with: keys that need a restart are compared
    /// against it.
    started_with: GatewayConfig,
    /// `gateway.rate_limits`, shared by every worker.
    rate_limits: Arc<RateLimiter>,
    /// `gateway.max_connections_per_ip`, shared by every worker.
    per_ip: Arc<ConnectionCap>,
    /// Client connections accepted by each worker of the public listener.
    accepted: Box<[AtomicU64]>,
}

impl GatewayHandle {
    /// Lets rate limits keyed on `jwt_subject` tell users apart by their session tokens,
    /// checked with `key`, the api's (without it they count such requests on the client IP).
    pub fn verify_tokens_with(&self, key: strata_core::auth::TokenKey) {
        self.shared.rate_limits.verify_tokens_with(key);
    }

    /// Client connections accepted on the public listener so far, per worker (index = worker,
    /// see [`Limits::workers`]): shows how evenly the kernel spreads connections.
    pub fn accepted_per_worker(&self) -> Vec<u64> {
        self.shared
            .accepted
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Applies `config` without dropping a connection: pools are rebuilt (instances kept by
    /// address keep their counters, connections and WebSockets; new ones are added; missing
    /// ones drain and leave), algorithms, health and compression settings and the routing
    /// rules are replaced, and the TLS
    /// certificate and key are read again (new handshakes use them). Keys that need a restart
    /// (listen addresses, turning TLS on or off, limits and timeouts, the admin token) are
    /// logged as such and otherwise ignored.
    ///
    /// # Errors
    /// [`GatewayError::Config`] for bad pools or rules, or unreadable TLS files; nothing
    /// changes then.
    pub fn reload(&self, config: &GatewayConfig) -> Result<(), GatewayError> {
        let shared = &self.shared;
        let tls = match (&shared.tls, tls::paths(config)) {
            (Some(_), Some((cert, key))) => Some(tls::server_config(&cert, &key)?),
            _ => None,
        };
        shared.membership.reload(config)?;
        shared.rate_limits.reload(&config.rate_limits);
        shared.per_ip.set(config.max_connections_per_ip);
        if let (Some(current), Some(new)) = (&shared.tls, tls) {
            current.install(new);
        }
        let restart = shared.started_with.needs_restart(config);
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "configuration reloaded; these keys only change with a restart");
        } else {
            tracing::info!("configuration reloaded");
        }
        Ok(())
    }
}
