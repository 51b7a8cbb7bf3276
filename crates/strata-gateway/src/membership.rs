//! Pools and their instances, and which pool a request path goes to.
//!
//! The table of pools sits behind an [`ArcSwap`]: a request loads the current snapshot with
//! one atomic read and no lock, and a change (instances added, drained, removed through the
//! admin API, a configuration reload, a DNS answer that changed) builds a new table off the
//! request path and swaps it in. Instances are `Arc`s shared between snapshots, so their
//! counters, gauges, health, idle connections and open WebSockets survive a rebuild.
//!
//! # Draining
//! A draining instance takes no new request (it is unavailable to every balancer) while its
//! in-flight requests finish; its WebSockets are closed [`Limits::drain_timeout`] after the
//! drain began. A *removed* instance drains, then leaves the table once nothing is in flight
//! (or the drain deadline plus the request timeout has passed: requests still running then
//! keep their own reference to it and finish).
//!
//! Each pool also keeps its balancer behind an `ArcSwap`, rebuilt by the instances' health
//! tasks when health or slow-start weights change ([`Pool::refresh`]); a pick loads it without
//! locking and reads the instances' live state through [`Live`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::{GatewayConfig, InstanceUrl, PoolSettings, parse_instance_url};
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Uri};
use strata_core::Shutdown;

use crate::balance::key::{self, KeySource};
use crate::balance::{self, Algorithm, Balancer, Live, PickContext, Snapshot};
use crate::error::{GatewayError, ProxyError};
use crate::health::{HealthPolicy, HealthTasks, InstanceHealth};
use crate::limits::Limits;
use crate::metrics::{InstanceMetrics, Metrics, PoolMetrics};
use crate::retry_budget::RetryBudget;
use crate::upstream::Upstream;

/// The routes of the design: `/api/v1/chat/` goes to the chat pool, every other path to api.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Api,
    Chat,
}

impl Route {
    /// Every route; a route's position here indexes per-route tables.
    pub const ALL: [Self; 2] = [Self::Api, Self::Chat];

    /// Path prefix of the chat route (WebSocket, history, presence).
    pub const CHAT_PREFIX: &'static str = "/api/v1/chat/";

    /// The route of a request path.
    pub fn for_path(path: &str) -> Self {
        if path.starts_with(Self::CHAT_PREFIX) {
            Self::Chat
        } else {
            Self::Api
        }
    }

    /// The pool this route sends requests to.
    pub fn pool_name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Chat => "chat",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `Instance::state`: takes requests.
const ACTIVE: u8 = 0;
/// `Instance::state`: draining; stays in the table.
const DRAINING: u8 = 1;
/// `Instance::state`: draining, then dropped from the table.
const REMOVING: u8 = 2;

/// One instance of a pool: its address, its connections, its health and its figures.
#[derive(Debug)]
pub struct Instance {
    url: Mutex<String>,
    address: Arc<str>,
    pub(crate) host: String,
    pub(crate) port: u16,
    id: u64,
    weight: AtomicU32,
    max_in_flight: AtomicU64,
    upstream: Upstream,
    health: InstanceHealth,
    metrics: InstanceMetrics,
    served: AtomicU64,
    /// `ACTIVE`, `DRAINING` or `REMOVING`.
    state: AtomicU8,
    /// Cancelled when the instance's WebSockets must close (drain deadline).
    tunnels: Shutdown,
    /// Cancelled when the instance leaves the table: stops its health task.
    retired: Shutdown,
    /// The configured URL this instance came from when a host name was resolved to it (DNS).
    source: Option<String>,
}

impl Instance {
    /// A new instance of `pool` at `parsed` (from `url`), up, with no connection yet.
    fn new(
        pool: &str,
        url: &str,
        parsed: &InstanceUrl,
        limits: &Limits,
        metrics: &Metrics,
        policy: &Arc<HealthPolicy>,
        source: Option<String>,
    ) -> Result<Self, String> {
        let address = parsed.address();
        let metrics = metrics.instance(pool, &address);
        let upstream = Upstream::new(&parsed.host, parsed.port, limits, metrics.batches.clone())?;
        let health = InstanceHealth::new(
            Arc::clone(policy),
            metrics.health.clone(),
            &format!("{pool}/{address}"),
        );
        Ok(Instance {
            url: Mutex::new(url.to_owned()),
            id: balance::hash::instance_id(&address),
            address: address.into(),
            host: parsed.host.clone(),
            port: parsed.port,
            weight: AtomicU32::new(parsed.weight),
            max_in_flight: AtomicU64::new(parsed.max_in_flight),
            upstream,
            health,
            metrics,
            served: AtomicU64::new(0),
            state: AtomicU8::new(ACTIVE),
            tunnels: Shutdown::new(),
            retired: Shutdown::new(),
            source,
        })
    }

    /// `host:port` as configured: the `instance` label and the admin API's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The configured URL, `http://host:port` and its settings, if any.
    pub fn url(&self) -> String {
        self.url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the instance is draining (takes no new requests).
    pub fn is_draining(&self) -> bool {
        self.state.load(Ordering::Relaxed) != ACTIVE
    }

    /// Whether the instance is draining on its way out of the table.
    pub fn is_removing(&self) -> bool {
        self.state.load(Ordering::Relaxed) == REMOVING
    }

    /// Cancelled when the instance's WebSockets must close (the drain deadline passed).
    pub fn tunnels_closing(&self) -> &Shutdown {
        &self.tunnels
    }

    /// Cancelled once the instance has left the table.
    pub fn retired(&self) -> &Shutdown {
        &self.retired
    }

    /// The URL with a host name this instance was resolved from; `None` when configured
    /// as is.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// `host:port` of the name this instance stands for: its source's, or its own when it
    /// is itself a name not resolved yet; `None` for an instance configured by address.
    fn source_address(&self) -> Option<String> {
        match &self.source {
            Some(source) => parse_instance_url(source).ok().map(|p| p.address()),
            None if self.host.parse::<IpAddr>().is_err() && !self.host.starts_with('[') => {
                Some(self.address.to_string())
            }
            None => None,
        }
    }

    /// The instance's stable id: a hash of its address, the same on every gateway (sticky
    /// cookies, ring positions).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The configured weight (1..=1000).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// The weight balancers use now: 0 while down, ejected or draining, ramping during slow
    /// start.
    pub fn effective_weight(&self) -> u32 {
        if self.is_draining() {
            return 0;
        }
        self.health.effective_weight(self.weight())
    }

    /// In-flight requests above which the instance is passed over; 0: no limit.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::Relaxed)
    }

