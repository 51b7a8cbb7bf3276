//! Pools and their instances, and which pool a request goes to. One file per concern:
//! `route` (the routing rules: request → pool), `instance`, `pool` (a pool and its balancer), `table` (the table of
//! pools, and how a configuration becomes one), `changes` (reload and the admin API's changes)
//! and [`dns`] (instances a host name resolves to).
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
//! tasks when health or slow-start weights change ([`Pool::refresh`]).

mod changes;
pub mod dns;
mod instance;
mod pool;
mod route;
mod table;

use std::sync::{Arc, Mutex, PoisonError};

use crate::config::GatewayConfig;
use arc_swap::ArcSwap;
use http::request::Parts;
use strata_core::Shutdown;

pub use changes::MembershipError;
pub use instance::Instance;
pub use pool::Pool;
pub use route::{Actions, Destination, Router};
pub use table::PoolTable;

use crate::error::GatewayError;
use crate::health::HealthTasks;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// Where a request goes ([`Membership::route`]).
#[derive(Debug)]
pub struct Routed {
    /// The pool that serves it.
    pub pool: Arc<Pool>,
    /// What its rule changes on the way; `None` when nothing (the default rules).
    pub actions: Option<Arc<Actions>>,
}

/// Both results, or every problem of either.
fn both<A, B>(
    pools: Result<A, GatewayError>,
    routes: Result<B, Vec<String>>,
) -> Result<(A, B), GatewayError> {
    match (pools, routes) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(GatewayError::Config { mut problems }), Err(more)) => {
            problems.extend(more);
            Err(GatewayError::Config { problems })
        }
        (Err(error), _) => Err(error),
        (Ok(_), Err(problems)) => Err(GatewayError::Config { problems }),
    }
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
    /// empty pool for each one the configuration leaves out, so requests routed there get a
    /// 503, not a panic or a 404; and the routing rules (`gateway.routes`).
    ///
    /// # Errors
    /// [`GatewayError::Config`] listing every bad pool and rule: an unknown or duplicate pool
    /// name, an instance URL that [`parse_instance_url`](crate::config::parse_instance_url)
    /// rejects, an instance listed twice, a rule [`Router::compile`] refuses.
    pub fn build(
        config: &GatewayConfig,
        limits: &Limits,
        metrics: &Metrics,
    ) -> Result<Self, GatewayError> {
        let (configured, router) = both(
            Self::pools_of(config, limits, metrics, None),
            Router::compile(&config.routes),
        )?;
        Ok(Self {
            table: Arc::new(ArcSwap::from_pointee(PoolTable::new(
                configured,
                Arc::new(router),
                config,
                metrics,
            ))),
            limits: limits.clone(),
            metrics: metrics.clone(),
            writer: Mutex::new(()),
            health_stop: Mutex::new(None),
        })
    }

    /// Where the request of `head` goes: the first routing rule that matches it names the
    /// pool; `None` when no rule does. One atomic load of the current table and one `Arc`
    /// clone (two when the rule changes the request or response), so the request keeps a
    /// consistent pool even if the table is swapped meanwhile.
    pub fn route(&self, head: &Parts) -> Option<Routed> {
        let table = self.table.load();
        let matched = table.router.pick(head)?;
        Some(Routed {
            pool: Arc::clone(&table.routed[matched.destination.index()]),
            actions: matched.actions.cloned(),
        })
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
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::config::{HashKey, PoolConfig};
    use http::{HeaderMap, HeaderValue, Uri};
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::balance::{self, Algorithm, key};
    use crate::error::ProxyError;

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

    /// The pool a GET of `path` goes to.
    fn route_path(membership: &Membership, path: &str) -> Arc<Pool> {
        let (head, ()) = http::Request::get(path)
            .header("host", "shop.example")
            .body(())
            .unwrap()
            .into_parts();
        membership.route(&head).unwrap().pool
    }

    fn eject(instance: &Instance) {
        for _ in 0..instance.health().policy().eject_after {
            instance.health().record_failure();
        }
    }

    #[test]
    fn routes_resolve_to_configured_pools_or_an_empty_one() {
        let membership = build(&config(&[(
            "api",
            &["http://127.0.0.1:1", "http://127.0.0.1:2"],
        )]))
        .unwrap();
        let api = route_path(&membership, "/api/v1/products");
        assert_eq!(
            (api.name(), api.instances().len(), api.is_configured()),
            ("api", 2, true)
        );
        assert_eq!(api.instances()[1].address(), "127.0.0.1:2");
        let chat = route_path(&membership, "/api/v1/chat/ws");
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
        let pool = route_path(&membership, "/");
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
        let api = route_path(&membership, "/");
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
        let chat = route_path(&membership, "/api/v1/chat/ws");
        assert_eq!(chat.algorithm(), Algorithm::ConsistentHash);
    }

    #[tokio::test]
    async fn ejected_instances_are_skipped_before_and_after_the_rebuild() {
        let mut config = config(&[("api", &["http://a:1?weight=5", "http://b:2", "http://c:3"])]);
        config.api.algorithm = Algorithm::WeightedRoundRobin;
        let membership = build(&config).unwrap();
        let pool = route_path(&membership, "/");
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
        let pool = route_path(&membership, "/");
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
        let urls: &[&str] = &["http://a:1?max_in_flight=2", "http://b:2"];
        let mut closed = config(&[("api", urls)]);
        closed.api.fail_open = false;
        let membership = build(&closed).unwrap();
        let pool = route_path(&membership, "/");
        pool.instances().iter().for_each(|i| eject(i));
        pool.refresh();
        assert!(matches!(
            pool.pick(None),
            Err(ProxyError::NoHealthyInstance { .. })
        ));
        assert!(pool.next_after(&pool.instances()[0], None).is_none());

        // Open by default: health is ignored, but not an instance's in-flight limit.
        let membership = build(&config(&[("api", urls)])).unwrap();
        let pool = route_path(&membership, "/");
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
        pool.instances()[0].metrics().in_flight.set(2);
        let picked: Vec<&str> = (0..4).map(|_| pool.pick(None).unwrap().address()).collect();
        assert_eq!(picked, ["b:2"; 4], "a is at its limit");
    }

    #[tokio::test]
    async fn sticky_pools_set_a_cookie_unless_the_request_named_the_serving_instance() {
        let mut config = config(&[("api", &["http://a:1", "http://b:2"])]);
        config.api.algorithm = Algorithm::Sticky;
        config.api.sticky_cookie = "pin".into();
        let membership = build(&config).unwrap();
        let pool = route_path(&membership, "/");
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
        assert_eq!(
            route_path(&membership, "/").affinity(&headers, &uri, ip),
            None
        );
        assert_eq!(
            route_path(&membership, "/api/v1/chat/ws").affinity(&headers, &uri, ip),
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
