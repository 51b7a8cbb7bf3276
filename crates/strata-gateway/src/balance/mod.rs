//! Load-balancing algorithms: given a pool's instances, choose the one for the next request.
//!
//! Algorithms are pure and synchronous. They see instances only as indices plus the figures in
//! [`PickContext`], never sockets or addresses, so each one is tested in isolation (evenness,
//! weights, movement under membership change) and the proxy can swap them per pool.
//!
//! # Two speeds of state
//! - **Slow** state (who is healthy, the effective weights while an instance warms up) is baked
//!   into a balancer when it is [built](build) from a [`Snapshot`]: schedules, alias tables and
//!   rings are precomputed then. The pool rebuilds its balancer off the request path when health
//!   changes and swaps it in whole, so a pick never locks.
//! - **Fast** state (requests in flight, and health changes younger than the last rebuild) is
//!   read live through [`Live`] at each pick: every algorithm skips an instance that is not
//!   [available](Live::is_available) now, so the short window before a rebuild is covered too.
//!
//! # Slow start
//! A recovered instance's effective weight ramps from 10 % to 100 % of its weight. Weighted
//! algorithms (`weighted_round_robin`, `weighted_random`, `least_connections`) use the effective
//! weight directly. Unweighted ones (`round_robin`, `random`, `power_of_two`) accept a ramping
//! instance with probability effective ÷ configured weight, and otherwise move on to their next
//! candidate. `consistent_hash` and `sticky` ignore it: their point is to keep a key or a client
//! on its instance, and bounded load already shields a cold instance from a crowd.

mod consistent_hash;
pub mod hash;
pub mod key;
mod least_connections;
mod power_of_two;
mod random;
pub mod rng;
mod round_robin;
mod sticky;
mod weighted_random;
mod weighted_round_robin;

use std::fmt;

pub use crate::config::Algorithm;
pub use consistent_hash::ConsistentHash;
pub use least_connections::LeastConnections;
pub use power_of_two::PowerOfTwo;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use sticky::Sticky;
pub use weighted_random::WeightedRandom;
pub use weighted_round_robin::WeightedRoundRobin;

use self::rng::Rng;

/// What an algorithm may look at for one pick.
#[derive(Clone, Copy)]
pub struct PickContext<'a> {
    /// Number of instances in the pool; a pick returns an index in `0..len`.
    pub len: usize,
    /// Affinity key: for `consistent_hash` the hash of the request's key (cookie, header,
    /// query parameter or client IP), for `sticky` the instance id its cookie names. `None`
    /// when the request has none.
    pub key: Option<u64>,
    /// Live state of each instance.
    pub live: &'a dyn Live,
}

impl fmt::Debug for PickContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PickContext")
            .field("len", &self.len)
            .field("key", &self.key)
            .finish()
    }
}

/// Live figures of the instances of a pool, read at each pick. Implementations read atomics:
/// a pick calls these a few times per instance at most.
pub trait Live {
    /// Requests in flight on instance `index`.
    fn in_flight(&self, index: usize) -> u64;

    /// Whether instance `index` may take a request now: up, not ejected, under its in-flight
    /// limit.
    fn is_available(&self, index: usize) -> bool;
}

/// Every instance available and idle (unit tests, or a pool that fails open).
#[derive(Debug, Clone, Copy, Default)]
pub struct Idle;

impl Live for Idle {
    fn in_flight(&self, _index: usize) -> u64 {
        0
    }

    fn is_available(&self, _index: usize) -> bool {
        true
    }
}

/// The slow state a balancer is built from: one entry per instance of the pool, in pool order.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Configured weights (1..=1000).
    pub weights: &'a [u32],
    /// Effective weights now: 0 for an instance that was unavailable when the snapshot was
    /// taken, between 10 % and 100 % of the weight while it warms up after recovering.
    pub effective: &'a [u32],
    /// Stable ids of the instances (a hash of their address, the same on every gateway):
    /// positions on the hash ring, values of sticky cookies.
    pub ids: &'a [u64],
    /// Bounded-load factor of `consistent_hash` (at least 1.0).
    pub balance_factor: f64,
    /// Seed of the random algorithms; `None` (production) draws from a per-thread generator.
    pub seed: Option<u64>,
}