    /// Requests being served by this instance now, response bodies and WebSockets included.
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.metrics.in_flight.get()).unwrap_or(0)
    }

    /// Responses this instance produced so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Health: up, down, ejected; and the outcome reports of the proxy.
    pub fn health(&self) -> &InstanceHealth {
        &self.health
    }

    /// Whether the instance may take a request now: up, not ejected, not draining, under its
    /// limit.
    pub fn is_available(&self) -> bool {
        let limit = self.max_in_flight();
        self.health.is_up() && !self.is_draining() && (limit == 0 || self.in_flight() < limit)
    }

    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub(crate) fn metrics(&self) -> &InstanceMetrics {
        &self.metrics
    }

    pub(crate) fn count_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// A pool's balancer for one health snapshot, with the effective weights it was built from.
#[derive(Debug)]
struct Selector {
    effective: Box<[u32]>,
    balancer: Box<dyn Balancer>,
}

/// A pool: interchangeable instances and the algorithm that spreads requests over them.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    configured: bool,
    instances: Vec<Arc<Instance>>,
    algorithm: Algorithm,
    balance_factor: f64,
    keys: KeySource,
    fail_open: bool,
    /// Most requests one batch to an instance carries ([`PoolSettings::pipeline_depth`]).
    pipeline_depth: usize,
    /// The settings the pool was built with, for rebuilds.
    settings: PoolSettings,
    /// The balancer over the instances available at the last health change.
    selector: ArcSwap<Selector>,
    /// The same algorithm over every instance at its configured weight, built once: it covers
    /// the moment between a recovery and the rebuild, and serves `fail_open`.
    everyone: Box<dyn Balancer>,
    /// Serialises rebuilds, so the last one stored saw the latest health. Never taken on the
    /// request path.
    rebuilding: Mutex<()>,
    retry_budget: RetryBudget,
    metrics: PoolMetrics,
}

impl Pool {
    /// The pool's name (`api`, `chat`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False for a routed pool the configuration does not mention (it has no instance).
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// The instances, in configuration order.
    pub fn instances(&self) -> &[Arc<Instance>] {
        &self.instances
    }

    /// The algorithm in use.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Whether the pool tries an instance even when none is available.
    pub fn fails_open(&self) -> bool {
        self.fail_open
    }

    /// The pool's retry budget.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.retry_budget
    }

    /// The affinity key of a request: what `consistent_hash` hashes, or the instance id a
    /// `sticky` cookie names; `None` for other algorithms.
    pub fn affinity(&self, headers: &HeaderMap, uri: &Uri, client_ip: IpAddr) -> Option<u64> {
        self.keys.key(headers, uri, client_ip)
    }

    /// The `Set-Cookie` value a `sticky` pool adds to a response `served_by` produced, when
    /// the request's cookie (`affinity`) did not already name that instance.
    pub fn sticky_cookie(
        &self,
        affinity: Option<u64>,
        served_by: &Instance,
    ) -> Option<HeaderValue> {
        match &self.keys {
            KeySource::Sticky(name) if affinity != Some(served_by.id) => {
                key::sticky_cookie(name, served_by.id)
            }
            _ => None,
        }
    }

    /// The instance for a request with affinity key `affinity`.
    ///
    /// # Errors
    /// [`ProxyError::NoInstance`] when the pool has no instance at all,
    /// [`ProxyError::NoHealthyInstance`] when none is available and the pool does not fail
    /// open.
    pub fn pick(&self, affinity: Option<u64>) -> Result<&Arc<Instance>, ProxyError> {
        if self.instances.is_empty() {
            return Err(ProxyError::NoInstance {
                pool: Arc::clone(&self.name),
            });
        }
        let cx = self.context(affinity, self);
        let index = self.selector.load().balancer.pick(&cx).or_else(|| {
            if self.any_available() {
                // Back since the last rebuild: the balancer over everyone finds it.
                self.everyone.pick(&cx)
            } else if self.fail_open {
                self.everyone
                    .pick(&self.context(affinity, &IgnoringHealth(self)))
            } else {
                None
            }
        });
        index
            .and_then(|i| self.instances.get(i))
            .ok_or_else(|| ProxyError::NoHealthyInstance {
                pool: Arc::clone(&self.name),
            })
    }

    /// The instance to retry on after `failed` could not serve a request with affinity key
    /// `affinity`: another available one when there is one.
    pub fn next_after(&self, failed: &Instance, affinity: Option<u64>) -> Option<&Arc<Instance>> {
        let index = self
            .instances
            .iter()
            .position(|i| std::ptr::eq(&**i, failed))?;
        let cx = self.context(affinity, self);
        let next = self
            .selector
            .load()
            .balancer
            .next_after(index, &cx)
            .or_else(|| {
                if self.any_available() {
                    self.everyone.next_after(index, &cx)
                } else if self.fail_open {
                    self.everyone
                        .next_after(index, &self.context(affinity, &IgnoringHealth(self)))
                } else {
                    None
                }
            })?;
        self.instances.get(next)
    }

    /// Rebuilds the balancer when the instances' effective weights (health, slow start) differ
    /// from those it was built with. Called by the health tasks, never on the request path.
    pub fn refresh(&self) {
        let _rebuilding = self
            .rebuilding
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let effective: Box<[u32]> = self
            .instances
            .iter()
            .map(|i| i.effective_weight())
            .collect();
        if self.selector.load().effective == effective {
            return;
        }
        let selector = self.selector(effective);
        tracing::debug!(pool = %self.name, effective = ?selector.effective, "balancer rebuilt");
        self.selector.store(Arc::new(selector));
    }

    pub(crate) fn metrics(&self) -> &PoolMetrics {
        &self.metrics
    }

    fn selector(&self, effective: Box<[u32]>) -> Selector {
        let (weights, ids) = self.weights_and_ids();
        let balancer = balance::build(
            self.algorithm,
            &Snapshot {
                weights: &weights,
                effective: &effective,
                ids: &ids,
                balance_factor: self.balance_factor,
                seed: None,
            },
        );
        Selector {
            effective,
            balancer,
        }
    }

    /// Whether some instance is available now (only asked when the balancer found none).
    fn any_available(&self) -> bool {
        self.instances.iter().any(|i| i.is_available())
    }

    fn weights_and_ids(&self) -> (Vec<u32>, Vec<u64>) {
        self.instances.iter().map(|i| (i.weight(), i.id)).unzip()
    }

    /// The instance named by `id`: its hex id (as the admin API shows it) or its address.
    pub fn find(&self, id: &str) -> Option<&Arc<Instance>> {
        self.instances
            .iter()
            .find(|i| &*i.address == id || key::format_id(i.id) == id)
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// Most requests to one instance that share a connection (1: no pipelining).
    pub fn pipeline_depth(&self) -> usize {
        self.pipeline_depth
    }

    fn context<'a>(&self, key: Option<u64>, live: &'a dyn Live) -> PickContext<'a> {
        PickContext {
            len: self.instances.len(),
            key,
            live,
        }
    }
}

