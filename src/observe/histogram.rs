//! Log-scaled histograms of durations: [`Recorder`], the counters a pool
//! writes, and [`Histogram`], the merged snapshot it hands out.
//!
//! A value `v` (nanoseconds) falls in one of [`BUCKETS`] buckets: each
//! power of two is split in four, so a bucket's width is at most a quarter
//! of its lower bound, and values below 8 ns have a bucket each. A
//! quantile is reported as the largest value of its bucket (at most 25%
//! above the true one), and never above the largest value recorded.

use std::fmt;
use std::time::Duration;

use crate::sync::{Ordering, StatCounter};

/// Sub-buckets per power of two, as a shift.
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for every `u64`.
pub(crate) const BUCKETS: usize = ((64 - SUB_BITS as usize) + 1) * SUB as usize;

/// The bucket of `value`.
#[inline]
fn bucket(value: u64) -> usize {
    if value < 2 * SUB {
        return value as usize;
    }
    let exp = 63 - value.leading_zeros(); // >= SUB_BITS + 1
    let sub = (value >> (exp - SUB_BITS)) & (SUB - 1);
    ((exp - SUB_BITS) as usize) * SUB as usize + SUB as usize + sub as usize
}

/// The largest value of bucket `index`.
fn bucket_max(index: usize) -> u64 {
    let index = index as u64;
    if index < 2 * SUB {
        return index;
    }
    let exp = u32::try_from(index / SUB - 1).expect("bucket index") + SUB_BITS;
    let sub = index % SUB;
    let width = 1u64 << (exp - SUB_BITS);
    // The last bucket ends at u64::MAX.
    ((SUB + sub) << (exp - SUB_BITS)).saturating_add(width - 1)
}

/// Adds `n` to `counter`, which only this thread writes if `own`: a plain
/// load and store then, without a locked instruction. Returns the value
/// before.
#[inline]
pub(crate) fn bump(counter: &StatCounter, own: bool, n: u64) -> u64 {
    if own {
        // Relaxed: a statistic; one writer, whose earlier stores this
        // thread saw (its own, or the previous writer's before a hand-over
        // that synchronised).
        let value = counter.load(Ordering::Relaxed);
        counter.store(value.wrapping_add(n), Ordering::Relaxed);
        value
    } else {
        // Relaxed: a statistic.
        counter.fetch_add(n, Ordering::Relaxed)
    }
}

/// The recording side of one histogram: relaxed counters, written by one
/// thread at a time (`own`) or by any (shared).
pub(crate) struct Recorder {
    buckets: Box<[StatCounter; BUCKETS]>,
    sum: StatCounter,
    max: StatCounter,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| StatCounter::new(0))),
            sum: StatCounter::new(0),
            max: StatCounter::new(0),
        }
    }

    /// Records `nanos`.
    pub(crate) fn record(&self, nanos: u64, own: bool) {
        bump(&self.buckets[bucket(nanos)], own, 1);
        bump(&self.sum, own, nanos);
        if own {
            // Relaxed: a statistic, one writer (see `bump`).
            if nanos > self.max.load(Ordering::Relaxed) {
                self.max.store(nanos, Ordering::Relaxed);
            }
        } else {
            // Relaxed: a statistic.
            self.max.fetch_max(nanos, Ordering::Relaxed);
        }
    }

    /// Adds this recorder's counts to `into`.
    pub(crate) fn merge_into(&self, into: &mut Histogram) {
        for (total, bucket) in into.buckets.iter_mut().zip(self.buckets.iter()) {
            // Relaxed: a snapshot.
            let n = bucket.load(Ordering::Relaxed);
            *total += n;
            into.count += n;
        }
        // Relaxed: a snapshot.
        into.sum = into.sum.saturating_add(self.sum.load(Ordering::Relaxed));
        into.max = into.max.max(self.max.load(Ordering::Relaxed));
    }
}

