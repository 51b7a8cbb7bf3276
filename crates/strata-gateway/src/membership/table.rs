//! One consistent view of every pool ([`PoolTable`]), and how a configuration's pools become
//! one: instances kept across a reload by address, new ones built, every problem reported.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use crate::config::{GatewayConfig, parse_instance_url};

use super::instance::ACTIVE;
use super::route::Router;
use super::{Destination, Instance, Membership, Pool};
use crate::error::GatewayError;
use crate::health::HealthPolicy;
use crate::limits::Limits;
use crate::metrics::Metrics;

/// One consistent view of every pool.
#[derive(Debug)]
pub struct PoolTable {
    /// Configured pools, in configuration order.
    pub(super) configured: Vec<Arc<Pool>>,
    /// The pool of each destination, in the order of [`Destination::ALL`]; an empty pool when
    /// not configured.
    pub(super) routed: [Arc<Pool>; Destination::ALL.len()],
    /// The routing rules (`gateway.routes`), shared by the tables of one configuration.
    pub(super) router: Arc<Router>,
}

impl PoolTable {
    /// The configured pools, in configuration order.
    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.configured
    }

    /// A table of the `configured` pools, with an empty pool for each destination `config`
    /// leaves out, routed by `router`.
    pub(super) fn new(
        configured: Vec<Arc<Pool>>,
        router: Arc<Router>,
        config: &GatewayConfig,
        metrics: &Metrics,
    ) -> Self {
        let routed = Destination::ALL.map(|route| {
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
        Self {
            configured,
            routed,
            router,
        }
    }

    /// The configured pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Arc<Pool>> {
        self.configured.iter().find(|p| *p.name == *name)
    }

    /// The configured pool named `name`, or the empty pool of its destination.
    pub(super) fn pool_or_route(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pool(name)
            .or_else(|| self.routed.iter().find(|p| *p.name == *name))
    }
}

impl Membership {
    /// The configured pools of `config`; instances of `current` with the same address are
    /// kept (their counters, connections and WebSockets with them), with the weight and limit
    /// of the new URL.
    pub(super) fn pools_of(
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
                    "{key}: no pool `{}` (expected `api` or `chat`)",
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
}
