//! Round robin: each instance in turn, from one shared atomic counter.
//!
//! Sequential requests spread exactly evenly (n·k requests over n instances give k each);
//! concurrent requests still take distinct tickets, so the spread stays exact whatever the
//! interleaving: only which request gets which instance varies.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Algorithm, Balancer, PickContext};

/// Round-robin selection over a pool's instances.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// The next ticket. `Relaxed` is enough: the counter orders nothing but itself, and
    /// `fetch_add` hands every caller a distinct ticket under any ordering.
    next: AtomicUsize,
}

impl RoundRobin {
    /// A balancer whose first pick is instance 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RoundRobin
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        if cx.len == 0 {
            return None;
        }
        // Wrapping at usize::MAX skews one turn when len is not a power of two: once in 2^64
        // requests, which no test or deployment will see.
        Some(self.next.fetch_add(1, Ordering::Relaxed) % cx.len)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::balance::NoLoad;

    fn cx(len: usize) -> PickContext<'static> {
        PickContext {
            len,
            key: None,
            load: &NoLoad,
        }
    }

    fn spread(balancer: &RoundRobin, len: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; len];
        for _ in 0..picks {
            counts[balancer.pick(&cx(len)).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn three_hundred_picks_over_three_instances_give_a_hundred_each() {
        assert_eq!(spread(&RoundRobin::new(), 3, 300), [100, 100, 100]);
    }

    #[test]
    fn picks_cycle_in_order_from_the_first_instance() {
        let rr = RoundRobin::new();
        let order: Vec<usize> = (0..7).map(|_| rr.pick(&cx(3)).unwrap()).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn an_empty_pool_has_no_pick() {
        let rr = RoundRobin::new();
        assert_eq!(rr.pick(&cx(0)), None);
        assert_eq!(rr.next_after(0, &cx(0)), None);
    }

    #[test]
    fn retries_go_to_the_next_instance() {
        let rr = RoundRobin::new();
        assert_eq!(rr.next_after(0, &cx(3)), Some(1));
        assert_eq!(rr.next_after(2, &cx(3)), Some(0));
        assert_eq!(rr.next_after(0, &cx(1)), Some(0));
    }

    #[test]
    fn concurrent_picks_stay_exactly_even() {
        let rr = Arc::new(RoundRobin::new());
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
            let counts = spread(&RoundRobin::new(), len, len * turns);
            prop_assert!(counts.iter().all(|&c| c == turns), "{counts:?}");
        }

        #[test]
        fn any_number_of_picks_differs_by_at_most_one(len in 1usize..32, picks in 0usize..1000) {
            let counts = spread(&RoundRobin::new(), len, picks);
            let (min, max) = (counts.iter().min().copied(), counts.iter().max().copied());
            prop_assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1, "{counts:?}");
        }
    }
}
