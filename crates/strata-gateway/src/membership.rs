//! Pools and their instances, and which pool a request path goes to.
//!
//! The table of pools sits behind an [`ArcSwap`]: a request loads the current snapshot with
//! one atomic read and no lock, and a change (instances added, drained, removed: later issues)
//! builds a new table off the request path and swaps it in. Instances are `Arc`s shared between
//! snapshots, so their counters, gauges and idle connections survive a rebuild.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use strata_core::config::{GatewayConfig, parse_instance_url};

use crate::balance::{Algorithm, Balancer, Load, PickContext};
use crate::error::GatewayError;
use crate::limits::Limits;
use crate::metrics::{InstanceMetrics, Metrics, PoolMetrics};
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

/// One instance of a pool: its address, its connections and its figures.
#[derive(Debug)]
pub struct Instance {
    url: String,
    address: Arc<str>,
    upstream: Upstream,
    metrics: InstanceMetrics,
    served: AtomicU64,
}

impl Instance {
    /// `host:port` as configured: the `instance` label and the admin API's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The configured base URL, `http://host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests being served by this instance now, response bodies included.
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.metrics.in_flight.get()).unwrap_or(0)
    }

    /// Responses this instance produced so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
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

/// A pool: interchangeable instances and the algorithm that spreads requests over them.
#[derive(Debug)]
pub struct Pool {
    name: Arc<str>,
    configured: bool,
    instances: Vec<Arc<Instance>>,
    balancer: Box<dyn Balancer>,
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
        self.balancer.algorithm()
    }

    /// The instance for the next request, `None` when the pool is empty.
    pub fn pick(&self) -> Option<&Arc<Instance>> {
        let index = self.balancer.pick(&self.pick_context())?;
        self.instances.get(index)
    }

    /// The instance to retry on after `failed` could not serve a request.
    pub fn next_after(&self, failed: &Instance) -> Option<&Arc<Instance>> {
        let index = self
            .instances
            .iter()
            .position(|i| std::ptr::eq(&**i, failed))?;
        let next = self.balancer.next_after(index, &self.pick_context())?;
        self.instances.get(next)
    }

    pub(crate) fn metrics(&self) -> &PoolMetrics {
        &self.metrics
    }

    fn pick_context(&self) -> PickContext<'_> {
        PickContext {
            len: self.instances.len(),
            key: None,
            load: self,
        }
    }
}

impl Load for Pool {
    fn in_flight(&self, index: usize) -> u64 {
        self.instances.get(index).map_or(0, |i| i.in_flight())
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
    /// Builds every configured pool (round robin) and an empty pool for each route the
    /// configuration leaves out, so such requests get a 503, not a panic or a 404.
    ///
    /// # Errors
    /// [`GatewayError::Config`] listing every bad pool: a name no route leads to, a duplicate
    /// name, an instance URL that is not `http://host:port`, or an instance listed twice.
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
            if !Route::ALL.iter().any(|r| r.pool_name() == pool.name) {
                problems.push(format!(
                    "{key}: no route leads to pool `{}` (expected `api` or `chat`)",
                    pool.name
                ));
                continue;
            }
            if !names.insert(pool.name.as_str()) {
                problems.push(format!("{key}: pool `{}` is configured twice", pool.name));
                continue;
            }
            let mut addresses = HashSet::new();
            let mut instances = Vec::new();
            for url in &pool.instances {
                let built = parse_instance_url(url).and_then(|(host, port)| {
                    let address = format!("{host}:{port}");
                    if !addresses.insert(address.clone()) {
                        return Err(format!("instance `{url}` is listed twice"));
                    }
                    let upstream = Upstream::new(&host, port, limits)?;
                    Ok(Instance {
                        url: url.clone(),
                        metrics: metrics.instance(&pool.name, &address),
                        address: address.into(),
                        upstream,
                        served: AtomicU64::new(0),
                    })
                });
                match built {
                    Ok(instance) => instances.push(Arc::new(instance)),
                    Err(message) => problems.push(format!("{key}: {message}")),
                }
            }
            configured.push(Arc::new(Pool::new(&pool.name, true, instances, metrics)));
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
                    Arc::new(Pool::new(route.pool_name(), false, Vec::new(), metrics))
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
    fn new(name: &str, configured: bool, instances: Vec<Arc<Instance>>, metrics: &Metrics) -> Self {
        Self {
            name: name.into(),
            configured,
            instances,
            balancer: Algorithm::RoundRobin.balancer(),
            metrics: metrics.pool(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;
    use strata_core::config::PoolConfig;

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
        assert!(chat.pick().is_none());
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
        let picked: Vec<&str> = (0..4).map(|_| pool.pick().unwrap().address()).collect();
        assert_eq!(picked, ["a:1", "b:2", "c:3", "a:1"]);
        let last = &pool.instances()[2];
        assert_eq!(pool.next_after(last).unwrap().address(), "a:1");
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
            ("api", &["https://a:1", "http://b:2", "http://b:2"]),
            ("api", &["http://c:3"]),
        ]))
        .unwrap_err();
        let GatewayError::Config { problems } = err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("`db`"));
        assert!(problems[1].contains("https://a:1"));
        assert!(problems[2].contains("twice"));
        assert!(problems[3].contains("configured twice"));
    }
}
