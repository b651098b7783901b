//! Figures from samples.

use std::time::Duration;

/// The largest of `samples` and their 99th percentile (nearest rank), or
/// zeros where there are none.
pub fn worst_and_p99(samples: impl IntoIterator<Item = Duration>) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = samples.into_iter().collect();
    samples.sort();
    let worst = samples.last().copied().unwrap_or_default();
    let p99_index = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    let p99 = samples.get(p99_index).copied().unwrap_or_default();
    (worst, p99)
}
