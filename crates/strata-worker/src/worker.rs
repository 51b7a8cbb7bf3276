//! [`Worker`]: binds the listener of the operational endpoints and serves them until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use strata_bus::{AnyBus, Bus};
use strata_core::Shutdown;
use strata_core::http::{RoleServer, ready_check, role_router, unready};
use strata_store::Store;

use crate::{ROLE, WorkerError};

/// Largest request body accepted: this role takes no bodies yet, so a small bound is enough.
const MAX_BODY_BYTES: usize = 64 * 1024;

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
    server: RoleServer,
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
        let instance: Arc<str> = Arc::from(settings.instance.as_str());

        let ready = ready_check(move || {
            let (store, bus) = (store.clone(), bus.clone());
            async move {
                store.ready().await.map_err(|e| unready("store", e))?;
                bus.ping().await.map_err(|e| unready("bus", e))
            }
        });
        let router = role_router(
            ROLE,
            instance.clone(),
            Registry::default(),
            Router::new(),
            ready,
            MAX_BODY_BYTES,
        );
        let server = RoleServer::bind(ROLE, instance, settings.listen, router)
            .await
            .map_err(|source| WorkerError::Bind {
                addr: settings.listen,
                source,
            })?;
        Ok(Self { server })
    }

    /// The address actually bound (the OS's choice when the port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish and returns.
    ///
    /// # Errors
    /// [`WorkerError::Serve`] when the listener fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), WorkerError> {
        self.server.run(shutdown).await.map_err(WorkerError::Serve)
    }
}
