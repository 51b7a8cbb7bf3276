//! A log-bucketed latency histogram in the manner of HdrHistogram: constant relative precision
//! over the whole range of `u64`, fixed memory, O(1) recording and cheap merging.
//!
//! Values below [`SUB_BUCKETS`] are counted exactly. Above that, every power-of-two range
//! `[2^e, 2^(e+1))` is split into [`SUB_BUCKETS`] equal buckets, so a bucket's width is at most
//! `1/SUB_BUCKETS` of its lower bound: a reported percentile is never more than 0.8 % above the
//! true value, and never below it.

/// log2 of the number of buckets per power of two.
const SUB_BUCKET_BITS: u32 = 7;
/// Buckets per power of two (128): the precision of every reported value (1/128 < 0.8 %).
pub const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Buckets needed to cover every `u64`: the exact range, then one row per bit above it.
const BUCKETS: usize = (SUB_BUCKETS as usize) * (64 - SUB_BUCKET_BITS as usize + 1);

/// Counts of recorded values (microseconds, for the load generator) by bucket.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram (about 60 KiB of counters).
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value.
    pub fn record(&mut self, value: u64) {
        self.counts[bucket_of(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest value recorded (exact), `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value recorded (exact), `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    /// The arithmetic mean (exact), `None` when empty.
    #[allow(clippy::cast_precision_loss)] // a mean of latencies needs no more than 52 bits
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at quantile `q` (0.0 ..= 1.0): the smallest recorded value `v` such that at
    /// least `q` of all values are `<= v`, rounded up to its bucket's upper bound (and never
    /// above the exact maximum). `q <= 0` gives the exact minimum. `None` when empty.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn value_at_quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if q.is_nan() || q <= 0.0 {
            return Some(self.min);
        }
        // The rank (1-based) of the value we want; ceil so that p50 of [1, 2] is 1, as in the
        // nearest-rank definition. The epsilon keeps 0.99 * 1000 (= 990.000…01 in binary
        // floating point) at rank 990; the clamp absorbs q > 1.
        let rank = ((q * self.count as f64 - 1e-9).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(upper_bound(index).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The bucket that counts `value`.
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        // Exact range: one bucket per value.
        return value as usize;
    }
    let msb = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS here
    let shift = msb - SUB_BUCKET_BITS;
    let mantissa = value >> shift; // in [SUB_BUCKETS, 2 * SUB_BUCKETS)
    // Row `shift` starts at SUB_BUCKETS * (shift + 1); the mantissa's offset in it is
    // mantissa - SUB_BUCKETS, which sums to SUB_BUCKETS * shift + mantissa.
    (SUB_BUCKETS * u64::from(shift) + mantissa) as usize
}

/// The largest value that falls into bucket `index`.
fn upper_bound(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let mantissa = index - SUB_BUCKETS * shift;
    // ((mantissa + 1) << shift) - 1, without overflowing in the last bucket.
    let low = mantissa << shift;
    low + ((1u64 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest value that falls into bucket `index`.
    fn lower_bound(index: usize) -> u64 {
        if index == 0 {
            0
        } else {
            upper_bound(index - 1) + 1
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..SUB_BUCKETS {
            assert_eq!(bucket_of(v), v as usize);
            assert_eq!(upper_bound(v as usize), v);
            h.record(v);
        }
        assert_eq!(h.value_at_quantile(0.5), Some(63));
        assert_eq!(h.value_at_quantile(1.0), Some(127));
    }

    #[test]
    fn buckets_tile_the_whole_range_without_gaps() {
        // Every bucket starts right after the previous one ends, and both ends map back to it.
        for index in 1..BUCKETS {
            let low = lower_bound(index);
            let high = upper_bound(index);
            assert!(low <= high, "bucket {index}: {low} > {high}");
            assert_eq!(bucket_of(low), index, "low end of {index}");
            assert_eq!(bucket_of(high), index, "high end of {index}");
        }
        assert_eq!(upper_bound(BUCKETS - 1), u64::MAX);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn relative_error_is_bounded_by_the_sub_bucket_count() {
        for index in (SUB_BUCKETS as usize)..BUCKETS {
            let low = lower_bound(index);
            let width = upper_bound(index) - low + 1;
            assert!(
                width <= low / SUB_BUCKETS,
                "bucket {index}: width {width} for low {low}"
            );
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range_follow_nearest_rank() {
        let mut h = Histogram::new();
        for v in 1..=10_000 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 5_000u64), (0.9, 9_000), (0.99, 9_900), (0.999, 9_990)] {
            let got = h.value_at_quantile(q).unwrap();
            assert!(got >= exact, "q {q}: {got} < {exact}");
            assert!(
                got <= exact + exact / SUB_BUCKETS,
                "q {q}: {got} too far above {exact}"
            );
        }
        assert_eq!(h.value_at_quantile(0.0), Some(1));
        assert_eq!(h.value_at_quantile(1.0), Some(10_000));
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(10_000));
        assert_eq!(h.mean(), Some(5_000.5));
    }

    #[test]
    fn a_quantile_never_exceeds_the_exact_maximum() {
        let mut h = Histogram::new();
        h.record(1_000_001);
        assert_eq!(h.value_at_quantile(0.5), Some(1_000_001));
        assert_eq!(h.value_at_quantile(0.0), Some(1_000_001));
    }

    #[test]
    fn skewed_distributions_report_the_tail() {
        // 990 fast requests and 10 slow ones: p99 is the last fast one, p99.9 a slow one.
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(200);
        }
        for _ in 0..10 {
            h.record(50_000);
        }
        assert_eq!(h.value_at_quantile(0.99), Some(upper_bound(bucket_of(200))));
        let p999 = h.value_at_quantile(0.999).unwrap();
        assert!(
            (50_000..=50_000 + 50_000 / SUB_BUCKETS).contains(&p999),
            "{p999}"
        );
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5_000u64 {
            let value = v * v % 100_003;
            if v % 3 == 0 {
                a.record(value)
            } else {
                b.record(value)
            }
            all.record(value);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.min(), all.min());
        assert_eq!(a.max(), all.max());
        for q in [0.1, 0.5, 0.75, 0.9, 0.99, 1.0] {
            assert_eq!(a.value_at_quantile(q), all.value_at_quantile(q), "q {q}");
        }
    }

    #[test]
    fn an_empty_histogram_has_no_statistics() {
        let h = Histogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.value_at_quantile(0.5), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.max(), None);
        assert_eq!(h.mean(), None);
        let mut merged = Histogram::new();
        merged.merge(&h);
        assert_eq!(merged.min(), None);
    }
}
