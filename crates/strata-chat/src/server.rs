//! [`ChatServer`]: binds the listener, assembles the router and serves it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use prometheus_client::registry::Registry;
use strata_bus::{AnyBus, Bus};
use strata_cache::{AnyCache, Cache};
use strata_core::Shutdown;
use strata_core::http::{RoleServer, ready_check, role_router, unready};
use strata_store::Store;

use crate::{ChatError, ROLE};

/// Largest request body accepted: this role takes no bodies yet, so a small bound is enough.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What one chat instance needs besides its backends.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// The instance name (`chat-1`), sent back in `X-Strata-Instance` and used in logs.
    pub instance: String,
    /// Where to listen; port 0 lets the OS choose (see [`ChatServer::local_addr`]).
    pub listen: SocketAddr,
}

/// One chat instance: a bound listener and the router it will serve.
pub struct ChatServer {
    server: RoleServer,
}

impl ChatServer {
    /// Binds the listener and builds the router. Nothing is served until [`ChatServer::run`].
    ///
    /// # Errors
    /// [`ChatError::Bind`] when the address cannot be bound.
    pub async fn build(
        settings: ChatSettings,
        store: Store,
        cache: AnyCache,
        bus: AnyBus,
    ) -> Result<Self, ChatError> {
        let instance: Arc<str> = Arc::from(settings.instance.as_str());

        let ready = ready_check(move || {
            let (store, cache, bus) = (store.clone(), cache.clone(), bus.clone());
            async move {
                store.ready().await.map_err(|e| unready("store", e))?;
                cache.ping().await.map_err(|e| unready("cache", e))?;
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
            .map_err(|source| ChatError::Bind {
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
    /// [`ChatError::Serve`] when the listener fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ChatError> {
        self.server.run(shutdown).await.map_err(ChatError::Serve)
    }
}
