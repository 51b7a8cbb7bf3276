//! Consistent hashing with bounded load: a request key always reaches the same instance, and
//! when instances join or leave only the keys of the instances concerned move.
//!
//! # The ring
//! [`strata_core::ring::Ring`]: ketama-like points per unit of weight, placed by the stable
//! hash of each instance's id (see there). The same ring tells the api's local carts which
//! instance holds a cart, so the gateway and the api agree on every key's owner.
//!
//! # Health
//! The ring holds every instance of the pool whatever its health, and a pick walks clockwise
//! past instances that are not available. That is exactly where the keys of a removed
//! instance would go if the ring were rebuilt without it, so an instance going down moves only
//! its own keys, and coming back takes back exactly those keys.
//!
//! # Bounded load
//! An instance is also passed over while its in-flight count is at or above its capacity,
//! `ceil((total in flight + 1) × factor × weight / total weight)` over the available
//! instances (HAProxy's `hash-balance-factor`; Mirrokni, Thorup and Zadimoghaddam,
//! "Consistent Hashing with Bounded Loads"). With factor 1.25 no instance carries more than
//! 25 % above its share, so one hot key cannot bury its instance. The capacities add up to
//! more than the total in flight, so some available instance is always under its capacity.
//! Factor 0 turns it off: a key then leaves its instance only when that instance is not
//! available, which a pool of instances that each *hold* their keys (the api's local carts)
//! needs.

use strata_core::ring::Ring;

use super::{Algorithm, Balancer, PickContext, Snapshot};

/// A hash ring with bounded load.
#[derive(Debug)]
pub struct ConsistentHash {
    ring: Ring,
    /// Configured weight of each instance.
    weights: Box<[u64]>,
    /// Bounded-load factor; `None`: off.
    factor: Option<f64>,
}

impl ConsistentHash {
    /// The ring of every instance of the snapshot, by configured weight.
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        let members: Vec<(u64, u32)> = snapshot
            .ids
            .iter()
            .copied()
            .zip(snapshot.weights.iter().copied())
            .collect();
        Self {
            ring: Ring::new(&members),
            weights: snapshot.weights.iter().map(|&w| u64::from(w)).collect(),
            factor: (snapshot.balance_factor != 0.0).then(|| snapshot.balance_factor.max(1.0)),
        }
    }

    /// The instances in the order a key's walk meets them, each once (for tests and retries).
    fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        self.ring.walk(key)
    }

    /// Capacities of the available instances, given their loads.
    fn capacities(&self, cx: &PickContext<'_>, factor: f64) -> Capacity {
        let (mut total_load, mut total_weight) = (0u64, 0u64);
        for (i, &weight) in self.weights.iter().enumerate().take(cx.len) {
            if cx.live.is_available(i) {
                total_load += cx.live.in_flight(i);
                total_weight += weight;
            }
        }
        Capacity {
            per_weight: (total_load + 1) as f64 * factor / total_weight.max(1) as f64,
        }
    }
}

/// Capacity of an instance: `ceil(per_weight × weight)`.
struct Capacity {
    per_weight: f64,
}

impl Capacity {
    fn admits(&self, load: u64, weight: u64) -> bool {
        (load as f64) < (self.per_weight * weight as f64).ceil()
    }
}

