//! [`Worker`]: binds the listener of the operational endpoints and serves them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use prometheus_client::registry::Registry;
use strata_bus::{AnyBus, Bus};
use strata_core::Shutdown;
use strata_core::http::{
    HttpMetrics, Observe, Ops, ReadyCheck, method_not_allowed, not_found, observe, ops_router,
    serve,
};
use strata_store::Store;
use tokio::net::TcpListener;

use crate::{ROLE, WorkerError};

/// What one worker needs besides its backends.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The instance name (`worker-1`), sent back in `X-Strata-Instance` and used in logs.
    pub instance: String,
    /// Where the operational endpoints listen; port 0 lets the OS choose.
    pub listen: SocketAddr,
}

/// One worker: a bound listener for its operational endpoints.
pub struct Worker {
    listener: TcpListener,
    local_addr: SocketAddr,
    instance: Arc<str>,
    router: Router,
}

impl Worker {
    /// Binds the listener and builds the router. Nothing runs until [`Worker::run`].
    ///
    /// # Errors
    /// [`WorkerError::Bind`] when the address cannot be bound.
    pub async fn build(
        settings: WorkerSettings,
        store: Store,
        bus: AnyBus,
    ) -> Result<Self, WorkerError> {
        let bind_error = |source| WorkerError::Bind {
            addr: settings.listen,
            source,
        };
        let listener = TcpListener::bind(settings.listen)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let instance: Arc<str> = Arc::from(settings.instance.as_str());

        let mut registry = Registry::default();
        let metrics = HttpMetrics::register(ROLE, &mut registry);
        let ops = Ops {
            role: ROLE,
            instance: instance.clone(),
            registry: Arc::new(registry),
            ready: readiness(store, bus),
        };
        let router = Router::new()
            .merge(ops_router(ops))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // Outermost, so every response (fallbacks included) is observed and labelled.
            .layer(middleware::from_fn_with_state(
                Observe {
                    instance: instance.clone(),
                    metrics,
                },
                observe,
            ));
        Ok(Self {
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

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish and returns.
    ///
    /// # Errors
    /// [`WorkerError::Serve`] when the listener fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), WorkerError> {
        tracing::info!(instance = %self.instance, addr = %self.local_addr, "worker listening");
        serve(self.listener, self.router, shutdown)
            .await
            .map_err(WorkerError::Serve)?;
        tracing::info!(instance = %self.instance, "worker stopped");
        Ok(())
    }
}

/// `/readyz`: the store answers and is fully migrated, and the bus answers. Causes go to the
/// log; the probe's body only names the backend, since it is public.
fn readiness(store: Store, bus: AnyBus) -> ReadyCheck {
    Arc::new(move || {
        let (store, bus) = (store.clone(), bus.clone());
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
            if let Err(e) = bus.ping().await {
                tracing::warn!(error = %e, "not ready: bus unreachable");
                return Err("bus unreachable".to_owned());
            }
            Ok(())
        })
    })
}
