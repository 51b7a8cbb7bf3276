//! [`ChatServer`]: binds the listener, assembles the router, runs the background tasks and
//! serves until shutdown, then drains: `/readyz` turns unready, every connection gets its
//! in-flight frames and a "reconnect" close, and the instance waits for them to finish.
//! Listening and serving are [`RoleServer`]'s, as in every role.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use strata_bus::{AnyBus, Bus};
use strata_cache::AnyCache;
use strata_core::Shutdown;
use strata_core::auth::TokenKey;
use strata_core::http::{DEFAULT_REQUEST_TIMEOUT, RoleServer, ready_check, role_router, unready};
use strata_store::Store;

use crate::committer::{self, Post};
use crate::hub::Hub;
use crate::metrics::ChatMetrics;
use crate::{ChatError, ROLE, background, http};

/// Largest HTTP request body accepted: chat routes take none.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Per-connection limits and timings of a chat instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatLimits {
    /// Ping interval; a connection silent for two intervals is closed, and presence entries
    /// live for two intervals. Default 10 s (a dead instance's users show offline within
    /// 20 s, at one small frame per connection per 10 s).
    pub heartbeat: Duration,
    /// Frames queued for one connection before it counts as too slow and is closed (4009).
    /// Default 256: a few seconds of a busy room, a few KiB of pointers when idle.
    pub outgoing_buffer: usize,
    /// Longest message body in bytes. Default 4096.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame (and message) accepted; larger ones close with 1009.
    /// Default 16 KiB: a maximal `send` frame with room to spare.
    pub max_frame_bytes: usize,
    /// Frames per second a connection may send on average. Default 20.
    pub rate_per_sec: u32,
    /// Frames a connection may send in a burst. Default 40.
    pub burst: u32,
    /// Read buffer per connection. Default 1 KiB: idle connections dominate memory, client
    /// frames are small (a `send` is a few hundred bytes), and a larger frame grows the
    /// buffer to its size, so a small one only costs extra reads for large bursts.
    pub read_buffer_bytes: usize,
    /// How long draining waits for connections to take their close. Default 5 s.
    pub drain_timeout: Duration,
    /// How long the instance answers `/readyz` with 503, once shutdown is asked for, before
    /// it tells its connections to reconnect: a balancer that checks readiness stops sending
    /// new connections first, so reconnecting clients land elsewhere. Default zero.
    pub drain_delay: Duration,
    /// Time an HTTP request (history, presence, the upgrade itself) has to produce its
    /// response before it is given up with a JSON 504 (`chat.request_timeout_ms`); an
    /// upgraded WebSocket is not bound by it. Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            outgoing_buffer: 256,
            max_body_bytes: 4096,
            max_frame_bytes: 16 * 1024,
            rate_per_sec: 20,
            burst: 40,
            read_buffer_bytes: 1024,
            drain_timeout: Duration::from_secs(5),
            drain_delay: Duration::ZERO,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl ChatLimits {
    fn check(&self) -> Result<(), ChatError> {
        if self.request_timeout.is_zero() {
            return Err(ChatError::settings(
                "request_timeout must be more than zero",
            ));
        }
        if self.heartbeat < Duration::from_millis(20) {
            return Err(ChatError::settings("heartbeat must be at least 20 ms"));
        }
        if self.outgoing_buffer == 0 || self.rate_per_sec == 0 || self.burst == 0 {
            return Err(ChatError::settings(
                "outgoing_buffer, rate_per_sec and burst must be at least 1",
            ));
        }
        if self.max_body_bytes == 0 || self.max_frame_bytes < self.max_body_bytes {
            return Err(ChatError::settings(
                "max_frame_bytes must be at least max_body_bytes, which must be positive",
            ));
        }
        Ok(())
    }
}

/// What one chat instance needs besides its backends.
#[derive(Clone, Debug)]
pub struct ChatSettings {
    /// The instance name (`chat-1`), sent back in `X-Strata-Instance`, used in logs and as
    /// the bus durable name of its fan-out subscription.
    pub instance: String,
    /// Where to listen; port 0 lets the OS choose (see [`ChatServer::local_addr`]).
    pub listen: SocketAddr,
    /// The deployment's token signing secret (the api's `auth.jwt_secret`).
    pub jwt_secret: Vec<u8>,
    /// The key id tokens must name (the api's `auth.key_id`).
    pub key_id: String,
    /// Connection limits and timings.
    pub limits: ChatLimits,
}

/// One chat instance: a bound listener, the router it will serve and its shared state.
pub struct ChatServer {
    server: RoleServer,
    hub: Arc<Hub>,
    posts: tokio::sync::mpsc::Receiver<Post>,
}

