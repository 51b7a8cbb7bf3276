//! Least connections: the instance with the fewest requests in flight relative to its weight.
//!
//! Instance a beats b when `in_flight_a / weight_a < in_flight_b / weight_b`, compared as
//! `in_flight_a × weight_b < in_flight_b × weight_a` (integers, no division). Among equals the
//! first found wins, and the scan starts one instance further at each pick, so ties (an idle
//! pool, above all) rotate instead of always landing on the first instance.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Algorithm, Balancer, PickContext, Snapshot};

/// Least-connections selection over the instances' effective weights.
#[derive(Debug)]
pub struct LeastConnections {
    /// Where the next scan starts.
    start: AtomicUsize,
    /// `(instance, effective weight)` of the instances available in the snapshot.
    eligible: Box<[(usize, u64)]>,
}

impl LeastConnections {
    /// A balancer over the instances available in `snapshot`.
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        let eligible = snapshot
            .effective
            .iter()
            .enumerate()
            .filter(|&(_, &w)| w > 0)
            .map(|(i, &w)| (i, u64::from(w)))
            .collect();
        Self {
            start: AtomicUsize::new(0),
            eligible,
        }
    }

    /// The least loaded available instance other than `except`.
    fn least(&self, cx: &PickContext<'_>, except: Option<usize>) -> Option<usize> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        let start = self.start.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let (i, weight) = self.eligible[start.wrapping_add(k) % n];
            if Some(i) == except || !cx.live.is_available(i) {
                continue;
            }
            let load = cx.live.in_flight(i);
            let better = match best {
                None => true,
                Some((_, best_load, best_weight)) => {
                    u128::from(load) * u128::from(best_weight)
                        < u128::from(best_load) * u128::from(weight)
                }
            };
            if better {
                best = Some((i, load, weight));
            }
        }
        best.map(|(i, _, _)| i)
    }
}

impl Balancer for LeastConnections {
    fn algorithm(&self) -> Algorithm {
        Algorithm::LeastConnections
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        self.least(cx, None)
    }

    /// The least loaded other instance; the failed one only when it is the only one left.
    fn next_after(&self, failed: usize, cx: &PickContext<'_>) -> Option<usize> {
        self.least(cx, Some(failed))
            .or_else(|| (failed < cx.len && cx.live.is_available(failed)).then_some(failed))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::Snapshot;
    use crate::balance::testing::{Fixed, count, cx, ids};

    fn lc(weights: &[u32]) -> LeastConnections {
        LeastConnections::new(&Snapshot::uniform(weights, &ids(weights.len())))
    }

    #[test]
    fn the_instance_with_fewest_in_flight_wins() {
        let balancer = lc(&[1, 1, 1, 1]);
        let live = Fixed::new(&[4, 2, 7, 3]);
        for _ in 0..8 {
            assert_eq!(balancer.pick(&cx(4, &live)), Some(1));
        }
    }

    #[test]
    fn load_is_relative_to_weight() {
        // 6 in flight at weight 3 (2 per unit) beats 3 at weight 1 (3 per unit).
        let balancer = lc(&[1, 3]);
        assert_eq!(balancer.pick(&cx(2, &Fixed::new(&[3, 6]))), Some(1));
        // 7 at weight 3 (2.33) loses to 2 at weight 1.
        assert_eq!(balancer.pick(&cx(2, &Fixed::new(&[2, 7]))), Some(0));
    }

    #[test]
    fn ties_rotate_over_the_tied_instances() {
        let balancer = lc(&[1, 1, 1, 1]);
        let live = Fixed::new(&[1, 0, 5, 0]);
        let picks = count((0..100).map(|_| balancer.pick(&cx(4, &live))), 4);
        assert_eq!(picks, [0, 50, 0, 50]);
        let idle = Fixed::new(&[0; 4]);
        let picks = count((0..100).map(|_| balancer.pick(&cx(4, &idle))), 4);
        assert_eq!(picks, [25; 4]);
    }

    #[test]
    fn retries_go_to_the_least_loaded_other_instance() {
        let balancer = lc(&[1, 1, 1]);
        let live = Fixed::new(&[0, 5, 2]);
        assert_eq!(balancer.next_after(0, &cx(3, &live)), Some(2));
        let others_down = Fixed::new(&[0, 5, 2]).with_down(&[1, 2]);
        assert_eq!(balancer.next_after(0, &cx(3, &others_down)), Some(0));
    }

    proptest! {
        #[test]
        fn the_pick_is_never_more_loaded_per_weight_than_any_available_instance(
            state in prop::collection::vec((0u64..50, 1u32..10, any::<bool>()), 1..16),
        ) {
            let weights: Vec<u32> = state.iter().map(|s| s.1).collect();
            let loads: Vec<u64> = state.iter().map(|s| s.0).collect();
            let down: Vec<usize> = (0..state.len()).filter(|&i| state[i].2).collect();
            let live = Fixed::new(&loads).with_down(&down);
            let pick = lc(&weights).pick(&cx(state.len(), &live));
            if down.len() == state.len() {
                prop_assert_eq!(pick, None);
            } else {
                let p = pick.unwrap();
                prop_assert!(!down.contains(&p));
                for i in (0..state.len()).filter(|i| !down.contains(i)) {
                    prop_assert!(
                        loads[p] * u64::from(weights[i]) <= loads[i] * u64::from(weights[p]),
                        "picked {} over {}", p, i
                    );
                }
            }
        }
    }
}
