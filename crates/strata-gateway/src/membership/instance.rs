//! One instance of a pool: its address and settings, its connections ([`Upstream`]), its
//! health, its figures, and where it is in its life (active, draining, on its way out).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{InstanceUrl, parse_instance_url};
use strata_core::Shutdown;

use crate::balance;
use crate::health::{HealthPolicy, InstanceHealth};
use crate::limits::Limits;
use crate::metrics::{InstanceMetrics, Metrics};
use crate::upstream::Upstream;

/// `Instance::state`: takes requests.
pub(super) const ACTIVE: u8 = 0;
/// `Instance::state`: draining; stays in the table.
pub(super) const DRAINING: u8 = 1;
/// `Instance::state`: draining, then dropped from the table.
pub(super) const REMOVING: u8 = 2;

/// One instance of a pool: its address, its connections, its health and its figures.
#[derive(Debug)]
pub struct Instance {
    pub(super) url: Mutex<String>,
    pub(super) address: Arc<str>,
    pub(super) host: String,
    pub(super) id: u64,
    pub(super) weight: AtomicU32,
    pub(super) max_in_flight: AtomicU64,
    pub(super) upstream: Upstream,
    pub(super) health: InstanceHealth,
    metrics: InstanceMetrics,
    served: AtomicU64,
    /// `ACTIVE`, `DRAINING` or `REMOVING`.
    pub(super) state: AtomicU8,
    /// Cancelled when the instance's WebSockets must close (drain deadline).
    pub(super) tunnels: Shutdown,
    /// Cancelled when the instance leaves the table: stops its health task.
    pub(super) retired: Shutdown,
    /// The configured URL this instance came from when a host name was resolved to it (DNS).
    source: Option<String>,
}

impl Instance {
    /// A new instance of `pool` at `parsed` (from `url`), up, with no connection yet.
    pub(super) fn new(
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
    pub(super) fn source_address(&self) -> Option<String> {
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