impl ChatServer {
    /// Binds the listener and builds the router. Nothing is served until [`ChatServer::run`].
    ///
    /// # Errors
    /// [`ChatError::Role`] for unusable limits or token key (a secret shorter than 32 bytes,
    /// an empty key id), or when the address cannot be bound.
    pub async fn build(
        settings: ChatSettings,
        store: Store,
        cache: AnyCache,
        bus: AnyBus,
    ) -> Result<Self, ChatError> {
        settings.limits.check()?;
        let tokens = TokenKey::new(&settings.jwt_secret, &settings.key_id)
            .map_err(|e| ChatError::settings(e.0))?;
        let instance: Arc<str> = Arc::from(settings.instance.as_str());
        let mut registry = Registry::default();
        let metrics = ChatMetrics::register(&mut registry);
        cache.register_metrics(ROLE, &mut registry);
        let (posts_tx, posts) = tokio::sync::mpsc::channel(committer::QUEUE);
        let hub = Arc::new(Hub::new(
            instance.clone(),
            store.clone(),
            cache.clone(),
            bus.clone(),
            tokens,
            settings.limits,
            metrics,
            posts_tx,
        ));
        let draining = hub.draining.clone();
        // Ready means what the instance cannot serve without: the store (history, and every
        // message is stored before it is acknowledged) and the bus (fan-out to the other
        // instances). The cache is left out on purpose: it only mirrors presence for the
        // other instances, so a cache outage costs presence across instances for its
        // duration, and must not take every chat instance out of the gateway's pool (which
        // would close every connection).
        let ready = ready_check(move || {
            let (store, bus) = (store.clone(), bus.clone());
            let draining = draining.is_cancelled();
            async move {
                if draining {
                    return Err("draining".to_owned());
                }
                store.ready().await.map_err(|e| unready("store", e))?;
                bus.ping().await.map_err(|e| unready("bus", e))
            }
        });
        let router = role_router(
            ROLE,
            instance.clone(),
            registry,
            http::routes(hub.clone()),
            ready,
            MAX_BODY_BYTES,
            settings.limits.request_timeout,
        );
        let server = RoleServer::bind(ROLE, instance, settings.listen, router).await?;
        Ok(Self { server, hub, posts })
    }

    /// The address actually bound (the OS's choice when the port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then drains (see the module docs) and returns.
    ///
    /// Dropping the returned future (aborting its task) stops the instance as a crash would:
    /// connections drop without a close frame and presence is left to expire.
    ///
    /// # Errors
    /// [`ChatError::Role`] when the listener fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), ChatError> {
        let hub = self.hub;
        let _crash = KillOnDrop(hub.clone());
        let bus_task = tokio::spawn(background::bus_loop(hub.clone()));
        let presence_task = tokio::spawn(background::presence_loop(hub.clone()));
        let commit_task = tokio::spawn(committer::commit_loop(hub.clone(), self.posts));
        let stop_serving = Shutdown::new();
        let unready = self.server.draining();
        // Serving goes on while draining, so that `/readyz` answers "draining" and the
        // gateway takes the instance out of its pool; it stops once the connections are gone.
        let serving = self.server.run(stop_serving.clone());
        tokio::pin!(serving);
        let early = tokio::select! {
            served = &mut serving => Some(served),
            () = shutdown.cancelled() => None,
        };
        let served = match early {
            Some(served) => served,
            // The listener is polled all along, so `/readyz` keeps answering "draining".
            None => tokio::join!(&mut serving, drain(&hub, &unready, &stop_serving)).0,
        };
        hub.killed.cancel();
        let _ = bus_task.await;
        let _ = presence_task.await;
        let _ = commit_task.await;
        Ok(served?)
    }
}

/// Drains: unready for the drain delay, then every connection is told to reconnect and
/// waited for (up to the drain timeout); then serving stops.
async fn drain(hub: &Hub, unready: &Shutdown, stop_serving: &Shutdown) {
    unready.cancel();
    let limits = hub.limits;
    if !limits.drain_delay.is_zero() {
        tracing::info!(instance = %hub.instance, delay_ms = limits.drain_delay.as_millis(), "draining: unready before telling clients to reconnect");
        tokio::time::sleep(limits.drain_delay).await;
    }
    tracing::info!(instance = %hub.instance, "draining chat connections");
    hub.draining.cancel();
    hub.tracker.close();
    if tokio::time::timeout(limits.drain_timeout, hub.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(instance = %hub.instance, "connections still open after the drain timeout");
    }
    stop_serving.cancel();
}

/// Cancels the hub's `killed` token when `run` ends in any way, dropped mid-flight included.
struct KillOnDrop(Arc<Hub>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.killed.cancel();
    }
}