impl Live for Pool {
    fn in_flight(&self, index: usize) -> u64 {
        self.instances.get(index).map_or(0, |i| i.in_flight())
    }

    fn is_available(&self, index: usize) -> bool {
        self.instances.get(index).is_some_and(|i| i.is_available())
    }
}

/// A pool's live state with every instance available: the last resort of `fail_open`.
struct IgnoringHealth<'a>(&'a Pool);

impl Live for IgnoringHealth<'_> {
    fn in_flight(&self, index: usize) -> u64 {
        self.0.in_flight(index)
    }

    fn is_available(&self, index: usize) -> bool {
        // Health is ignored, draining is not: a drained instance may be going away.
        self.0
            .instances
            .get(index)
            .is_some_and(|i| !i.is_draining())
    }
}

/// One consistent view of every pool.
#[derive(Debug)]
pub struct PoolTable {
    /// Configured pools, in configuration order.
    configured: Vec<Arc<Pool>>,
    /// The pool of each route, in the order of [`Route::ALL`]; an empty pool when not configured.
    routed: [Arc<Pool>; Route::ALL.len()],
}

impl PoolTable {
    /// The configured pools, in configuration order.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.configured
    }
}

/// What an admin or reload change to the membership can fail with.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// No route leads to a pool of that name.
    #[error("no pool `{0}` (expected `api` or `chat`)")]
    NoPool(String),
    /// The pool has no instance with that id or address.
    #[error("pool `{pool}` has no instance `{id}`")]
    NoInstance { pool: String, id: String },
    /// The instance is in the pool already.
    #[error("instance `{0}` is in the pool already")]
    Exists(String),
    /// A bad URL, weight or limit.
    #[error("{0}")]
    Invalid(String),
}

/// The live membership: the current [`PoolTable`], swapped whole on change.
#[derive(Debug)]
pub struct Membership {
    table: Arc<ArcSwap<PoolTable>>,
    limits: Limits,
    metrics: Metrics,
    /// Serialises changes (admin, reload, DNS, the end of a removal) so none is lost between
    /// one's load and another's store. Never taken on the request path, never across an await.
    writer: Mutex<()>,
    /// The health tasks' parent, once [`Membership::start_health`] ran: instances added later
    /// get their task under it.
    health_stop: Mutex<Option<Shutdown>>,
}

