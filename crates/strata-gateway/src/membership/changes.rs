//! Changes to the membership, each building a new table off the request path and swapping it
//! in: a configuration reload, and the admin API's add, drain, remove and weight changes; a
//! removed instance drains, then leaves the table.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::config::{GatewayConfig, PoolSettings, parse_instance_url};

use super::instance::{ACTIVE, DRAINING, REMOVING};
use super::{Instance, Membership, Pool, PoolTable};
use crate::error::GatewayError;
use crate::health::HealthPolicy;

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

impl Membership {
    /// Applies a new configuration's pools and routing rules: instances kept by address keep
    /// their state, new ones are added, missing ones drained and removed; pool settings
    /// (algorithm, hash key, health, compression) and the rules are replaced.
    ///
    /// # Errors
    /// [`GatewayError::Config`] listing every bad pool; nothing changes then.
    pub fn reload(self: &Arc<Self>, config: &GatewayConfig) -> Result<(), GatewayError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.table.load_full();
        let (mut pools, router) = super::both(
            Self::pools_of(config, &self.limits, &self.metrics, Some(&before)),
            super::Router::compile(&config.routes),
        )?;
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
        self.table.store(Arc::new(PoolTable::new(
            pools,
            Arc::new(router),
            config,
            &self.metrics,
        )));
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
            // No new request goes there: idle connections close now, h2c ones with `GOAWAY`
            // once their streams have ended.
            instance.upstream.close_idle();
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
    ///
    /// # Errors
    /// [`MembershipError::NoPool`] or [`MembershipError::NoInstance`].
    pub fn lookup(&self, pool: &str, id: &str) -> Result<Arc<Instance>, MembershipError> {
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
    pub(super) fn replace_pool(
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
        self.table.store(Arc::new(PoolTable {
            configured,
            routed,
            router: Arc::clone(&before.router),
        }));
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
    pub(super) fn finish_removal(self: &Arc<Self>, pool: Arc<str>, instance: Arc<Instance>) {
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
        // Its series leave `/metrics` with it, unless an instance of the same address joined
        // meanwhile and counts into them.
        let rejoined = self.table.load().pool(pool).is_some_and(|current| {
            current
                .instances
                .iter()
                .any(|i| i.address() == instance.address())
        });
        if !rejoined {
            self.metrics
                .forget_instance(pool, instance.address(), instance.metrics());
        }
        tracing::info!(pool, instance = instance.address(), "instance dropped");
    }
}

/// How often a removal checks whether the instance is idle.
const DRAIN_POLL: Duration = Duration::from_millis(20);
