//! [`ApiServer`]: binds the listener, assembles the router (pages, catalog, ops endpoints, JSON
//! fallbacks, body limit, observation) and serves it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;
use strata_cache::AnyCache;
use strata_core::Shutdown;
use strata_core::http::{
    HttpMetrics, Observe, Ops, ReadyCheck, method_not_allowed, not_found, observe, ops_router,
    serve,
};
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
        let metrics = HttpMetrics::register(ROLE, &mut registry);
        let state = AppState {
            store: store.clone(),
            cache: CacheAside::new(cache.clone(), settings.cache_ttl, ROLE, &mut registry),
        };
        let ops = Ops {
            role: ROLE,
            instance: instance.clone(),
            registry: Arc::new(registry),
            ready: readiness(store, state.cache.clone()),
        };
        let router = app_router(
            state,
            ops,
            Observe {
                instance: instance.clone(),
                metrics,
            },
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

/// The whole router of one instance. Layers added later wrap the ones before, so `observe` is
/// outermost: every response, including fallbacks and 413s, carries the request id and the
/// instance name and is counted.
fn app_router(state: AppState, ops: Ops, observed: Observe, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(web::routes())
        .merge(catalog::routes())
        .with_state(state)
        .merge(ops_router(ops))
        .fallback(not_found)
        // Set after every merge: it applies to the routes present when it is called.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            limit_declared_body,
        ))
        .layer(middleware::from_fn_with_state(observed, observe))
}

/// Refuses a request whose `Content-Length` exceeds the limit with a JSON 413 before any
/// handler runs. Bodies without a length (chunked) are bounded by [`DefaultBodyLimit`] when an
/// extractor reads them.
async fn limit_declared_body(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > u64::try_from(limit).unwrap_or(u64::MAX) => {
            ApiError::PayloadTooLarge { limit }.into_response()
        }
        _ => next.run(request).await,
    }
}

/// `/readyz`: the store answers and is fully migrated, and the cache answers. Causes go to the
/// log; the probe's body only names the backend, since it is public.
fn readiness(store: Store, cache: CacheAside) -> ReadyCheck {
    Arc::new(move || {
        let store = store.clone();
        let cache = cache.clone();
        Box::pin(async move {
            if let Err(e) = store.ping().await {
                tracing::warn!(error = %e, "not ready: store unreachable");
                return Err("store unreachable".to_owned());
            }
            match store.migrations_applied().await {
                Ok(true) => {}
                Ok(false) => return Err("store migrations not applied".to_owned()),
                Err(e) => {
                    tracing::warn!(error = %e, "not ready: cannot check migrations");
                    return Err("store migrations unknown".to_owned());
                }
            }
            if let Err(e) = cache.ping().await {
                tracing::warn!(error = %e, "not ready: cache unreachable");
                return Err("cache unreachable".to_owned());
            }
            Ok(())
        })
    })
}