impl<'a> Snapshot<'a> {
    /// A snapshot of instances all available at their full weight.
    pub fn uniform(weights: &'a [u32], ids: &'a [u64]) -> Self {
        Self {
            weights,
            effective: weights,
            ids,
            balance_factor: 1.25,
            seed: None,
        }
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether the pool has no instance.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Indices of the instances available when the snapshot was taken.
    fn eligible(&self) -> Box<[usize]> {
        (0..self.len())
            .filter(|&i| self.effective.get(i).copied().unwrap_or(0) > 0)
            .collect()
    }

    fn rng(&self) -> Rng {
        match self.seed {
            Some(seed) => Rng::seeded(seed),
            None => Rng::per_thread(),
        }
    }
}

/// A load-balancing algorithm for one pool snapshot.
///
/// Implementations are shared by every request of the pool, so state they keep (a counter, a
/// ring) must be atomic or immutable: `pick` runs on the hot path and must not lock.
pub trait Balancer: Send + Sync + fmt::Debug {
    /// The algorithm's name as configured and shown by the admin API (`round_robin`).
    fn algorithm(&self) -> Algorithm;

    /// An available instance for the next request, or `None` when no instance this balancer
    /// knows of is available.
    fn pick(&self, cx: &PickContext<'_>) -> Option<usize>;

    /// The instance to retry on after `failed` could not serve a request: the next available
    /// one in index order, so a retry never lands on the instance that just failed while
    /// another is available (it does when it is the only one).
    fn next_after(&self, failed: usize, cx: &PickContext<'_>) -> Option<usize> {
        first_available(failed.wrapping_add(1), cx)
    }
}

/// A balancer running `algorithm` over `snapshot`.
pub fn build(algorithm: Algorithm, snapshot: &Snapshot<'_>) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::new(snapshot)),
        Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(snapshot)),
        Algorithm::Random => Box::new(Random::new(snapshot)),
        Algorithm::WeightedRandom => Box::new(WeightedRandom::new(snapshot)),
        Algorithm::LeastConnections => Box::new(LeastConnections::new(snapshot)),
        Algorithm::PowerOfTwo => Box::new(PowerOfTwo::new(snapshot)),
        Algorithm::ConsistentHash => Box::new(ConsistentHash::new(snapshot)),
        Algorithm::Sticky => Box::new(Sticky::new(snapshot)),
    }
}

/// The first available instance at or after index `from` (wrapping), in index order.
fn first_available(from: usize, cx: &PickContext<'_>) -> Option<usize> {
    (0..cx.len)
        .map(|k| from.wrapping_add(k) % cx.len)
        .find(|&i| cx.live.is_available(i))
}

/// Slow start for unweighted algorithms: a ramping instance is accepted with probability
/// effective ÷ configured weight.
#[derive(Debug)]
struct Acceptance {
    /// Per instance, the acceptance threshold on a uniform `u64`; `None` when no instance is
    /// ramping, so a pick then costs nothing.
    thresholds: Option<Box<[u64]>>,
}

impl Acceptance {
    fn new(snapshot: &Snapshot<'_>) -> Self {
        let ramping = snapshot
            .weights
            .iter()
            .zip(snapshot.effective)
            .any(|(&w, &e)| e > 0 && e < w);
        let thresholds = ramping.then(|| {
            snapshot
                .weights
                .iter()
                .zip(snapshot.effective)
                .map(|(&w, &e)| {
                    if e >= w || w == 0 {
                        u64::MAX
                    } else {
                        // (e / w) of the u64 range; e < w, so this fits.
                        u64::try_from((u128::from(e) << 64) / u128::from(w)).unwrap_or(u64::MAX)
                    }
                })
                .collect()
        });
        Self { thresholds }
    }

    fn accepts(&self, index: usize, rng: &Rng) -> bool {
        match self.thresholds.as_deref().and_then(|t| t.get(index)) {
            None | Some(&u64::MAX) => true,
            Some(&threshold) => rng.next_u64() < threshold,
        }
    }

    /// The first of `candidates` that is available and accepted; failing that the first
    /// available one (a ramping instance still serves when it is all there is).
    fn choose(
        &self,
        candidates: impl Iterator<Item = usize>,
        cx: &PickContext<'_>,
        rng: &Rng,
    ) -> Option<usize> {
        let mut fallback = None;
        for i in candidates {
            if !cx.live.is_available(i) {
                continue;
            }
            if self.accepts(i, rng) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }
}

/// Test doubles shared by the algorithms' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;

    use super::*;

    /// Instances with set in-flight counts and availability.
    #[derive(Debug, Default)]
    pub struct Fixed {
        pub in_flight: RefCell<Vec<u64>>,
        pub down: Vec<bool>,
    }

