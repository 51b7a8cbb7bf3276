//! strata-gateway: strata's own L7 load balancer.
//!
//! Requests arrive on the public listener, are routed by path to a pool (`/api/v1/chat/` →
//! `chat`, everything else → `api`), spread over the pool's instances by its [`balance`]
//! algorithm and forwarded over pooled keep-alive connections ([`upstream`]). The admin
//! listener serves `/metrics`, `/healthz`, `/readyz` and `/admin/pools`.
//!
//! ```no_run
//! # async fn example(config: strata_core::config::GatewayConfig) -> Result<(), strata_gateway::GatewayError> {
//! let gateway = strata_gateway::Gateway::build(&config).await?;
//! println!("listening on {}", gateway.local_addr());
//! let shutdown = strata_core::Shutdown::new();
//! gateway.run(shutdown).await
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod balance;
pub mod error;
pub mod health;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod proxy;
pub mod retry_budget;
mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use strata_core::Shutdown;
use strata_core::config::GatewayConfig;
use tokio::net::TcpListener;

pub use error::{GatewayError, Party, ProxyError, RetrySafety};
pub use limits::Limits;

use crate::admin::Admin;
use crate::membership::Membership;
use crate::metrics::Metrics;
use crate::proxy::{ClientInfo, Proxy};

/// hyper refuses read buffers below 8 KiB, so request heads cannot be limited below that.
const MIN_HEADER_BYTES: usize = 8 * 1024;

/// A built gateway: listeners bound, pools ready, not yet serving.
#[derive(Debug)]
pub struct Gateway {
    public: TcpListener,
    admin: TcpListener,
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    limits: Limits,
    membership: Arc<Membership>,
    registry: Arc<Registry>,
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
        let membership = Arc::new(Membership::build(config, &limits, &metrics)?);
        let (public, local_addr) = bind("public", config.listen).await?;
        let (admin, admin_addr) = bind("admin", config.admin_listen).await?;
        for pool in membership.snapshot().pools() {
            let instances: Vec<&str> = pool.instances().iter().map(|i| i.address()).collect();
            tracing::info!(pool = pool.name(), algorithm = %pool.algorithm(), ?instances, "pool ready");
        }
        Ok(Gateway {
            public,
            admin,
            local_addr,
            admin_addr,
            limits,
            membership,
            registry: Arc::new(registry),
        })
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
        } = self;
        tracing::info!(%local_addr, %admin_addr, "gateway serving");
        let drain = limits.request_timeout;
        let proxy = Arc::new(Proxy::new(Arc::clone(&membership), limits.clone()));
        let admin_api = Arc::new(Admin::new(Arc::clone(&membership), registry));
        // Health checks run until shutdown, or until `run` returns or is dropped.
        let _health = membership.start_health(&shutdown);

        let public = server::serve_on_workers(
            "public",
            public,
            &limits,
            drain,
            move |peer| {
                let proxy = Arc::clone(&proxy);
                let client = Arc::new(ClientInfo::new(peer.ip()));
                move |request| {
                    let (proxy, client) = (Arc::clone(&proxy), Arc::clone(&client));
                    async move { proxy.handle(&client, request).await }
                }
            },
            shutdown.clone(),
        );
        let admin = server::serve(
            "admin",
            admin,
            &limits,
            drain,
            move |_peer| {
                let admin_api = Arc::clone(&admin_api);
                move |request| std::future::ready(admin_api.handle(&request))
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
