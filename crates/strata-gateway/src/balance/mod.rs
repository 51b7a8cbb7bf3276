//! Load-balancing algorithms: given a pool's instances, choose the one for the next request.
//!
//! Algorithms are pure and synchronous. They see instances only as indices plus the figures in
//! [`PickContext`], never sockets or addresses, so each one is tested in isolation (evenness,
//! weights, movement under membership change) and the proxy can swap them per pool. A balancer is
//! built for one membership snapshot and rebuilt when the pool changes, off the request path.

mod round_robin;

use std::fmt;

pub use round_robin::RoundRobin;

/// What an algorithm may look at for one pick. Round robin only needs `len`; the fields for
/// load-aware and hashing algorithms are here so adding one does not change the trait.
#[derive(Clone, Copy)]
pub struct PickContext<'a> {
    /// Number of instances in the pool; a pick returns an index in `0..len`.
    pub len: usize,
    /// Affinity key (from a cookie, header, query parameter or the client IP) for hashing
    /// algorithms; `None` when the route has none.
    pub key: Option<u64>,
    /// Current load of each instance, for least-connections and power-of-two choices.
    pub load: &'a dyn Load,
}

impl fmt::Debug for PickContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PickContext")
            .field("len", &self.len)
            .field("key", &self.key)
            .finish()
    }
}

/// Live figures of the instances of a pool, read by load-aware algorithms.
pub trait Load {
    /// Requests in flight on instance `index`.
    fn in_flight(&self, index: usize) -> u64;
}

/// No load information (unit tests, algorithms that ignore load).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLoad;

impl Load for NoLoad {
    fn in_flight(&self, _index: usize) -> u64 {
        0
    }
}

/// A load-balancing algorithm for one pool snapshot.
///
/// Implementations are shared by every request of the pool, so state they keep (a counter, a
/// ring) must be atomic or immutable: `pick` runs on the hot path and must not lock.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// The algorithm's name as configured and shown by the admin API (`round_robin`).
    fn algorithm(&self) -> Algorithm;

    /// The instance for the next request, or `None` when the pool is empty.
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize>;

    /// The instance to retry on after `failed` could not be reached. Default: the next index in
    /// order, so a retry never lands on the instance that just failed when there is another one.
    fn next_after(&self, failed: usize, cx: &PickContext<'_>) -> Option<usize> {
        (cx.len > 0).then(|| (failed + 1) % cx.len)
    }
}

/// The algorithms a pool can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Each instance in turn; see [`RoundRobin`].
    #[default]
    RoundRobin,
}

impl Algorithm {
    /// The configuration name of the algorithm.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
        }
    }

    /// A fresh balancer running this algorithm.
    pub fn balancer(self) -> Box<dyn Balancer> {
        match self {
            Self::RoundRobin => Box::new(RoundRobin::new()),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