    impl Fixed {
        pub fn new(in_flight: &[u64]) -> Self {
            Self {
                in_flight: RefCell::new(in_flight.to_vec()),
                down: vec![false; in_flight.len()],
            }
        }

        pub fn with_down(mut self, down: &[usize]) -> Self {
            for &i in down {
                self.down[i] = true;
            }
            self
        }
    }

    impl Live for Fixed {
        fn in_flight(&self, index: usize) -> u64 {
            self.in_flight.borrow()[index]
        }

        fn is_available(&self, index: usize) -> bool {
            !self.down[index]
        }
    }

    pub fn cx(len: usize, live: &dyn Live) -> PickContext<'_> {
        PickContext {
            len,
            key: None,
            live,
        }
    }

    /// Ids as the pool derives them: hashes of distinct addresses.
    pub fn ids(len: usize) -> Vec<u64> {
        (0..len)
            .map(|i| hash::instance_id(&format!("10.0.0.{i}:8101")))
            .collect()
    }

    pub fn count(picks: impl Iterator<Item = Option<usize>>, len: usize) -> Vec<usize> {
        let mut counts = vec![0; len];
        for pick in picks {
            counts[pick.expect("a pick")] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn every_algorithm_skips_unavailable_instances_and_gives_none_when_all_are() {
        let weights = [1, 2, 3, 1];
        let ids = ids(4);
        let snapshot = Snapshot {
            seed: Some(7),
            ..Snapshot::uniform(&weights, &ids)
        };
        let some_down = Fixed::new(&[0; 4]).with_down(&[0, 2]);
        let all_down = Fixed::new(&[0; 4]).with_down(&[0, 1, 2, 3]);
        for algorithm in Algorithm::ALL {
            let balancer = build(algorithm, &snapshot);
            assert_eq!(balancer.algorithm(), algorithm);
            for key in 0..200u64 {
                let cx = PickContext {
                    len: 4,
                    key: Some(hash::mix(key)),
                    live: &some_down,
                };
                let pick = balancer.pick(&cx);
                assert!(matches!(pick, Some(1 | 3)), "{algorithm}: {pick:?}");
                let retry = balancer.next_after(pick.unwrap_or(0), &cx);
                assert!(matches!(retry, Some(1 | 3)), "{algorithm}: {retry:?}");
            }
            let cx = cx(4, &all_down);
            assert_eq!(balancer.pick(&cx), None, "{algorithm}");
            assert_eq!(balancer.next_after(1, &cx), None, "{algorithm}");
        }
    }

    #[test]
    fn an_empty_pool_has_no_pick_whatever_the_algorithm() {
        let snapshot = Snapshot::uniform(&[], &[]);
        for algorithm in Algorithm::ALL {
            let balancer = build(algorithm, &snapshot);
            assert_eq!(balancer.pick(&cx(0, &Idle)), None, "{algorithm}");
            assert_eq!(balancer.next_after(0, &cx(0, &Idle)), None, "{algorithm}");
        }
    }

    #[test]
    fn instances_unavailable_in_the_snapshot_are_left_out_by_every_algorithm_but_hashing() {
        let weights = [1, 1, 1];
        let ids = ids(3);
        let snapshot = Snapshot {
            effective: &[1, 0, 1],
            seed: Some(3),
            ..Snapshot::uniform(&weights, &ids)
        };
        for algorithm in Algorithm::ALL {
            let balancer = build(algorithm, &snapshot);
            let picks = count((0..300).map(|_| balancer.pick(&cx(3, &Idle))), 3);
            if algorithm == Algorithm::ConsistentHash {
                // The ring holds every instance; health is read live (see ConsistentHash).
                continue;
            }
            assert_eq!(picks[1], 0, "{algorithm}: {picks:?}");
        }
    }

    #[test]
    fn ramping_instances_are_accepted_in_proportion_to_their_effective_weight() {
        let weights = [10, 10];
        let ids = ids(2);
        let snapshot = Snapshot {
            effective: &[10, 2],
            seed: Some(11),
            ..Snapshot::uniform(&weights, &ids)
        };
        for algorithm in [Algorithm::RoundRobin, Algorithm::Random] {
            let balancer = build(algorithm, &snapshot);
            let picks = count((0..20_000).map(|_| balancer.pick(&cx(2, &Idle))), 2);
            // Round robin offers instance 1 half the turns and it takes 20 % of them: 10 % of
            // the traffic. Random: the same on average.
            let share = picks[1] as f64 / 20_000.0;
            assert!((0.08..0.12).contains(&share), "{algorithm}: {picks:?}");
        }
    }
}
