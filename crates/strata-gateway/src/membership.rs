//! Pools and their instances, and which pool a request path goes to.
//!
//! The table of pools sits behind an [`ArcSwap`]: a request loads the current snapshot with
//! one atomic read and no lock, and a change (instances added, drained, removed: later issues)
//! builds a new table off the request path and swaps it in. Instances are `Arc`s shared between
//! snapshots, so their counters, gauges, health and idle connections survive a rebuild.
//!
//! Each pool also keeps its balancer behind an `ArcSwap`, rebuilt by the instances' health
//! tasks when health or slow-start weights change ([`Pool::refresh`]); a pick loads it without
//! locking and reads the instances' live state through [`Live`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Uri};
use strata_core::Shutdown;
use strata_core::config::{GatewayConfig, PoolSettings, parse_instance_url};

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

/// One instance of a pool: its address, its connections, its health and its figures.
#[derive(Debug)]
pub struct Instance {
    url: String,
    address: Arc<str>,
    pub(crate) host: String,
    pub(crate) port: u16,
    id: u64,
    weight: u32,
    max_in_flight: u64,
    upstream: Upstream,
    health: InstanceHealth,
    metrics: InstanceMetrics,
    served: AtomicU64,
}

impl Instance {
    /// `host:port` as configured: the `instance` label and the admin API's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The configured URL, `http://host:port` and its settings, if any.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The instance's stable id: a hash of its address, the same on every gateway (sticky
    /// cookies, ring positions).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The configured weight (1..=1000).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The weight balancers use now: 0 while down or ejected, ramping during slow start.
    pub fn effective_weight(&self) -> u32 {
        self.health.effective_weight(self.weight)
    }

    /// In-flight requests above which the instance is passed over; 0: no limit.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight
    }

    /// Requests being served by this instance now, response bodies included.
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

    /// Whether the instance may take a request now: up, not ejected, under its limit.
    pub fn is_available(&self) -> bool {
        self.health.is_up() && (self.max_in_flight == 0 || self.in_flight() < self.max_in_flight)
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
        self.instances.iter().map(|i| (i.weight, i.id)).unzip()
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
        index < self.0.instances.len()
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

/// The live membership: the current [`PoolTable`], swapped whole on change.
#[derive(Debug)]
pub struct Membership {
    table: ArcSwap<PoolTable>,
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
            let mut addresses = HashSet::new();
            let mut instances = Vec::new();
            for url in &pool.instances {
                let built = parse_instance_url(url).and_then(|parsed| {
                    let address = parsed.address();
                    if !addresses.insert(address.clone()) {
                        return Err(format!("instance `{url}` is listed twice"));
                    }
                    let upstream = Upstream::new(&parsed.host, parsed.port, limits)?;
                    let metrics = metrics.instance(&pool.name, &address);
                    let health = InstanceHealth::new(
                        Arc::clone(&policy),
                        metrics.health.clone(),
                        &format!("{}/{address}", pool.name),
                    );
                    Ok(Instance {
                        url: url.clone(),
                        id: balance::hash::instance_id(&address),
                        address: address.into(),
                        host: parsed.host,
                        port: parsed.port,
                        weight: parsed.weight,
                        max_in_flight: parsed.max_in_flight,
                        upstream,
                        health,
                        metrics,
                        served: AtomicU64::new(0),
                    })
                });
                match built {
                    Ok(instance) => instances.push(Arc::new(instance)),
                    Err(message) => problems.push(format!("{key}: {message}")),
                }
            }
            configured.push(Arc::new(Pool::new(
                &pool.name, true, instances, settings, metrics,
            )));
        }
        if !problems.is_empty() {
            return Err(GatewayError::Config { problems });
        }
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
        Ok(Self {
            table: ArcSwap::from_pointee(PoolTable { configured, routed }),
        })
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

    /// Starts the health task of every instance; they stop when `shutdown` is cancelled or
    /// the returned value is dropped.
    pub fn start_health(&self, shutdown: &Shutdown) -> HealthTasks {
        HealthTasks::start(self.table.load().configured.iter(), shutdown)
    }

    /// Ready when every configured pool has at least one instance.
    ///
    /// # Errors
    /// The names of the pools without instances.
    pub fn readiness(&self) -> Result<(), String> {
        let table = self.table.load();
        let empty: Vec<&str> = table
            .configured
            .iter()
            .filter(|p| p.instances.is_empty())
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
}

impl Pool {
    fn new(
        name: &str,
        configured: bool,
        instances: Vec<Arc<Instance>>,
        settings: &PoolSettings,
        metrics: &Metrics,
    ) -> Self {
        let weights: Vec<u32> = instances.iter().map(|i| i.weight).collect();
        let ids: Vec<u64> = instances.iter().map(|i| i.id).collect();
        let snapshot = Snapshot {
            balance_factor: settings.balance_factor,
            ..Snapshot::uniform(&weights, &ids)
        };
        let everyone = balance::build(settings.algorithm, &snapshot);
        let selector = Selector {
            effective: weights.clone().into_boxed_slice(),
            balancer: balance::build(settings.algorithm, &snapshot),
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
    use prometheus_client::registry::Registry;
    use strata_core::config::{HashKey, PoolConfig};

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
