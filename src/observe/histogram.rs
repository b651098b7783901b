//! A log-scaled histogram of durations in nanoseconds, recorded with relaxed
//! atomic adds from any thread and read as quantiles.
//!
//! Buckets: values 0..4 exactly, then four buckets per power of two (the two
//! bits after the leading one), so a quantile is off by at most a quarter of
//! its value; the maximum is kept exactly. 252 buckets cover all of `u64`.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// See the module docs. Every counter is relaxed: each is a tally that no
/// other memory depends on, and a reader takes a snapshot that may be a few
/// samples behind.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        // Under loom (whose models record a lag or two) one bucket per
        // power of two would do; loom tracks a bounded number of atomics per
        // execution, so the models' histograms have only the first buckets.
        let buckets = if cfg!(loom) { 8 } else { BUCKETS };
        Self {
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Adds one sample of `nanos`.
    pub(crate) fn record(&self, nanos: u64) {
        let bucket = index(nanos).min(self.buckets.len() - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(nanos, Ordering::Relaxed);
    }

    /// How many samples were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The largest sample (zero if none).
    pub(crate) fn max(&self) -> Duration {
        Duration::from_nanos(self.max.load(Ordering::Relaxed))
    }

    /// The smallest bucket bound that at least `q` of the samples are at or
    /// under (capped at the maximum); zero if there are none.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let max = self.max.load(Ordering::Relaxed);
                return Duration::from_nanos(upper_bound(i).min(max));
            }
        }
        self.max()
    }
}

/// The bucket of `value`.
fn index(value: u64) -> usize {
    if value < SUB as u64 {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let sub = (value >> (exponent - SUB_BITS)) as usize & (SUB - 1);
    SUB + (exponent - SUB_BITS) as usize * SUB + sub
}

/// The largest value in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = ((i - SUB) / SUB) as u32;
    let sub = ((i - SUB) % SUB) as u64;
    let next = (SUB as u64 + sub + 1) as u128;
    ((next << shift) - 1).min(u64::MAX as u128) as u64
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_value_lies_within_its_bucket() {
        for value in (0..4096).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(value);
            assert!(value <= upper_bound(i), "{value} in bucket {i}");
            assert!(
                i == 0 || value > upper_bound(i - 1),
                "{value} in bucket {i}"
            );
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_are_within_a_quarter() {
        let histogram = Histogram::new();
        for micros in 1..=100 {
            histogram.record(micros * 1_000);
        }
        let p50 = histogram.quantile(0.5).as_nanos() as f64;
        assert!((50_000.0..=62_500.0).contains(&p50), "{p50}");
        assert_eq!(histogram.quantile(1.0), Duration::from_micros(100));
        assert_eq!(histogram.max(), Duration::from_micros(100));
        assert_eq!(histogram.count(), 100);
        assert_eq!(Histogram::new().quantile(0.99), Duration::ZERO);
    }
}