impl Membership {
    /// Builds every configured pool with its settings (`gateway.api`, `gateway.chat`) and an
    /// empty pool for each route the configuration leaves out, so such requests get a 503, not
    /// a panic or a 404.
    ///
    /// # Errors
    /// [`GatewayError::Config`] listing every bad pool: a name no route leads to, a duplicate
    /// name, an instance URL that [`parse_instance_url`] rejects, or an instance listed twice.
    pub fn build(
        config: &GatewayConfig,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Result<Self, GatewayError> {
        let configured = Self::pools_of(config, limits, metrics, None)?;
        Ok(Self {
            table: Arc::new(ArcSwap::from_pointee(PoolTable::new(
                configured, config, metrics,
            ))),
            limits: limits.clone(),
            metrics: metrics.clone(),
            writer: Mutex::new(()),
            health_stop: Mutex::new(None),
        })
    }

    /// The configured pools of `config`; instances of `current` with the same address are
    /// kept (their counters, connections and WebSockets with them), with the weight and limit
    /// of the new URL.
    fn pools_of(
        config: &GatewayConfig,
        limits: &Limits,
        metrics: &Metrics,
        current: Option<&PoolTable>,
    ) -> Result<Vec<Arc<Pool>>, GatewayError> {
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        let mut configured = Vec::new();
        for (i, pool) in config.pools.iter().enumerate() {
            let key = format!("gateway.pools[{i}]");
            let Some(settings) = config.pool_settings(&pool.name) else {
                problems.push(format!(
                    "{key}: no route leads to pool `{}` (expected `api` or `chat`)",
                    pool.name
                ));
                continue;
            };
            if !names.insert(pool.name.as_str()) {
                problems.push(format!("{key}: pool `{}` is configured twice", pool.name));
                continue;
            }
            let policy = Arc::new(HealthPolicy::from_config(&settings.health));
            let old = current.and_then(|t| t.pool(&pool.name));
            let mut addresses = HashSet::new();
            let mut instances = Vec::new();
            for url in &pool.instances {
                let built = parse_instance_url(url).and_then(|parsed| {
                    let address = parsed.address();
                    if !addresses.insert(address.clone()) {
                        return Err(format!("instance `{url}` is listed twice"));
                    }
                    // Kept: the same address, or the addresses a name resolved to, unless on
                    // their way out already.
                    let kept: Vec<Arc<Instance>> = old
                        .map(|p| {
                            p.instances
                                .iter()
                                .filter(|i| {
                                    !i.is_removing()
                                        && (*i.address == *address
                                            || i.source_address().as_deref()
                                                == Some(address.as_str()))
                                })
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    if !kept.is_empty() {
                        return Ok(kept);
                    }
                    Instance::new(&pool.name, url, &parsed, limits, metrics, &policy, None)
                        .map(|i| vec![Arc::new(i)])
                });
                match built {
                    Ok(built) => instances.extend(built),
                    Err(message) => problems.push(format!("{key}: {message}")),
                }
            }
            configured.push((pool.name.as_str(), settings, policy, instances));
        }
        if !problems.is_empty() {
            return Err(GatewayError::Config { problems });
        }
        // Valid: only now touch kept instances (a failed reload changes nothing).
        let mut pools = Vec::new();
        for (name, settings, policy, instances) in configured {
            for instance in &instances {
                if let Some(url) = config
                    .pools
                    .iter()
                    .filter(|p| p.name == name)
                    .flat_map(|p| &p.instances)
                    .find(|u| {
                        parse_instance_url(u).is_ok_and(|p| {
                            p.address() == *instance.address
                                || instance.source_address() == Some(p.address())
                        })
                    })
                    && let Ok(parsed) = parse_instance_url(url)
                {
                    instance.weight.store(parsed.weight, Ordering::Relaxed);
                    instance
                        .max_in_flight
                        .store(parsed.max_in_flight, Ordering::Relaxed);
                    if parsed.address() == *instance.address {
                        *instance.url.lock().unwrap_or_else(PoisonError::into_inner) = url.clone();
                    }
                }
                if *instance.health.policy() != *policy {
                    instance.health.set_policy(Arc::clone(&policy));
                }
                // Listed again: an instance drained by the admin API serves again.
                instance.state.store(ACTIVE, Ordering::Relaxed);
            }
            pools.push(Arc::new(Pool::new(
                name, true, instances, settings, metrics,
            )));
        }
        Ok(pools)
    }

    /// The pool serving `path`. One atomic load of the current table and one `Arc` clone, so
    /// the request keeps a consistent pool even if the table is swapped meanwhile.
    pub fn route(&self, path: &str) -> Arc<Pool> {
        Arc::clone(&self.table.load().routed[Route::for_path(path).index()])
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<PoolTable> {
        self.table.load_full()
    }

    /// The limits instances are built with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Starts the health task of every instance; they stop when `shutdown` is cancelled or
    /// the returned value is dropped. Instances added later get theirs at once.
    pub fn start_health(&self, shutdown: &Shutdown) -> HealthTasks {
        let tasks = HealthTasks::new(shutdown);
        for pool in self.table.load().configured.iter() {
            for instance in &pool.instances {
                self.watch(tasks.stop(), pool.name(), instance);
            }
        }
        *self
            .health_stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tasks.stop().clone());
        tasks
    }

    /// Starts the health task of `instance` of pool `pool` under `stop`.
    fn watch(&self, stop: &Shutdown, pool: &str, instance: &Arc<Instance>) {
        let table = Arc::clone(&self.table);
        let name: Arc<str> = pool.into();
        let refresh = move || {
            if let Some(pool) = table.load().pool(&name) {
                pool.refresh();
            }
        };
        crate::health::spawn_watch(
            Arc::clone(instance),
            Arc::new(refresh),
            stop.clone(),
            instance.retired.clone(),
        );
    }

    /// Health tasks for the instances of `pools` that have none yet (new since the last
    /// table), when health checking runs.
    fn watch_new(&self, before: &PoolTable, pools: &[Arc<Pool>]) {
        let stop = self
            .health_stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(stop) = stop else { return };
        for pool in pools {
            for instance in &pool.instances {
                let known = before
                    .configured
                    .iter()
                    .any(|p| p.instances.iter().any(|i| Arc::ptr_eq(i, instance)));
                if !known {
                    self.watch(&stop, pool.name(), instance);
                }
            }
        }
    }

    /// Ready when every configured pool has at least one instance that is not draining.
    ///
    /// # Errors
    /// The names of the pools without instances.
    pub fn readiness(&self) -> Result<(), String> {
        let table = self.table.load();
        let empty: Vec<&str> = table
            .configured
            .iter()
            .filter(|p| p.instances.iter().all(|i| i.is_draining()))
            .map(|p| p.name())
            .collect();
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!("pools without instances: {}", empty.join(", ")))
        }
    }

    /// Closes the idle keep-alive connections of every instance.
    pub fn close_idle(&self) {
        for pool in self.table.load().configured.iter() {
            for instance in &pool.instances {
                instance.upstream.close_idle();
            }
        }
    }

    /// Applies a new configuration's pools: instances kept by address keep their state, new
    /// ones are added, missing ones drained and removed; pool settings (algorithm, hash key,
    /// health) are replaced.
    ///
    /// # Errors
    /// [`GatewayError::Config`] listing every bad pool; nothing changes then.
    pub fn reload(self: &Arc<Self>, config: &GatewayConfig) -> Result<(), GatewayError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.table.load_full();
        let mut pools = Self::pools_of(config, &self.limits, &self.metrics, Some(&before))?;
        let mut gone = Vec::new();
        for old in &before.configured {
            let new = pools.iter().position(|p| p.name == old.name);
            for instance in &old.instances {
                let kept = new
                    .is_some_and(|n| pools[n].instances.iter().any(|i| Arc::ptr_eq(i, instance)));
                if !kept {
                    gone.push((Arc::clone(&old.name), Arc::clone(instance)));
                }
            }
        }
        // Instances on their way out stay in their pool (shown, counted, drained) until they
        // are dropped.
        for (name, instance) in &gone {
            let index = match pools.iter().position(|p| p.name == *name) {
                Some(index) => index,
                None => {
                    let settings = config.pool_settings(name).cloned().unwrap_or_default();
                    pools.push(Arc::new(Pool::new(
                        name,
                        true,
                        Vec::new(),
                        &settings,
                        &self.metrics,
                    )));
                    pools.len() - 1
                }
            };
            let pool = &pools[index];
            let mut instances = pool.instances.clone();
            instances.push(Arc::clone(instance));
            pools[index] = Arc::new(Pool::new(
                name,
                true,
                instances,
                &pool.settings,
                &self.metrics,
            ));
        }
        self.watch_new(&before, &pools);
        self.table
            .store(Arc::new(PoolTable::new(pools, config, &self.metrics)));
        for (name, instance) in gone {
            // One removal task per instance: one removed earlier has its own already.
            if instance.state.swap(REMOVING, Ordering::Relaxed) != REMOVING {
                tracing::info!(pool = %name, instance = instance.address(), "instance left the configuration; draining");
                self.refresh(&name);
                self.finish_removal(name, instance);
            }
        }
        Ok(())
    }

