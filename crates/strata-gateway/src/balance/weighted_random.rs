//! Weighted random: a random instance, chosen with probability proportional to its effective
//! weight, in constant time by Vose's alias method.
//!
//! The alias table splits the weights into n columns of equal height, each holding at most two
//! instances (its own and an "alias"); a pick draws a column and a coin. The table is built
//! once per snapshot, so a pick reads two array slots and never locks.

use super::rng::Rng;
use super::{Algorithm, Balancer, PickContext, Snapshot};

/// Weighted random selection over the instances' effective weights.
#[derive(Debug)]
pub struct WeightedRandom {
    /// Per column: the column's own instance, its alias and the probability (on the `u64`
    /// range) of keeping the own instance.
    columns: Box<[Column]>,
    rng: Rng,
}

#[derive(Debug, Clone, Copy)]
struct Column {
    instance: usize,
    alias: usize,
    keep: u64,
}

impl WeightedRandom {
    /// Builds the alias table of the snapshot's effective weights (weight 0 is left out).
    pub fn new(snapshot: &Snapshot<'_>) -> Self {
        Self {
            columns: alias_table(snapshot.effective),
            rng: snapshot.rng(),
        }
    }
}

impl Balancer for WeightedRandom {
    fn algorithm(&self) -> Algorithm {
        Algorithm::WeightedRandom
    }

    fn pick(&self, cx: &PickContext<'_>) -> Option<usize> {
        let n = self.columns.len();
        if n == 0 {
            return None;
        }
        let column = self.columns[self.rng.below(n)];
        let chosen = if self.rng.next_u64() < column.keep {
            column.instance
        } else {
            column.alias
        };
        if cx.live.is_available(chosen) {
            return Some(chosen);
        }
        // Gone down since the snapshot: walk the columns' own instances from a random start
        // (each available instance has a column) until the pool rebuilds the table.
        let start = self.rng.below(n);
        (0..n)
            .map(|k| self.columns[(start + k) % n].instance)
            .find(|&i| cx.live.is_available(i))
    }
}

/// Vose's alias method over the positive entries of `weights`.
fn alias_table(weights: &[u32]) -> Box<[Column]> {
    let present: Vec<(usize, u64)> = weights
        .iter()
        .enumerate()
        .filter(|&(_, &w)| w > 0)
        .map(|(i, &w)| (i, u64::from(w)))
        .collect();
    let n = present.len() as u64;
    let total: u64 = present.iter().map(|&(_, w)| w).sum();
    // Scaled so the average column is exactly `total`: weight × n, integers all the way.
    let mut scaled: Vec<u64> = present.iter().map(|&(_, w)| w * n).collect();
    let mut columns: Vec<Column> = present
        .iter()
        .map(|&(i, _)| Column {
            instance: i,
            alias: i,
            keep: u64::MAX,
        })
        .collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) =
        (0..present.len()).partition(|&k| scaled[k] < total);
    while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
        columns[s].alias = present[l].0;
        columns[s].keep = share_of_range(scaled[s], total);
        scaled[l] -= total - scaled[s];
        if scaled[l] < total {
            large.pop();
            small.push(l);
        }
    }
    // What is left is full (up to rounding): keeps its own instance always.
    columns.into_boxed_slice()
}

/// `part / whole` of the `u64` range (`part` < `whole`).
fn share_of_range(part: u64, whole: u64) -> u64 {
    u64::try_from((u128::from(part) << 64) / u128::from(whole)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::balance::testing::{count, cx, ids};
    use crate::balance::{Idle, Snapshot};

    /// Upper (1 − 1e-9) quantile of χ² with `df` degrees of freedom (Wilson–Hilferty), so a
    /// correct implementation fails it about once in a billion runs.
    fn chi2_bound(df: f64) -> f64 {
        let z = 6.1;
        let a = 2.0 / (9.0 * df);
        df * (1.0 - a + z * a.sqrt()).powi(3)
    }

    fn chi2(counts: &[usize], weights: &[u32]) -> f64 {
        let n: usize = counts.iter().sum();
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        counts
            .iter()
            .zip(weights)
            .map(|(&c, &w)| {
                let expected = n as f64 * f64::from(w) / total;
                (c as f64 - expected).powi(2) / expected
            })
            .sum()
    }

    fn sample(weights: &[u32], seed: u64, n: usize) -> Vec<usize> {
        let ids = ids(weights.len());
        let balancer = WeightedRandom::new(&Snapshot {
            seed: Some(seed),
            ..Snapshot::uniform(weights, &ids)
        });
        count(
            (0..n).map(|_| balancer.pick(&cx(weights.len(), &Idle))),
            weights.len(),
        )
    }

    #[test]
    fn weights_5_1_1_are_drawn_in_proportion() {
        let counts = sample(&[5, 1, 1], 1, 70_000);
        assert!(chi2(&counts, &[5, 1, 1]) < chi2_bound(2.0), "{counts:?}");
    }

    #[test]
    fn the_bound_catches_a_wrong_distribution() {
        // Uniform counts are far outside the χ² bound for weights 5, 1, 1.
        assert!(chi2(&[1000, 1000, 1000], &[5, 1, 1]) > chi2_bound(2.0));
    }

    #[test]
    fn every_column_sums_to_its_weight() {
        let weights = [7, 0, 3, 1, 9];
        let table = alias_table(&weights);
        let n = table.len() as f64;
        let mut mass = [0f64; 5];
        for column in table.iter() {
            let keep = column.keep as f64 / u64::MAX as f64;
            mass[column.instance] += keep / n;
            mass[column.alias] += (1.0 - keep) / n;
        }
        for (m, w) in mass.iter().zip(weights) {
            assert!((m - f64::from(w) / 20.0).abs() < 1e-9, "{mass:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_weights_are_drawn_within_the_chi_square_bound(
            weights in prop::collection::vec(1u32..=50, 2..10),
            seed in any::<u64>(),
        ) {
            let counts = sample(&weights, seed, 40_000);
            let bound = chi2_bound((weights.len() - 1) as f64);
            let statistic = chi2(&counts, &weights);
            prop_assert!(statistic < bound, "χ² = {statistic} ≥ {bound}: {counts:?}");
        }
    }
}
