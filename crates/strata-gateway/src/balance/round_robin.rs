//! Round robin: each instance in turn, from one shared atomic counter.
//!
//! Sequential requests spread exactly evenly (n·k requests over n instances give k each);
//! concurrent requests still take distinct tickets, so the spread stays exact whatever the
//! interleaving: only which request gets which instance varies. The turn of an instance that
//! became unavailable since the snapshot goes to the next one.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::rng::Rng;
use super::{Acceptance, Algorithm, Balancer, PickContext, Snapshot};

/// Round-robin selection over a pool's available instances.
#[derive(Debug)]
pub struct RoundRobin {
    /// The next ticket. `Relaxed` is enough: the counter orders nothing but itself, and
    /// `fetch_add` hands every caller a distinct ticket under any ordering.
    next: AtomicUsize,
    /// Instances available in the snapshot, in pool order.
    eligible: Box<[usize]>,
    acceptance: Acceptance,
    rng: Rng,
}

impl RoundRobin {
    /// A balancer whose first pick is the first eligible instance.
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        Self {
            next: AtomicUsize::new(0),
            eligible: snapshot.eligible(),
            acceptance: Acceptance::new(snapshot),
            rng: snapshot.rng(),
        }
    }
}

impl Balancer for RoundRobin {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RoundRobin
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        // Wrapping at usize::MAX skews one turn when n is not a power of two: once in 2^64
        // requests, which no test or deployment will see.
        let ticket = self.next.fetch_add(1, Ordering::Relaxed);
        let turns = (0..n).map(|k| self.eligible[ticket.wrapping_add(k) % n]);
        self.acceptance.choose(turns, cx, &self.rng)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::balance::testing::{Fixed, count, cx, ids};
    use crate::balance::{Idle, Snapshot};

    fn round_robin(len: usize) -> RoundRobin {
        RoundRobin::new(&Snapshot::uniform(&vec![1; len], &ids(len)))
    }

    fn spread(balancer: &RoundRobin, len: usize, picks: usize) -> Vec<usize> {
        count((0..picks).map(|_| balancer.pick(&cx(len, &Idle))), len)
    }

    #[test]
    fn three_hundred_picks_over_three_instances_give_a_hundred_each() {
        assert_eq!(spread(&round_robin(3), 3, 300), [100, 100, 100]);
    }

    #[test]
    fn picks_cycle_in_order_from_the_first_instance() {
        let rr = round_robin(3);
        let order: Vec<usize> = (0..7).map(|_| rr.pick(&cx(3, &Idle)).unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn retries_go_to_the_next_available_instance() {
        let rr = round_robin(3);
        assert_eq!(rr.next_after(0, &cx(3, &Idle)), Some(1));
        assert_eq!(rr.next_after(2, &cx(3, &Idle)), Some(0));
        let one_down = Fixed::new(&[0, 0, 0]).with_down(&[1]);
        assert_eq!(rr.next_after(0, &cx(3, &one_down)), Some(2));
        assert_eq!(round_robin(1).next_after(0, &cx(1, &Idle)), Some(0));
    }

    #[test]
    fn the_turn_of_an_instance_gone_down_since_the_snapshot_goes_to_the_next() {
        let rr = round_robin(3);
        let one_down = Fixed::new(&[0, 0, 0]).with_down(&[1]);
        let order: Vec<usize> = (0..6)
            .map(|_| rr.pick(&cx(3, &one_down)).unwrap())
            .collect();
        assert_eq!(order, [0, 2, 2, 0, 2, 2]);
    }

    #[test]
    fn concurrent_picks_stay_exactly_even() {
        let rr = Arc::new(round_robin(5));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rr = Arc::clone(&rr);
                std::thread::spawn(move || spread(&rr, 5, 1000))
            })
            .collect();
        let mut total = [0; 5];
        for t in threads {
            for (sum, n) in total.iter_mut().zip(t.join().unwrap()) {
                *sum += n;
            }
        }
        assert_eq!(total, [800; 5]);
    }

    proptest! {
        #[test]
        fn any_whole_number_of_turns_is_exactly_even(len in 1usize..32, turns in 0usize..50) {
            let counts = spread(&round_robin(len), len, len * turns);
            prop_assert!(counts.iter().all(|&c| c == turns), "{counts:?}");
        }

        #[test]
        fn any_number_of_picks_differs_by_at_most_one(len in 1usize..32, picks in 0usize..1000) {
            let counts = spread(&round_robin(len), len, picks);
            let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
            prop_assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1, "{counts:?}");
        }
    }
}