    /// Adds an instance at `url` (`http://host:port`) to `pool`.
    ///
    /// # Errors
    /// [`MembershipError`]: an unknown pool, a bad URL, weight or limit, or an address in
    /// the pool already.
    pub fn add(
        self: &Arc<Self>,
        pool: &str,
        url: &str,
        weight: Option<u32>,
        max_in_flight: Option<u64>,
    ) -> Result<Arc<Instance>, MembershipError> {
        let mut parsed = parse_instance_url(url).map_err(MembershipError::Invalid)?;
        if let Some(weight) = weight {
            if !(1..=crate::config::MAX_WEIGHT).contains(&weight) {
                return Err(MembershipError::Invalid(format!(
                    "weight must be 1..={}",
                    crate::config::MAX_WEIGHT
                )));
            }
            parsed.weight = weight;
        }
        if let Some(limit) = max_in_flight {
            parsed.max_in_flight = limit;
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.table.load_full();
        let current = before
            .pool_or_route(pool)
            .ok_or_else(|| MembershipError::NoPool(pool.to_owned()))?;
        if current.find(&parsed.address()).is_some() {
            return Err(MembershipError::Exists(parsed.address()));
        }
        let policy = Arc::new(HealthPolicy::from_config(&current.settings.health));
        let instance = Arc::new(
            Instance::new(
                pool,
                url,
                &parsed,
                &self.limits,
                &self.metrics,
                &policy,
                None,
            )
            .map_err(MembershipError::Invalid)?,
        );
        let mut instances = current.instances.clone();
        instances.push(Arc::clone(&instance));
        self.replace_pool(&before, pool, instances, &current.settings.clone());
        tracing::info!(pool, instance = instance.address(), "instance added");
        Ok(instance)
    }

    /// Drains instance `id` (hex id or address) of `pool`: no new requests; its WebSockets
    /// close after the drain timeout. It stays in the table.
    ///
    /// # Errors
    /// [`MembershipError::NoPool`] or [`MembershipError::NoInstance`].
    pub fn drain(&self, pool: &str, id: &str) -> Result<Arc<Instance>, MembershipError> {
        let instance = self.lookup(pool, id)?;
        if instance
            .state
            .compare_exchange(ACTIVE, DRAINING, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(pool, instance = instance.address(), "instance draining");
            self.refresh(pool);
            self.close_tunnels_later(&instance);
        }
        Ok(instance)
    }

    /// Removes instance `id` of `pool`: drains it, then drops it from the table once nothing
    /// is in flight on it.
    ///
    /// # Errors
    /// [`MembershipError::NoPool`] or [`MembershipError::NoInstance`].
    pub fn remove(
        self: &Arc<Self>,
        pool: &str,
        id: &str,
    ) -> Result<Arc<Instance>, MembershipError> {
        let instance = self.lookup(pool, id)?;
        let before = instance.state.swap(REMOVING, Ordering::Relaxed);
        if before != REMOVING {
            tracing::info!(
                pool,
                instance = instance.address(),
                "instance removed; draining"
            );
            self.refresh(pool);
            self.finish_removal(pool.into(), Arc::clone(&instance));
        }
        Ok(instance)
    }

    /// Sets the weight of instance `id` of `pool` (1..=1000) and rebuilds the pool's balancer.
    ///
    /// # Errors
    /// As [`Membership::drain`], and [`MembershipError::Invalid`] for a weight out of range.
    pub fn set_weight(
        &self,
        pool: &str,
        id: &str,
        weight: u32,
    ) -> Result<Arc<Instance>, MembershipError> {
        if !(1..=crate::config::MAX_WEIGHT).contains(&weight) {
            return Err(MembershipError::Invalid(format!(
                "weight must be 1..={}",
                crate::config::MAX_WEIGHT
            )));
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.table.load_full();
        let current = before
            .pool(pool)
            .ok_or_else(|| MembershipError::NoPool(pool.to_owned()))?;
        let instance = Arc::clone(
            current
                .find(id)
                .ok_or_else(|| MembershipError::NoInstance {
                    pool: pool.to_owned(),
                    id: id.to_owned(),
                })?,
        );
        instance.weight.store(weight, Ordering::Relaxed);
        // Weighted schedules and rings are precomputed: rebuild the pool around the instances.
        self.replace_pool(
            &before,
            pool,
            current.instances.clone(),
            &current.settings.clone(),
        );
        Ok(instance)
    }

    /// Instance `id` (hex id or address) of configured pool `pool`.
    fn lookup(&self, pool: &str, id: &str) -> Result<Arc<Instance>, MembershipError> {
        let table = self.table.load();
        let current = table
            .pool(pool)
            .ok_or_else(|| MembershipError::NoPool(pool.to_owned()))?;
        current
            .find(id)
            .cloned()
            .ok_or_else(|| MembershipError::NoInstance {
                pool: pool.to_owned(),
                id: id.to_owned(),
            })
    }

    /// Rebuilds the balancer of `pool` for its instances' current state.
    fn refresh(&self, pool: &str) {
        if let Some(pool) = self.table.load().pool(pool) {
            pool.refresh();
        }
    }

    /// Swaps in a table where `pool` holds `instances`. The caller holds the writer lock.
    fn replace_pool(
        &self,
        before: &PoolTable,
        pool: &str,
        instances: Vec<Arc<Instance>>,
        settings: &PoolSettings,
    ) {
        let rebuilt = Arc::new(Pool::new(pool, true, instances, settings, &self.metrics));
        let mut configured: Vec<Arc<Pool>> = before
            .configured
            .iter()
            .filter(|p| *p.name != *pool)
            .cloned()
            .collect();
        let position = before
            .configured
            .iter()
            .position(|p| *p.name == *pool)
            .unwrap_or(configured.len());
        configured.insert(position.min(configured.len()), Arc::clone(&rebuilt));
        self.watch_new(before, std::slice::from_ref(&rebuilt));
        let routed = before.routed.clone().map(|p| {
            if *p.name == *pool {
                Arc::clone(&rebuilt)
            } else {
                p
            }
        });
        self.table.store(Arc::new(PoolTable { configured, routed }));
    }

    /// Closes the WebSockets of a draining `instance` once the drain timeout has passed.
    fn close_tunnels_later(&self, instance: &Arc<Instance>) {
        let instance = Arc::clone(instance);
        let timeout = self.limits.drain_timeout;
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(timeout) => {
                    if instance.is_draining() {
                        instance.tunnels.cancel();
                    }
                }
                () = instance.retired.cancelled() => {}
            }
        });
    }

    /// Waits until nothing is in flight on the removed `instance` (its WebSockets closed at
    /// the drain timeout; requests get the request timeout more), then drops it from `pool`.
    fn finish_removal(self: &Arc<Self>, pool: Arc<str>, instance: Arc<Instance>) {
        let membership = Arc::downgrade(self);
        let limits = self.limits.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let tunnels_deadline = started + limits.drain_timeout;
            let last_deadline = tunnels_deadline + limits.request_timeout;
            while instance.in_flight() > 0 {
                let now = tokio::time::Instant::now();
                if now >= last_deadline {
                    break;
                }
                if now >= tunnels_deadline {
                    instance.tunnels.cancel();
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
            instance.tunnels.cancel();
            let Some(membership) = membership.upgrade() else {
                return;
            };
            // Dropped only if still removing (a reload may have listed it again).
            if instance.is_removing() {
                membership.drop_instance(&pool, &instance);
            }
        });
    }

    /// Takes `instance` out of `pool`'s table entry.
    fn drop_instance(&self, pool: &str, instance: &Arc<Instance>) {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.table.load_full();
        if let Some(current) = before.pool(pool) {
            let instances: Vec<Arc<Instance>> = current
                .instances
                .iter()
                .filter(|i| !Arc::ptr_eq(i, instance))
                .cloned()
                .collect();
            if instances.len() != current.instances.len() {
                self.replace_pool(&before, pool, instances, &current.settings.clone());
            }
        }
        instance.retired.cancel();
        instance.upstream.close_idle();
        tracing::info!(pool, instance = instance.address(), "instance dropped");
    }

    /// The instances a host name in `pool` currently resolves to are `addresses`: adds the
    /// new ones (as `source` with the name replaced by the address), removes (drains) those
    /// gone. Returns how many were added and removed.
    pub(crate) fn resolved(
        self: &Arc<Self>,
        pool: &str,
        source: &str,
        addresses: &[std::net::SocketAddr],
    ) -> (usize, usize) {
        let Ok(parsed) = parse_instance_url(source) else {
            return (0, 0);
        };
        let mut gone = Vec::new();
        let mut added = 0;
        {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let before = self.table.load_full();
            let Some(current) = before.pool(pool) else {
                return (0, 0);
            };
            let mut instances = current.instances.clone();
            let policy = Arc::new(HealthPolicy::from_config(&current.settings.health));
            // The name itself, kept while it had not resolved: replaced by its addresses now.
            let name = parsed.address();
            for instance in &current.instances {
                if instance.source_address().as_deref() != Some(name.as_str())
                    || instance.is_removing()
                {
                    continue;
                }
                let still = addresses
                    .iter()
                    .any(|a| *instance.address == *address_of(*a));
                if !still {
                    instance.state.store(REMOVING, Ordering::Relaxed);
                    gone.push(Arc::clone(instance));
                }
            }
            for addr in addresses {
                let address = address_of(*addr);
                if instances
                    .iter()
                    .any(|i| *i.address == *address && !i.is_removing())
                {
                    continue;
                }
                let resolved = InstanceUrl {
                    host: match addr.ip() {
                        IpAddr::V4(ip) => ip.to_string(),
                        IpAddr::V6(ip) => format!("[{ip}]"),
                    },
                    port: addr.port(),
                    ..parsed.clone()
                };
                let url = format!("http://{address}");
                match Instance::new(
                    pool,
                    &url,
                    &resolved,
                    &self.limits,
                    &self.metrics,
                    &policy,
                    Some(source.to_owned()),
                ) {
                    Ok(instance) => {
                        instances.push(Arc::new(instance));
                        added += 1;
                    }
                    Err(message) => {
                        tracing::warn!(pool, source, %message, "resolved address unusable")
                    }
                }
            }
            if added > 0 || !gone.is_empty() {
                self.replace_pool(&before, pool, instances, &current.settings.clone());
            }
        }
        let removed = gone.len();
        for instance in gone {
            self.finish_removal(pool.into(), instance);
        }
        (added, removed)
    }
}

