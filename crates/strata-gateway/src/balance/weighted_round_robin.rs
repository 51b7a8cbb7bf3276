//! Smooth weighted round robin, as nginx does it: weights 5, 1, 1 give `a a b a c a a`, then
//! the same again. Heavier instances get more turns, spread through the cycle rather than in a
//! burst.
//!
//! nginx keeps a "current weight" per instance and updates all of them at every pick, which
//! needs a lock or a compare-and-swap over the whole vector. The sequence is periodic, though:
//! after Σw picks every current weight is back at zero. So the whole cycle is computed once,
//! when the balancer is built, and a pick is one atomic ticket and one array read, giving
//! exactly nginx's sequence without any shared mutable state. Weights are divided by their
//! greatest common divisor first (2, 2 cycles like 1, 1), which shortens the cycle without
//! changing the sequence.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Algorithm, Balancer, PickContext, Snapshot};

/// Smooth weighted round robin over the instances' effective weights.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    next: AtomicUsize,
    /// One cycle of nginx's sequence, as instance indices.
    schedule: Box<[u32]>,
}

impl WeightedRoundRobin {
    /// Precomputes the cycle for the snapshot's effective weights (instances of weight 0 are
    /// left out).
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        Self {
            next: AtomicUsize::new(0),
            schedule: smooth_cycle(snapshot.effective),
        }
    }
}

impl Balancer for WeightedRoundRobin {
    fn algorithm(&self) -> Algorithm {
        Algorithm::WeightedRoundRobin
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        // An instance that went down since the snapshot: its slot goes to the next slot's
        // instance, until the pool rebuilds the schedule.
        (0..n)
            .map(|k| self.schedule[ticket.wrapping_add(k) % n] as usize)
            .find(|&i| cx.live.is_available(i))
    }
}

/// One cycle of nginx's smooth weighted round robin over `weights`: at each step every
/// instance's current weight grows by its weight, the largest (the first among equals) is
/// picked, and the total of the weights is taken off it.
fn smooth_cycle(weights: &[u32]) -> Box<[u32]> {
    let divisor = weights
        .iter()
        .copied()
        .filter(|&w| w > 0)
        .fold(0, gcd)
        .max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 {
                continue;
            }
            current[i] += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            current[b] -= total;
            cycle.push(u32::try_from(b).unwrap_or(u32::MAX));
        }
    }
    cycle.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::testing::{Fixed, count, cx, ids};
    use crate::balance::{Idle, Snapshot};

    fn wrr(weights: &[u32]) -> WeightedRoundRobin {
        WeightedRoundRobin::new(&Snapshot::uniform(weights, &ids(weights.len())))
    }

    #[test]
    fn weights_5_1_1_give_a_a_b_a_c_a_a_and_repeat() {
        let balancer = wrr(&[5, 1, 1]);
        let names: String = (0..21)
            .map(|_| ["a", "b", "c"][balancer.pick(&cx(3, &Idle)).unwrap()])
            .collect();
        assert_eq!(names, "aabacaa".repeat(3));
    }

    #[test]
    fn equal_weights_are_plain_round_robin_and_common_factors_cancel() {
        assert_eq!(&*wrr(&[1, 1, 1]).schedule, [0, 1, 2]);
        assert_eq!(&*wrr(&[4, 4]).schedule, [0, 1]);
        assert_eq!(&*wrr(&[10, 2, 2]).schedule, &*wrr(&[5, 1, 1]).schedule);
    }

    #[test]
    fn instances_of_effective_weight_zero_are_left_out() {
        let weights = [5, 1, 1];
        let ids = ids(3);
        let balancer = WeightedRoundRobin::new(&Snapshot {
            effective: &[0, 1, 1],
            ..Snapshot::uniform(&weights, &ids)
        });
        assert_eq!(&*balancer.schedule, [1, 2]);
    }

    #[test]
    fn a_slot_of_an_instance_down_since_the_snapshot_goes_to_the_next_slot() {
        let balancer = wrr(&[5, 1, 1]);
        let a_down = Fixed::new(&[0; 3]).with_down(&[0]);
        let picks: Vec<usize> = (0..7)
            .map(|_| balancer.pick(&cx(3, &a_down)).unwrap())
            .collect();
        assert!(picks.iter().all(|&i| i != 0), "{picks:?}");
    }

    proptest! {
        #[test]
        fn any_whole_cycle_gives_each_instance_exactly_its_weight(
            weights in prop::collection::vec(1u32..=40, 1..12),
            cycles in 1usize..4,
        ) {
            let balancer = wrr(&weights);
            let total: usize = weights.iter().map(|&w| w as usize).sum();
            let counts = count(
                (0..total * cycles).map(|_| balancer.pick(&cx(weights.len(), &Idle))),
                weights.len(),
            );
            let expected: Vec<usize> = weights.iter().map(|&w| w as usize * cycles).collect();
            prop_assert_eq!(counts, expected);
        }

        #[test]
        fn heavy_instances_never_take_more_than_their_share_plus_one_in_any_prefix(
            weights in prop::collection::vec(1u32..=20, 1..8),
        ) {
            // The "smooth" property: after t picks instance i has at most ⌈t·w_i/Σw⌉ turns.
            let balancer = wrr(&weights);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let mut counts = vec![0u64; weights.len()];
            for t in 1..=total {
                counts[balancer.pick(&cx(weights.len(), &Idle)).unwrap()] += 1;
                for (i, &w) in weights.iter().enumerate() {
                    let bound = (t * u64::from(w)).div_ceil(total);
                    prop_assert!(counts[i] <= bound, "t={t} i={i} {counts:?}");
                }
            }
        }
    }
}
