//! Random: a uniformly random available instance. No shared counter at all (each thread draws
//! from its own generator), at the price of a spread that is even only on average.

use super::rng::Rng;
use super::{Acceptance, Algorithm, Balancer, PickContext, Snapshot};

/// Uniform random selection over a pool's available instances.
#[derive(Debug)]
pub struct Random {
    eligible: Box<[usize]>,
    acceptance: Acceptance,
    rng: Rng,
}

impl Random {
    /// A balancer over the instances available in `snapshot`.
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        Self {
            eligible: snapshot.eligible(),
            acceptance: Acceptance::new(snapshot),
            rng: snapshot.rng(),
        }
    }
}

impl Balancer for Random {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Random
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let n = self.eligible.len();
        if n == 0 {
            return None;
        }
        // A random start, then in order: uniform while every instance is available, and a
        // bounded walk (no redraw loop) when some are not.
        let start = self.rng.below(n);
        let candidates = (0..n).map(|k| self.eligible[(start + k) % n]);
        self.acceptance.choose(candidates, cx, &self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{count, cx, ids};
    use crate::balance::{Idle, Snapshot};

    #[test]
    fn picks_spread_evenly_within_a_chi_square_bound() {
        let ids = ids(5);
        let balancer = Random::new(&Snapshot {
            seed: Some(42),
            ..Snapshot::uniform(&[1; 5], &ids)
        });
        let n = 50_000;
        let counts = count((0..n).map(|_| balancer.pick(&cx(5, &Idle))), 5);
        let expected = n as f64 / 5.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // 4 degrees of freedom: P(χ² > 40) ≈ 4e-8.
        assert!(chi2 < 40.0, "χ² = {chi2}: {counts:?}");
    }
}