/// `ip:port` as instance addresses are written (IPv6 in brackets).
fn address_of(addr: std::net::SocketAddr) -> String {
    addr.to_string()
}

/// How often a removal checks whether the instance is idle.
const DRAIN_POLL: Duration = Duration::from_millis(20);

impl PoolTable {
    fn new(configured: Vec<Arc<Pool>>, config: &GatewayConfig, metrics: &Metrics) -> Self {
        let routed = Route::ALL.map(|route| {
            configured
                .iter()
                .find(|p| &*p.name == route.pool_name())
                .cloned()
                .unwrap_or_else(|| {
                    let settings = config
                        .pool_settings(route.pool_name())
                        .cloned()
                        .unwrap_or_default();
                    Arc::new(Pool::new(
                        route.pool_name(),
                        false,
                        Vec::new(),
                        &settings,
                        metrics,
                    ))
                })
        });
        Self { configured, routed }
    }

    /// The configured pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.configured.iter().find(|p| *p.name == *name)
    }

    /// The configured pool named `name`, or the empty pool of its route.
    fn pool_or_route(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pool(name)
            .or_else(|| self.routed.iter().find(|p| *p.name == *name))
    }
}

impl Pool {
    fn new(
        name: &str,
        configured: bool,
        instances: Vec<Arc<Instance>>,
        settings: &PoolSettings,
        metrics: &Metrics,
    ) -> Self {
        let weights: Vec<u32> = instances.iter().map(|i| i.weight()).collect();
        let ids: Vec<u64> = instances.iter().map(|i| i.id).collect();
        let snapshot = Snapshot {
            balance_factor: settings.balance_factor,
            ..Snapshot::uniform(&weights, &ids)
        };
        let everyone = balance::build(settings.algorithm, &snapshot);
        // Draining, down or ramping instances of a rebuilt pool keep their effective weight.
        let effective: Box<[u32]> = instances.iter().map(|i| i.effective_weight()).collect();
        let selector = Selector {
            balancer: balance::build(
                settings.algorithm,
                &Snapshot {
                    effective: &effective,
                    ..snapshot
                },
            ),
            effective,
        };
        Self {
            name: name.into(),
            configured,
            instances,
            algorithm: settings.algorithm,
            balance_factor: settings.balance_factor,
            keys: KeySource::new(
                settings.algorithm,
                &settings.hash_key,
                &settings.sticky_cookie,
            ),
            fail_open: settings.fail_open,
            pipeline_depth: settings.pipeline_depth.max(1),
            settings: settings.clone(),
            selector: ArcSwap::from_pointee(selector),
            everyone,
            rebuilding: Mutex::new(()),
            retry_budget: RetryBudget::new(),
            metrics: metrics.pool(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{HashKey, PoolConfig};
    use prometheus_client::registry::Registry;

    use super::*;

    fn config(pools: &[(&str, &[&str])]) -> GatewayConfig {
        GatewayConfig {
            pools: pools
                .iter()
                .map(|(name, urls)| PoolConfig {
                    name: (*name).to_owned(),
                    instances: urls.iter().map(|u| (*u).to_owned()).collect(),
                })
                .collect(),
            ..GatewayConfig::default()
        }
    }

    fn build(config: &GatewayConfig) -> Result<Membership, GatewayError> {
        let metrics = Metrics::register(&mut Registry::default());
        Membership::build(config, &Limits::from_config(config), &metrics)
    }

    fn eject(instance: &Instance) {
        for _ in 0..instance.health().policy().eject_after {
            instance.health().record_failure();
        }
    }

    #[test]
    fn chat_paths_go_to_chat_and_everything_else_to_api() {
        assert_eq!(Route::for_path("/api/v1/chat/ws"), Route::Chat);
        assert_eq!(
            Route::for_path("/api/v1/chat/rooms/1/messages"),
            Route::Chat
        );
        assert_eq!(Route::for_path("/api/v1/chat"), Route::Api);
        assert_eq!(Route::for_path("/api/v1/products"), Route::Api);
        assert_eq!(Route::for_path("/"), Route::Api);
        assert_eq!(Route::for_path("/docs"), Route::Api);
    }

    #[test]
    fn routes_resolve_to_configured_pools_or_an_empty_one() {
        let membership = build(&config(&[(
            "api",
            &["http://127.0.0.1:1", "http://127.0.0.1:2"],
        )]))
        .unwrap();
        let api = membership.route("/api/v1/products");
        assert_eq!(
            (api.name(), api.instances().len(), api.is_configured()),
            ("api", 2, true)
        );
        assert_eq!(api.instances()[1].address(), "127.0.0.1:2");
        let chat = membership.route("/api/v1/chat/ws");
        assert_eq!(
            (chat.name(), chat.instances().len(), chat.is_configured()),
            ("chat", 0, false)
        );
        assert!(matches!(
            chat.pick(None),
            Err(ProxyError::NoInstance { .. })
        ));
        assert_eq!(membership.snapshot().pools().len(), 1);
        assert!(membership.readiness().is_ok());
    }

    #[test]
    fn picks_and_retries_follow_the_balancer() {
        let membership = build(&config(&[(
            "api",
            &["http://a:1", "http://b:2", "http://c:3"],
        )]))
        .unwrap();
        let pool = membership.route("/");
        let picked: Vec<&str> = (0..4).map(|_| pool.pick(None).unwrap().address()).collect();
        assert_eq!(picked, ["a:1", "b:2", "c:3", "a:1"]);
        let last = &pool.instances()[2];
        assert_eq!(pool.next_after(last, None).unwrap().address(), "a:1");
    }

    #[test]
    fn pools_take_their_algorithm_weights_and_limits_from_the_config() {
        let mut config = config(&[
            (
                "api",
                &[
                    "http://a:1?weight=5",
                    "http://b:2",
                    "http://c:3?max_in_flight=9",
                ],
            ),
            ("chat", &["http://d:4"]),
        ]);
        config.api.algorithm = Algorithm::WeightedRoundRobin;
        let membership = build(&config).unwrap();
        let api = membership.route("/");
        assert_eq!(api.algorithm(), Algorithm::WeightedRoundRobin);
        let instances = api.instances();
        assert_eq!(
            instances.iter().map(|i| i.weight()).collect::<Vec<_>>(),
            [5, 1, 1]
        );
        assert_eq!(instances[2].max_in_flight(), 9);
        assert_eq!(instances[0].url(), "http://a:1?weight=5");
        assert_eq!(instances[0].address(), "a:1");
        assert_eq!(instances[0].id(), balance::hash::instance_id("a:1"));
        let names: String = (0..7)
            .map(|_| &api.pick(None).unwrap().address()[..1])
            .collect();
        assert_eq!(names, "aabacaa");
        let chat = membership.route("/api/v1/chat/ws");
        assert_eq!(chat.algorithm(), Algorithm::ConsistentHash);
    }

    #[tokio::test]
    async fn ejected_instances_are_skipped_before_and_after_the_rebuild() {
        let mut config = config(&[("api", &["http://a:1?weight=5", "http://b:2", "http://c:3"])]);
        config.api.algorithm = Algorithm::WeightedRoundRobin;
        let membership = build(&config).unwrap();
        let pool = membership.route("/");
        eject(&pool.instances()[0]);
        assert!(!pool.instances()[0].is_available());
        // Before the rebuild: the live check skips it.
        for _ in 0..20 {
            assert_ne!(pool.pick(None).unwrap().address(), "a:1");
        }
        // After: the schedule holds only b and c, alternating exactly.
        pool.refresh();
        let names: String = (0..6)
            .map(|_| &pool.pick(None).unwrap().address()[..1])
            .collect();
        assert_eq!(names, "bcbcbc");
        // A retry after b skips a.
        let b = &pool.instances()[1];
        assert_eq!(pool.next_after(b, None).unwrap().address(), "c:3");
    }

    #[test]
    fn an_instance_at_its_in_flight_limit_is_passed_over() {
        let membership = build(&config(&[(
            "api",
            &["http://a:1?max_in_flight=2", "http://b:2"],
        )]))
        .unwrap();
        let pool = membership.route("/");
        let a = &pool.instances()[0];
        a.metrics().in_flight.set(1);
        assert!(a.is_available());
        a.metrics().in_flight.set(2);
        assert!(!a.is_available());
        let picked: Vec<&str> = (0..4).map(|_| pool.pick(None).unwrap().address()).collect();
        assert_eq!(picked, ["b:2"; 4]);
        // b has no limit.
        pool.instances()[1].metrics().in_flight.set(1_000_000);
        assert!(pool.instances()[1].is_available());
    }

    #[tokio::test]
    async fn with_every_instance_out_a_pool_answers_no_healthy_instance_or_fails_open() {
        let urls: &[&str] = &["http://a:1", "http://b:2"];
        let membership = build(&config(&[("api", urls)])).unwrap();
        let pool = membership.route("/");
        pool.instances().iter().for_each(|i| eject(i));
        pool.refresh();
        assert!(matches!(
            pool.pick(None),
            Err(ProxyError::NoHealthyInstance { .. })
        ));
        assert!(pool.next_after(&pool.instances()[0], None).is_none());

        let mut open = config(&[("api", urls)]);
        open.api.fail_open = true;
        let membership = build(&open).unwrap();
        let pool = membership.route("/");
        pool.instances().iter().for_each(|i| eject(i));
        pool.refresh();
        let picked: Vec<&str> = (0..4).map(|_| pool.pick(None).unwrap().address()).collect();
        assert_eq!(picked, ["a:1", "b:2", "a:1", "b:2"]);
        assert_eq!(
            pool.next_after(&pool.instances()[0], None)
                .unwrap()
                .address(),
            "b:2"
        );
    }

    #[tokio::test]
    async fn sticky_pools_set_a_cookie_unless_the_request_named_the_serving_instance() {
        let mut config = config(&[("api", &["http://a:1", "http://b:2"])]);
        config.api.algorithm = Algorithm::Sticky;
        config.api.sticky_cookie = "pin".into();
        let membership = build(&config).unwrap();
        let pool = membership.route("/");
        let b = &pool.instances()[1];
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "cookie",
            HeaderValue::from_str(&format!("pin={}", key::format_id(b.id()))).unwrap(),
        );
        let affinity = pool.affinity(&headers, &Uri::from_static("/"), ip);
        assert_eq!(affinity, Some(b.id()));
        assert_eq!(pool.pick(affinity).unwrap().address(), "b:2");
        assert_eq!(pool.sticky_cookie(affinity, b), None);
        let a = &pool.instances()[0];
        let set = pool.sticky_cookie(affinity, a).unwrap();
        assert!(
            set.to_str()
                .unwrap()
                .starts_with(&format!("pin={:016x};", a.id()))
        );
        assert!(pool.sticky_cookie(None, a).is_some());
    }

    #[test]
    fn hash_keys_are_read_only_by_hashing_pools() {
        let mut config = config(&[("api", &["http://a:1"]), ("chat", &["http://c:1"])]);
        config.chat.hash_key = HashKey::Header("x-room".into());
        let membership = build(&config).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-room", HeaderValue::from_static("9"));
        let uri = Uri::from_static("/");
        assert_eq!(membership.route("/").affinity(&headers, &uri, ip), None);
        assert_eq!(
            membership
                .route("/api/v1/chat/ws")
                .affinity(&headers, &uri, ip),
            Some(balance::hash::hash_bytes(b"9"))
        );
    }

    #[test]
    fn a_configured_pool_without_instances_is_not_ready() {
        let membership = build(&config(&[("api", &["http://a:1"]), ("chat", &[])])).unwrap();
        assert!(membership.readiness().unwrap_err().contains("chat"));
    }

    #[test]
    fn every_bad_pool_is_reported() {
        let err = build(&config(&[
            ("db", &["http://a:1"]),
            (
                "api",
                &[
                    "https://a:1",
                    "http://b:2",
                    "http://b:2?weight=2",
                    "http://c:3?weight=0",
                ],
            ),
            ("api", &["http://c:3"]),
        ]))
        .unwrap_err();
        let GatewayError::Config { problems } = err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("`db`"));
        assert!(problems[1].contains("https://a:1"));
        assert!(problems[2].contains("twice"));
        assert!(problems[3].contains("weight"));
        assert!(problems[4].contains("configured twice"));
    }
}
