//! [`Worker`]: the handlers' consume loops, the outbox relay, the lag gauges and the
//! operational endpoints, run until shutdown.
//!
//! Endpoints besides `/healthz`, `/readyz` and `/metrics` (the `strata events` commands call
//! them; with an admin token set they need `Authorization: Bearer <token>`):
//! - `GET /events/stats`: [`EventStats`];
//! - `GET /events/dlq?from=ID&limit=N`: dead letters, oldest first (`limit` ≤ 1000);
//! - `POST /events/dlq/replay` with `{"ids": [ID, …]}` (empty or absent: all): replays them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use strata_bus::{AnyBus, Bus};
use strata_core::Shutdown;
use strata_core::config::Secret;
use strata_core::http::{RoleServer, ready_check, role_router, unready};
use strata_store::Store;
use tokio::task::JoinSet;

use crate::consumer::Consumer;
use crate::dlq::{self, Listed, Replayed};
use crate::handlers::{Handler, Handlers};
use crate::metrics::WorkerMetrics;
use crate::payment::PaymentProvider;
use crate::settings::PipelineSettings;
use crate::stats::EventStats;
use crate::{ROLE, WorkerError, relay};

/// Largest request body accepted: a replay's id list.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What one worker needs besides its backends.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The instance name (`worker-1`), sent back in `X-Strata-Instance` and used in logs.
    pub instance: String,
    /// Where the operational endpoints listen; port 0 lets the OS choose.
    pub listen: SocketAddr,
    /// Bearer token of `/events/*`; empty: none needed (keep the listener on loopback then).
    pub admin_token: Secret,
    /// Time a request to the endpoints has to produce its response before it is given up
    /// with a JSON 504 (`worker.request_timeout_ms`; default
    /// `strata_core::http::DEFAULT_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// How events are consumed and relayed.
    pub pipeline: PipelineSettings,
}

/// One worker: a bound listener for its operational endpoints, and the pipeline it runs.
pub struct Worker {
    server: RoleServer,
    store: Store,
    bus: AnyBus,
    metrics: WorkerMetrics,
    settings: Arc<PipelineSettings>,
}

#[derive(Clone)]
struct Ops {
    store: Store,
    bus: AnyBus,
    token: Secret,
}

impl Worker {
    /// Binds the listener and builds the router. Nothing runs until [`Worker::run`].
    ///
    /// # Errors
    /// [`WorkerError::Role`] when the address cannot be bound.
    pub async fn build(
        settings: WorkerSettings,
        store: Store,
        bus: AnyBus,
    ) -> Result<Self, WorkerError> {
        let instance: Arc<str> = Arc::from(settings.instance.as_str());
        let mut registry = Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);

        let ready = ready_check({
            let (store, bus) = (store.clone(), bus.clone());
            move || {
                let (store, bus) = (store.clone(), bus.clone());
                async move {
                    store.ready().await.map_err(|e| unready("store", e))?;
                    bus.ping().await.map_err(|e| unready("bus", e))
                }
            }
        });
        let ops = Ops {
            store: store.clone(),
            bus: bus.clone(),
            token: settings.admin_token.clone(),
        };
        let routes = Router::new()
            .route("/events/stats", get(stats))
            .route("/events/dlq", get(list_dead_letters))
            .route("/events/dlq/replay", post(replay_dead_letters))
            .with_state(ops);
        let router = role_router(
            ROLE,
            instance.clone(),
            registry,
            routes,
            ready,
            MAX_BODY_BYTES,
            settings.request_timeout,
        );
        let server = RoleServer::bind(ROLE, instance, settings.listen, router).await?;
        Ok(Self {
            server,
            store,
            bus,
            metrics,
            settings: Arc::new(settings.pipeline),
        })
    }

    /// The address actually bound (the OS's choice when the port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Runs the pipeline and serves until `shutdown` is cancelled; then stops taking events,
    /// lets the deliveries in hand finish (for a bounded time) and returns.
    ///
    /// Dropping the returned future instead (a crash, as the failover tests do) stops
    /// everything at once: transactions in flight roll back, unanswered deliveries come back
    /// after `ack_wait`.
    ///
    /// # Errors
    /// [`WorkerError::Role`] when the listener fails.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), WorkerError> {
        // Owned by this future: dropping it aborts every task.
        let mut tasks = JoinSet::new();
        let handlers = Handlers::new(
            self.store.clone(),
            PaymentProvider::Simulated(self.settings.payments),
            self.settings.fulfilment_delay,
        );
        for handler in Handler::ALL {
            let consumer = Consumer {
                handler,
                handlers: handlers.clone(),
                bus: self.bus.clone(),
                metrics: self.metrics.clone(),
                settings: Arc::clone(&self.settings),
            };
            tasks.spawn(consumer.run(shutdown.clone()));
        }
        if self.settings.relay {
            tasks.spawn(relay::run(
                self.store.clone(),
                self.bus.clone(),
                self.metrics.clone(),
                Arc::clone(&self.settings),
                shutdown.clone(),
            ));
        }
        tasks.spawn(refresh_gauges(
            self.store.clone(),
            self.bus.clone(),
            self.metrics.clone(),
            self.settings.stats_interval,
            shutdown.clone(),
        ));
        let served = self.server.run(shutdown).await;
        while tasks.join_next().await.is_some() {}
        Ok(served?)
    }
}

/// Refreshes the lag, dead-letter and outbox gauges every `every`.
async fn refresh_gauges(
    store: Store,
    bus: AnyBus,
    metrics: WorkerMetrics,
    every: std::time::Duration,
    shutdown: Shutdown,
) {
    loop {
        match EventStats::read(&bus, &store).await {
            Ok(stats) => stats.export(&metrics),
            Err(e) => tracing::debug!(error = %e, "cannot read event stats"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

impl Ops {
    fn check(&self, headers: &HeaderMap) -> Result<(), WorkerError> {
        if self.token.is_empty() {
            return Ok(());
        }
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        if strata_core::http::constant_time_eq(presented.as_bytes(), self.token.expose().as_bytes())
        {
            Ok(())
        } else {
            Err(WorkerError::Unauthorized)
        }
    }
}

async fn stats(
    State(ops): State<Ops>,
    headers: HeaderMap,
) -> Result<Json<EventStats>, WorkerError> {
    ops.check(&headers)?;
    Ok(Json(EventStats::read(&ops.bus, &ops.store).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn list_dead_letters(
    State(ops): State<Ops>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<Listed>>, WorkerError> {
    ops.check(&headers)?;
    let Query(query) = query.map_err(|e| WorkerError::BadRequest(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=dlq::MAX_LIST).contains(&limit) {
        return Err(WorkerError::BadRequest(format!(
            "limit must be between 1 and {}",
            dlq::MAX_LIST
        )));
    }
    Ok(Json(
        dlq::list(&ops.bus, query.from.unwrap_or(1), limit).await?,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    ids: Vec<u64>,
}

async fn replay_dead_letters(
    State(ops): State<Ops>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Replayed>, WorkerError> {
    ops.check(&headers)?;
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| WorkerError::BadRequest(format!("expected {{\"ids\": [ID, …]}}: {e}")))?
    };
    if request.ids.len() > dlq::MAX_LIST {
        return Err(WorkerError::BadRequest(format!(
            "at most {} ids per replay",
            dlq::MAX_LIST
        )));
    }
    let replayed = dlq::replay(&ops.bus, &request.ids).await?;
    tracing::info!(
        replayed = replayed.replayed.len(),
        missing = replayed.missing.len(),
        "dead letters replayed"
    );
    Ok(Json(replayed))
}
