//! Latency histograms: the `hdrhistogram` crate (HdrHistogram's Rust port), in microseconds,
//! with three significant digits, behind the few calls the load generator makes.
//!
//! Three significant digits keep every reported value within 0.1 % of the true one, over any
//! range (a 200 µs request and a 10 s stall alike); the histogram grows to the largest value
//! recorded, so a fast run costs a few kilobytes.

use hdrhistogram::Histogram as Hdr;

/// Significant decimal digits kept for every value (relative error at most 10^-3).
const SIGNIFICANT_DIGITS: u8 = 3;
/// Values above this are recorded as this: 2^52 microseconds is over a century, far beyond
/// any request timeout, and within what an auto-resizing HdrHistogram tracks (2^62).
const MAX_VALUE: u64 = 1 << 52;

/// Counts of recorded values (microseconds, for the load generator).
#[derive(Clone)]
pub struct Histogram {
    hdr: Hdr<u64>,
    /// Exact sum, minimum and maximum (HdrHistogram's are those of the buckets).
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
            .field("count", &self.count())
            .field("min", &self.min())
            .field("max", &self.max())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram that grows with the values it records.
    pub fn new() -> Self {
        let hdr = match Hdr::new(SIGNIFICANT_DIGITS) {
            Ok(hdr) => hdr,
            Err(e) => unreachable!("{SIGNIFICANT_DIGITS} significant digits are in 0..=5: {e:?}"),
        };
        Self {
            hdr,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value (a value above 2^52 as 2^52).
    pub fn record(&mut self, value: u64) {
        let value = value.min(MAX_VALUE);
        if self.hdr.record(value).is_err() {
            // Only a failed resize gets here (out of memory); keep the count right.
            self.hdr.saturating_record(value);
        }
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value recorded in `other`.
    pub fn merge(&mut self, other: &Histogram) {
        // Both histograms auto-resize, so `add` cannot run out of range; should it ever, the
        // values are recorded one bucket at a time instead.
        if self.hdr.add(&other.hdr).is_err() {
            for v in other.hdr.iter_recorded() {
                self.hdr
                    .saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.hdr.len()
    }

    /// The smallest value recorded (exact), `None` when empty.
    pub fn min(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.min)
    }

    /// The largest value recorded (exact), `None` when empty.
    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then_some(self.max)
    }

    /// The arithmetic mean (exact), `None` when empty.
    #[allow(clippy::cast_precision_loss)] // a mean of latencies needs no more than 52 bits
    pub fn mean(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.sum as f64 / self.count() as f64)
    }

    /// The value at quantile `q` (0.0 ..= 1.0): the smallest value `v` such that at least `q`
    /// of all values are `<= v`, as HdrHistogram reports it (the highest value equivalent to
    /// the bucket's, so never below the true value), never outside the exact minimum and
    /// maximum. `None` when empty.
    pub fn value_at_quantile(&self, q: f64) -> Option<u64> {
        (self.count() > 0).then(|| {
            self.hdr
                .value_at_quantile(q.clamp(0.0, 1.0))
                .clamp(self.min, self.max)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_range_are_within_a_tenth_of_a_percent() {
        let mut h = Histogram::new();
        for v in 1..=10_000 {
            h.record(v);
        }
        for (q, exact) in [(0.5, 5_000u64), (0.9, 9_000), (0.99, 9_900), (0.999, 9_990)] {
            let got = h.value_at_quantile(q).unwrap();
            assert!(got >= exact, "q {q}: {got} < {exact}");
            assert!(
                got <= exact + exact / 1000,
                "q {q}: {got} too far above {exact}"
            );
        }
        assert_eq!(h.min(), Some(1));
        assert_eq!(h.max(), Some(10_000));
        assert_eq!(h.mean(), Some(5_000.5));
        assert_eq!(h.count(), 10_000);
    }

    #[test]
    fn skewed_distributions_report_the_tail() {
        // 990 fast requests and 10 slow ones: p99 is a fast one, p99.9 a slow one.
        let mut h = Histogram::new();
        for _ in 0..990 {
            h.record(200);
        }
        for _ in 0..10 {
            h.record(1_000_000);
        }
        assert_eq!(h.value_at_quantile(0.99), Some(200));
        let p999 = h.value_at_quantile(0.999).unwrap();
        assert!((1_000_000..=1_001_000).contains(&p999), "{p999}");
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5_000u64 {
            let value = v * v % 100_003;
            if v % 3 == 0 {
                a.record(value);
            } else {
                b.record(value);
            }
            all.record(value);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.min(), all.min());
        assert_eq!(a.max(), all.max());
        assert_eq!(a.mean(), all.mean());
        for q in [0.1, 0.5, 0.75, 0.9, 0.99, 1.0] {
            assert_eq!(a.value_at_quantile(q), all.value_at_quantile(q), "q {q}");
        }
    }

    #[test]
    fn huge_values_saturate_instead_of_failing() {
        let mut h = Histogram::new();
        h.record(u64::MAX);
        assert_eq!(h.count(), 1);
        assert!(h.max().unwrap() >= MAX_VALUE);
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