impl Balancer for ConsistentHash {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ConsistentHash
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        if self.ring.is_empty() {
            return None;
        }
        let key = cx.key.unwrap_or(0);
        let mut capacity = None;
        for i in self.walk(key) {
            if !cx.live.is_available(i) {
                continue;
            }
            let Some(factor) = self.factor else {
                return Some(i);
            };
            let load = cx.live.in_flight(i);
            // An idle instance is under any capacity (each is at least 1): the common case
            // costs no sum over the pool.
            if load == 0 {
                return Some(i);
            }
            let capacity = capacity.get_or_insert_with(|| self.capacities(cx, factor));
            if capacity.admits(load, self.weights[i]) {
                return Some(i);
            }
        }
        None
    }

    /// The next available instance clockwise after `failed` on the key's walk, so a retried
    /// key lands where it would go if `failed` were removed.
    fn next_after(&self, failed: usize, cx: &PickContext<'_>) -> Option<usize> {
        let key = cx.key.unwrap_or(0);
        self.walk(key)
            .skip_while(|&i| i != failed)
            .skip(1)
            .chain(self.walk(key))
            .find(|&i| i != failed && cx.live.is_available(i))
            .or_else(|| (failed < cx.len && cx.live.is_available(failed)).then_some(failed))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::balance::hash::{hash_bytes, instance_id};
    use crate::balance::testing::{Fixed, cx};
    use crate::balance::{Idle, Live};
    use strata_core::ring::Ring;

    fn ring(addresses: &[String], weights: &[u32], factor: f64) -> ConsistentHash {
        let ids: Vec<u64> = addresses.iter().map(|a| instance_id(a)).collect();
        ConsistentHash::new(&Snapshot {
            balance_factor: factor,
            ..Snapshot::uniform(weights, &ids)
        })
    }

    fn addresses(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("127.0.0.1:82{i:02}")).collect()
    }

    fn key(k: usize) -> u64 {
        hash_bytes(format!("room-{k}").as_bytes())
    }

    /// Where each of `keys` keys goes, as addresses, with every instance idle and up.
    fn assign(addresses: &[String], live: &dyn Live, keys: usize) -> Vec<String> {
        let balancer = ring(addresses, &vec![1; addresses.len()], 1.25);
        (0..keys)
            .map(|k| {
                let cx = PickContext {
                    len: addresses.len(),
                    key: Some(key(k)),
                    live,
                };
                addresses[balancer.pick(&cx).unwrap()].clone()
            })
            .collect()
    }

    #[test]
    fn the_same_key_always_reaches_the_same_instance() {
        let balancer = ring(&addresses(3), &[1, 1, 1], 1.25);
        for k in 0..100 {
            let cx = PickContext {
                len: 3,
                key: Some(key(k)),
                live: &Idle,
            };
            let first = balancer.pick(&cx);
            assert!((0..10).all(|_| balancer.pick(&cx) == first));
        }
    }

    #[test]
    fn going_from_4_to_5_instances_moves_at_most_a_quarter_more_than_a_fifth_of_the_keys() {
        let before = assign(&addresses(4), &Idle, 10_000);
        let after = assign(&addresses(5), &Idle, 10_000);
        let moved: Vec<usize> = (0..10_000).filter(|&k| before[k] != after[k]).collect();
        assert!(
            moved.len() <= 2500,
            "{} of 10000 keys moved (ideal 2000, bound 2500)",
            moved.len()
        );
        assert!(
            moved.len() >= 1500,
            "the new instance took too few keys: {}",
            moved.len()
        );
        let new = &addresses(5)[4];
        assert!(
            moved.iter().all(|&k| &after[k] == new),
            "a key moved between old instances"
        );
    }

    #[test]
    fn removing_an_instance_moves_only_its_keys() {
        let before = assign(&addresses(5), &Idle, 10_000);
        let mut four = addresses(5);
        let removed = four.remove(2);
        let after = assign(&four, &Idle, 10_000);
        for k in 0..10_000 {
            if before[k] != removed {
                assert_eq!(before[k], after[k], "key {k} moved without reason");
            }
        }
        // And an instance down (not removed) sends its keys exactly where removal would.
        let down = Fixed::new(&[0; 5]).with_down(&[2]);
        assert_eq!(assign(&addresses(5), &down, 10_000), after);
    }

    #[test]
    fn keys_spread_over_instances_in_proportion_to_weight() {
        let balancer = ring(&addresses(3), &[2, 1, 1], 1.25);
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for k in 0..20_000 {
            let cx = PickContext {
                len: 3,
                key: Some(key(k)),
                live: &Idle,
            };
            *counts.entry(balancer.pick(&cx).unwrap()).or_default() += 1;
        }
        assert!((8500..11_500).contains(&counts[&0]), "{counts:?}");
        assert!((4000..6000).contains(&counts[&1]), "{counts:?}");
    }

    #[test]
    fn a_loaded_instance_passes_keys_to_the_next_one_on_the_ring() {
        let balancer = ring(&addresses(4), &[1; 4], 1.25);
        let k = key(7);
        let order: Vec<usize> = balancer.walk(k).collect();
        assert_eq!(order.len(), 4);
        // Total 8 in flight over 4: capacity ceil(9 × 1.25 / 4) = 3.
        let mut loads = [0u64; 4];
        loads[order[0]] = 3;
        loads[order[1]] = 5;
        let live = Fixed::new(&loads);
        let cx = PickContext {
            len: 4,
            key: Some(k),
            live: &live,
        };
        assert_eq!(balancer.pick(&cx), Some(order[2]));
        assert_eq!(balancer.next_after(order[2], &cx), Some(order[3]));
    }

    proptest! {
        #[test]
        fn adding_an_instance_only_moves_keys_to_it(n in 1usize..8, base in 0u16..500) {
            let old: Vec<String> = (0..n).map(|i| format!("10.1.{base}.{i}:80")).collect();
            let mut new = old.clone();
            new.push(format!("10.2.{base}.0:80"));
            let before = assign(&old, &Idle, 2000);
            let after = assign(&new, &Idle, 2000);
            for k in 0..2000 {
                prop_assert!(before[k] == after[k] || after[k] == new[n]);
            }
        }

        #[test]
        fn bounded_load_is_never_exceeded(
            n in 2usize..8,
            factor in 1.0f64..2.0,
            ops in prop::collection::vec((0usize..6, any::<bool>()), 1..400),
        ) {
            // A few hot keys (0..6) arrive and complete at random; after each arrival the
            // chosen instance must be within its capacity as computed before it.
            let balancer = ring(&addresses(n), &vec![1; n], factor);
            let live = Fixed::new(&vec![0; n]);
            let mut placed: Vec<usize> = Vec::new();
            for (k, arrive) in ops {
                if !arrive && !placed.is_empty() {
                    let i = placed.swap_remove(k % placed.len());
                    live.in_flight.borrow_mut()[i] -= 1;
                    continue;
                }
                let total: u64 = live.in_flight.borrow().iter().sum();
                let cap = ((total + 1) as f64 * factor / n as f64).ceil() as u64;
                let cx = PickContext { len: n, key: Some(key(k)), live: &live };
                let i = balancer.pick(&cx).unwrap();
                let load = live.in_flight.borrow()[i] + 1;
                prop_assert!(load <= cap, "instance {} at {} > cap {}", i, load, cap);
                live.in_flight.borrow_mut()[i] = load;
                placed.push(i);
            }
        }
    }

    #[test]
    fn every_instance_down_gives_no_pick_and_a_missing_key_still_picks() {
        let balancer = ring(&addresses(3), &[1; 3], 1.25);
        let down = Fixed::new(&[0; 3]).with_down(&[0, 1, 2]);
        assert_eq!(balancer.pick(&cx(3, &down)), None);
        assert!(balancer.pick(&cx(3, &Idle)).is_some());
    }

    #[test]
    fn without_bounded_load_a_key_stays_on_its_loaded_instance() {
        let balancer = ring(&addresses(4), &[1; 4], 0.0);
        let k = key(7);
        let order: Vec<usize> = balancer.walk(k).collect();
        let mut loads = [0u64; 4];
        loads[order[0]] = 50;
        let live = Fixed::new(&loads);
        let cx = PickContext {
            len: 4,
            key: Some(k),
            live: &live,
        };
        assert_eq!(balancer.pick(&cx), Some(order[0]));
        let down = Fixed::new(&loads).with_down(&[order[0]]);
        let cx = PickContext {
            len: 4,
            key: Some(k),
            live: &down,
        };
        assert_eq!(balancer.pick(&cx), Some(order[1]));
    }

    #[test]
    fn the_gateway_and_a_ring_built_elsewhere_name_the_same_owner() {
        // The api's local carts build `Ring` from the pool's addresses and hash the cart
        // owner cookie's value: they must find the instance the balancer picks.
        let addresses = addresses(3);
        let balancer = ring(&addresses, &[1, 2, 1], 0.0);
        let members: Vec<(u64, u32)> = addresses
            .iter()
            .zip([1, 2, 1])
            .map(|(a, w)| (instance_id(a), w))
            .collect();
        let elsewhere = Ring::new(&members);
        for k in 0..2000 {
            let owner = format!("u{k}");
            let cx = PickContext {
                len: 3,
                key: Some(hash_bytes(owner.as_bytes())),
                live: &Idle,
            };
            assert_eq!(
                balancer.pick(&cx),
                elsewhere.owner(hash_bytes(owner.as_bytes())),
                "{owner}"
            );
        }
    }
}
