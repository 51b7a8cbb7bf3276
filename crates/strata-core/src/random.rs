//! Randomness for ids and picks, without a system call or a lock: SplitMix64.
//!
//! Request, trace and span ids and the gateway's random balancers need values that do not
//! collide or cluster, not secrets. A `getrandom` call per value (what `uuid::Uuid::new_v4`
//! makes) costs a system call on every request, a few percent of a proxy's or an instance's
//! time at tens of thousands of requests per second; here each thread steps a state of its own,
//! seeded once from the OS through std's `RandomState`. Secrets (session keys, tokens) come
//! from the OS, never from here.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

/// SplitMix64's increment (the golden ratio in 64 bits).
pub const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser: a bijection on `u64` that scatters consecutive inputs, so a
/// counter passed through it looks random and never repeats.
pub fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    /// This thread's state: std's random hash keys (drawn from the OS once per thread) and the
    /// clock, hashed.
    static STATE: Cell<u64> = Cell::new({
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.finish()
    });
}

/// A uniform `u64` from the calling thread's generator.
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(GAMMA);
        state.set(next);
        splitmix(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finaliser_is_splitmix64s() {
        // The first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        assert_eq!(splitmix(GAMMA), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix(GAMMA.wrapping_mul(2)), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn threads_draw_different_sequences() {
        let draw = || (0..4).map(|_| next_u64()).collect::<Vec<_>>();
        let here = draw();
        let there = std::thread::spawn(draw).join().unwrap();
        assert_ne!(here, there);
        let mut sorted = here.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), here.len());
    }
}
