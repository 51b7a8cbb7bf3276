//! A pool: its instances, its settings, and the balancer that picks among them, kept behind an
//! [`ArcSwap`] and rebuilt off the request path when the instances' health or weights change
//! ([`Pool::refresh`]); a pick loads it without locking and reads the instances' live state
//! through [`Live`].

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::{PoolSettings, UpstreamProtocol};
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Uri};

use super::Instance;
use crate::balance::key::{self, KeySource};
use crate::balance::{self, Algorithm, Balancer, Live, PickContext, Snapshot};
use crate::error::ProxyError;
use crate::metrics::{Metrics, PoolMetrics};
use crate::proxy::Compression;
use crate::retry_budget::RetryBudget;

/// A pool's balancer for one health snapshot, with the effective weights it was built from.
#[derive(Debug)]
struct Selector {
    effective: Box<[u32]>,
    balancer: Box<dyn Balancer>,
}

/// A pool: interchangeable instances and the algorithm that spreads requests over them.
#[derive(Debug)]
pub struct Pool {
    pub(super) name: Arc<str>,
    configured: bool,
    pub(super) instances: Vec<Arc<Instance>>,
    algorithm: Algorithm,
    balance_factor: f64,
    keys: KeySource,
    fail_open: bool,
    /// Most requests one batch to an instance carries ([`PoolSettings::pipeline_depth`]).
    pipeline_depth: usize,
    /// How requests reach the instances ([`PoolSettings::upstream_protocol`]).
    upstream_protocol: UpstreamProtocol,
    /// How responses are compressed ([`PoolSettings::compression`]).
    compression: Compression,
    /// The settings the pool was built with, for rebuilds.
    pub(super) settings: PoolSettings,
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

    /// How requests reach the pool's instances.
    pub fn upstream_protocol(&self) -> UpstreamProtocol {
        self.upstream_protocol
    }

    /// How the pool's responses are compressed.
    pub fn compression(&self) -> &Compression {
        &self.compression
    }

    /// Whether `path` is one of the instances' operational endpoints
    /// ([`PoolSettings::internal_paths`]), which the public listener does not forward. The
    /// path is compared in the forms an instance's router may read it: percent-escapes
    /// decoded, `.` and `..` segments resolved, repeated slashes merged.
    pub fn is_internal(&self, path: &str) -> bool {
        let prefixes = &self.settings.internal_paths;
        if prefixes.is_empty() {
            return false;
        }
        let decoded = normalized(&percent_decoded(path));
        prefixes.iter().any(|prefix| {
            let prefix = prefix.trim_end_matches('/').as_bytes();
            decoded
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
        })
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

/// `path` with its `.` and `..` segments resolved and empty segments dropped (`/a//./b/../c`
/// is `/a/c`).
fn normalized(path: &[u8]) -> Vec<u8> {
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for segment in segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `path` with its `%XX` escapes decoded (a malformed escape is kept as it is). Borrowed when
/// there is none, the usual case.
fn percent_decoded(path: &str) -> std::borrow::Cow<'_, [u8]> {
    let bytes = path.as_bytes();
    if !bytes.contains(&b'%') {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((high, low)) => {
                // Two hex digits: at most 255.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'%'));
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A pool's live state with every instance available: the last resort of `fail_open`.
struct IgnoringHealth<'a>(&'a Pool);

impl Live for IgnoringHealth<'_> {
    fn in_flight(&self, index: usize) -> u64 {
        self.0.in_flight(index)
    }

    fn is_available(&self, index: usize) -> bool {
        // Health is ignored; draining is not (a drained instance may be going away), nor the
        // in-flight limit (it protects an instance that is serving).
        self.0.instances.get(index).is_some_and(|i| {
            let limit = i.max_in_flight();
            !i.is_draining() && (limit == 0 || i.in_flight() < limit)
        })
    }
}

impl Pool {
    pub(super) fn new(
        name: &str,
        configured: bool,
        instances: Vec<Arc<Instance>>,
        settings: &PoolSettings,
        metrics: &Metrics,
    ) -> Self {
        let weights: Vec<u32> = instances.iter().map(|i| i.weight()).collect();
        let ids: Vec<u64> = instances.iter().map(|i| i.id).collect();
        for instance in &instances {
            // Health checks speak the pool's protocol.
            instance.upstream().set_protocol(settings.upstream_protocol);
        }
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
            upstream_protocol: settings.upstream_protocol,
            compression: Compression::new(&settings.compression),
            settings: settings.clone(),
            selector: ArcSwap::from_pointee(selector),
            everyone,
            rebuilding: Mutex::new(()),
            retry_budget: RetryBudget::new(),
            metrics: metrics.pool(name),
        }
    }
}
