//! A small, fast random number generator for the random algorithms: SplitMix64.
//!
//! Picks need speed and a fair spread, not secrecy. In production each thread draws from its
//! own state (a `thread_local`), so concurrent picks share no cache line; tests use a seeded
//! generator whose state is one atomic counter, so a sequence is reproducible and the
//! generator stays `Sync` without a lock.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::hash::mix;

/// SplitMix64's increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

thread_local! {
    /// This thread's generator state, seeded from std's per-process random keys (whose only
    /// job here is to differ between threads and runs).
    static STATE: Cell<u64> = Cell::new({
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(GAMMA);
        hasher.finish()
    });
}

/// A source of uniform random numbers.
#[derive(Debug)]
pub struct Rng {
    /// `None`: the calling thread's generator; `Some`: a seeded, shared sequence.
    seeded: Option<AtomicU64>,
}

impl Rng {
    /// Draws from the calling thread's generator.
    pub fn per_thread() -> Self {
        Self { seeded: None }
    }

    /// A reproducible sequence starting from `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            seeded: Some(AtomicU64::new(seed)),
        }
    }

    /// A uniform `u64`.
    pub fn next_u64(&self) -> u64 {
        let state = match &self.seeded {
            // Each caller takes a distinct counter value, so the sequence is exact under any
            // ordering; `Relaxed` orders nothing else.
            Some(state) => state.fetch_add(GAMMA, Ordering::Relaxed),
            None => STATE.with(|state| {
                let next = state.get().wrapping_add(GAMMA);
                state.set(next);
                next
            }),
        };
        mix(state.wrapping_add(GAMMA))
    }

    /// A uniform index in `0..n` (`n` > 0), by Lemire's multiply-shift: no division, and a
    /// bias below n / 2^64, far under anything measurable.
    pub fn below(&self, n: usize) -> usize {
        let n = n as u64;
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_sequences_repeat_and_differ_by_seed() {
        let (a, b, c) = (Rng::seeded(1), Rng::seeded(1), Rng::seeded(2));
        let seq = |r: &Rng| (0..5).map(|_| r.next_u64()).collect::<Vec<_>>();
        let first = seq(&a);
        assert_eq!(first, seq(&b));
        assert_ne!(first, seq(&c));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        for rng in [Rng::seeded(9), Rng::per_thread()] {
            let mut seen = [0u32; 7];
            for _ in 0..7000 {
                seen[rng.below(7)] += 1;
            }
            assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        }
    }
}
