//! Power of two choices: draw two distinct instances at random and send the request to the one
//! with fewer requests in flight (a coin decides ties).
//!
//! Nearly as good at levelling load as least connections (the maximum load drops from
//! O(log n / log log n) to O(log log n)), while reading only two load figures per pick and
//! never herding: concurrent picks that all see the same idle instance under least connections
//! spread here over random pairs.

use super::rng::Rng;
use super::{Acceptance, Algorithm, Balancer, PickContext, Snapshot};

/// Power-of-two-choices selection over a pool's available instances.
#[derive(Debug)]
pub struct PowerOfTwo {
    eligible: Box<[usize]>,
    acceptance: Acceptance,
    rng: Rng,
}

impl PowerOfTwo {
    /// A balancer over the instances available in `snapshot`.
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        Self {
            eligible: snapshot.eligible(),
            acceptance: Acceptance::new(snapshot),
            rng: snapshot.rng(),
        }
    }

    /// Two distinct eligible instances, uniformly among pairs (`n` ≥ 2).
    fn pair(&self, n: usize) -> (usize, usize) {
        let a = self.rng.below(n);
        let mut b = self.rng.below(n - 1);
        if b >= a {
            b += 1;
        }
        (self.eligible[a], self.eligible[b])
    }
}

impl Balancer for PowerOfTwo {
    fn algorithm(&self) -> Algorithm {
        Algorithm::PowerOfTwo
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        if n >= 2 {
            let (a, b) = self.pair(n);
            let (load_a, load_b) = (cx.live.in_flight(a), cx.live.in_flight(b));
            let (first, second) =
                if load_a < load_b || (load_a == load_b && self.rng.next_u64() & 1 == 0) {
                    (a, b)
                } else {
                    (b, a)
                };
            if let Some(i) = self
                .acceptance
                .choose([first, second].into_iter(), cx, &self.rng)
            {
                return Some(i);
            }
        }
        // One instance, or both draws unavailable since the snapshot: any available one.
        let start = self.rng.below(n);
        let rest = (0..n).map(|k| self.eligible[(start + k) % n]);
        self.acceptance.choose(rest, cx, &self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Snapshot;
    use crate::balance::testing::{Fixed, count, cx, ids};

    fn p2c(len: usize, seed: u64) -> PowerOfTwo {
        let ids = ids(len);
        PowerOfTwo::new(&Snapshot {
            seed: Some(seed),
            ..Snapshot::uniform(&vec![1; len], &ids)
        })
    }

    #[test]
    fn with_two_instances_the_less_loaded_always_wins() {
        let balancer = p2c(2, 1);
        let live = Fixed::new(&[3, 1]);
        for _ in 0..100 {
            assert_eq!(balancer.pick(&cx(2, &live)), Some(1));
        }
    }

    #[test]
    fn the_most_loaded_instance_is_never_picked_and_the_least_most_often() {
        let balancer = p2c(4, 2);
        let live = Fixed::new(&[9, 1, 5, 3]);
        let picks = count((0..6000).map(|_| balancer.pick(&cx(4, &live))), 4);
        assert_eq!(picks[0], 0, "{picks:?}");
        // Instance 1 wins every pair it is in: 3 of the 6 pairs, so half the picks.
        assert!((2800..3200).contains(&picks[1]), "{picks:?}");
        // Instance 3 wins against 0 and 2: a third of the picks; instance 2 against 0 only.
        assert!((1800..2200).contains(&picks[3]), "{picks:?}");
        assert!((800..1200).contains(&picks[2]), "{picks:?}");
    }

    #[test]
    fn ties_are_broken_at_random_between_distinct_draws() {
        let balancer = p2c(2, 3);
        let idle = Fixed::new(&[0, 0]);
        let picks = count((0..4000).map(|_| balancer.pick(&cx(2, &idle))), 2);
        assert!((1800..2200).contains(&picks[0]), "{picks:?}");
    }

    #[test]
    fn an_unavailable_draw_gives_way_to_the_other() {
        let balancer = p2c(3, 4);
        let live = Fixed::new(&[0, 9, 9]).with_down(&[0]);
        let picks = count((0..300).map(|_| balancer.pick(&cx(3, &live))), 3);
        assert_eq!(picks[0], 0, "{picks:?}");
    }
}