/// A distribution of durations, log-scaled: a part of [`Metrics`](crate::Metrics)
/// ([`queue_wait`](crate::Metrics::queue_wait) and
/// [`run_time`](crate::Metrics::run_time)).
///
/// Each power of two of nanoseconds is split in four buckets, so a
/// quantile is exact to within 25%: it is reported as the largest value of
/// the bucket it falls in, and never above [`max`](Histogram::max), which
/// is exact, as are [`count`](Histogram::count) and
/// [`mean`](Histogram::mean). An empty histogram reports zero everywhere.
///
/// ```
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// pool.spawn(|| std::thread::sleep(std::time::Duration::from_millis(2)))
///     .wait()
///     .unwrap();
/// let run = pool.metrics().run_time().clone();
/// assert_eq!(run.count(), 1); // a fresh pool times its first job
/// assert!(run.p50() >= std::time::Duration::from_millis(2));
/// assert!(run.p50() <= run.p99() && run.p99() <= run.max());
/// assert!(!run.is_empty() && run.mean() <= run.max());
/// assert!(run.quantile(0.9) <= run.max());
/// pool.shutdown();
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: Box<[u64; BUCKETS]>,
    count: u64,
    sum: u64,
    max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: Box::new([0; BUCKETS]),
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    /// The durations recorded since `earlier`, a histogram of the same
    /// recorder taken before (see [`Metrics::since`](crate::Metrics::since)):
    /// bucket counts, count and sum subtract; the maximum becomes the
    /// upper edge of the highest non-empty bucket, capped at `self`'s.
    pub(crate) fn since(&self, earlier: &Histogram) -> Histogram {
        let mut interval = Histogram::new();
        let mut highest = None;
        for (index, (now, before)) in self.buckets.iter().zip(earlier.buckets.iter()).enumerate() {
            let n = now.saturating_sub(*before);
            interval.buckets[index] = n;
            if n != 0 {
                highest = Some(index);
            }
        }
        interval.count = interval.buckets.iter().sum();
        interval.sum = self.sum.saturating_sub(earlier.sum);
        interval.max = highest.map_or(0, |index| bucket_max(index).min(self.max));
        interval
    }

    /// How many durations were recorded.
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether no duration was recorded.
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The median (see [`quantile`](Histogram::quantile)).
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn p50(&self) -> Duration {
        self.quantile(0.5)
    }

    /// The 99th percentile (see [`quantile`](Histogram::quantile)).
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// The largest duration recorded, exact.
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max)
    }

    /// The mean duration, exact (up to the nanosecond).
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn mean(&self) -> Duration {
        Duration::from_nanos(self.sum.checked_div(self.count).unwrap_or(0))
    }

    /// The duration below or at which a fraction `q` (0.0 to 1.0, clamped)
    /// of the recorded ones fall: the smallest bucket that holds the
    /// `⌈q × count⌉`th duration, reported as that bucket's largest value
    /// (at most 25% above the true quantile) and at most
    /// [`max`](Histogram::max). Zero if the histogram is empty.
    ///
    /// See the example on [`Histogram`].
    #[must_use]
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the quantile, 1-based, at least the first.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(bucket_max(index).min(self.max));
            }
        }
        self.max()
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("p50", &self.p50())
            .field("p99", &self.p99())
            .field("max", &self.max())
            .field("mean", &self.mean())
            .finish()
    }
}

/// `p50 1.2µs, p99 40µs, max 1.1ms (n = 312)`.
impl fmt::Display for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1?}, p99 {:.1?}, max {:.1?} (n = {})",
            self.p50(),
            self.p99(),
            self.max(),
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = None;
        for value in (0..4096).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let index = bucket(value);
            assert!(index < BUCKETS, "{value}");
            assert!(value <= bucket_max(index), "{value} above its bucket");
            assert!(index == 0 || value > bucket_max(index - 1), "{value}");
            if let Some(last) = last {
                assert!(index >= last);
            }
            last = Some(index);
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_max(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn a_bucket_is_at_most_a_quarter_wide() {
        for index in 8..BUCKETS {
            let lo = bucket_max(index - 1) + 1;
            let hi = bucket_max(index);
            assert!((hi - lo) <= lo / 4, "bucket {index}: {lo}..={hi}");
        }
    }

    #[test]
    fn quantiles_of_known_values() {
        let recorder = Recorder::new();
        for nanos in 1..=1000u64 {
            recorder.record(nanos * 1000, true);
        }
        let mut h = Histogram::new();
        recorder.merge_into(&mut h);
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(h.mean(), Duration::from_nanos(500_500));
        let p50 = h.p50().as_nanos() as f64;
        assert!((500_000.0..=625_000.0).contains(&p50), "{p50}");
        let p99 = h.p99().as_nanos() as f64;
        assert!((990_000.0..=1_000_000.0).contains(&p99), "{p99}");
        assert_eq!(h.quantile(0.0), h.quantile(0.000_1));
        assert_eq!(h.quantile(1.0), h.max());
        assert_eq!(Histogram::new().p99(), Duration::ZERO);
    }
}
