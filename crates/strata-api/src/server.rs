//! [`ApiServer`]: binds the listener, assembles the router (pages, catalog, ops endpoints, JSON
//! fallbacks, body limit, observation) and serves it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use prometheus_client::registry::Registry;
use strata_cache::AnyCache;
use strata_core::Shutdown;
use strata_core::http::{ready_check, role_router, serve, unready};
use strata_store::Store;
use tokio::net::TcpListener;

use crate::cache_aside::CacheAside;
use crate::state::AppState;
use crate::{ApiError, ROLE, catalog, web};

/// What one api instance needs besides its backends.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// The instance name (`api-1`), sent back in `X-Strata-Instance` and used in logs.
    pub instance: String,
    /// Where to listen; port 0 lets the OS choose (see [`ApiServer::local_addr`]).
    pub listen: SocketAddr,
    /// How long a cached read stays valid. Must be more than zero.
    pub cache_ttl: Duration,
    /// The largest request body accepted; larger ones get a JSON 413. Must be more than zero.
    pub max_body_bytes: usize,
}

/// One api instance: a bound listener and the router it will serve.
pub struct ApiServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    instance: Arc<str>,
    router: Router,
}

impl ApiServer {
    /// Binds the listener and builds the router. Nothing is served until [`ApiServer::run`].
    ///
    /// The store is expected to be migrated already (the binary does it once per process);
    /// `/readyz` reports not ready until it is.
    ///
    /// # Errors
    /// [`ApiError::Settings`] for a zero TTL or body limit, [`ApiError::Bind`] when the address
    /// cannot be bound.
    pub async fn build(
        settings: ApiSettings,
        store: Store,
        cache: AnyCache,
    ) -> Result<ApiServer, ApiError> {
        if settings.cache_ttl.is_zero() {
            return Err(ApiError::Settings("cache_ttl must be more than zero"));
        }
        if settings.max_body_bytes == 0 {
            return Err(ApiError::Settings("max_body_bytes must be more than zero"));
        }
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| ApiError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ApiError::Bind {
            addr: settings.listen,
            source,
        })?;
        let instance: Arc<str> = Arc::from(settings.instance.as_str());

        let mut registry = Registry::default();
        let state = AppState {
            store: store.clone(),
            cache: CacheAside::new(cache, settings.cache_ttl, ROLE, &mut registry),
        };
        // The cache is left out on purpose: reads fall back to the store when it is down, so
        // an unreachable cache must not take every api instance out of the gateway's pools.
        let ready = ready_check(move || {
            let store = store.clone();
            async move { store.ready().await.map_err(|e| unready("store", e)) }
        });
        let routes = app_routes(state);
        let router = role_router(
            ROLE,
            instance.clone(),
            registry,
            routes,
            ready,
            settings.max_body_bytes,
        );
        Ok(ApiServer {
            listener,
            local_addr,
            instance,
            router,
        })
    }

    /// The address actually bound (the OS's choice when the port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The complete router, for driving the service in-process (`tower::ServiceExt::oneshot`).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves requests until `shutdown` is cancelled, then stops accepting, lets in-flight
    /// requests finish and returns.
    ///
    /// # Errors
    /// [`ApiError::Serve`] when the listener fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ApiError> {
        tracing::info!(instance = %self.instance, addr = %self.local_addr, "api instance listening");
        serve(self.listener, self.router, shutdown)
            .await
            .map_err(ApiError::Serve)?;
        tracing::info!(instance = %self.instance, "api instance stopped");
        Ok(())
    }
}

/// The api's own routes; [`role_router`] adds the ops endpoints, the fallbacks, the body limit
/// and the observing middleware around them.
fn app_routes(state: AppState) -> Router {
    Router::new()
        .merge(web::routes())
        .merge(catalog::routes())
        .with_state(state)
}
