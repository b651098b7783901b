//! The examples' CPU work: a multiply-rotate hash loop of a fixed number of
//! iterations (busy work, not a sleep), and the iteration count that makes
//! it take a given time on this machine.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The hash's state before the seed is mixed in (FNV-1a's offset basis).
pub const HASH_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// `n` rounds of a multiply-rotate hash from state `h`, counting from
/// `from`: a job split into chunks hashes as it would in one piece.
pub fn hash_rounds(mut h: u64, from: u64, n: u64) -> u64 {
    for i in from..from + n {
        // `black_box` keeps the loop from being vectorised or folded away.
        h = (h ^ black_box(i))
            .wrapping_mul(0x0100_0000_01b3)
            .rotate_left(17);
    }
    h
}

/// One unit of CPU work: `iters` rounds of the hash, from `seed`.
pub fn hash_job(seed: u64, iters: u64) -> u64 {
    hash_rounds(seed ^ HASH_BASIS, 0, iters)
}

/// The wall-clock time of one job of `iters`.
pub fn job_time(iters: u64) -> Duration {
    let start = Instant::now();
    black_box(hash_job(black_box(0), iters));
    start.elapsed()
}

/// The median wall-clock time of `runs` jobs of `iters`.
pub fn median_job_time(runs: usize, iters: u64) -> Duration {
    let mut samples: Vec<Duration> = (0..runs).map(|_| job_time(iters)).collect();
    samples.sort();
    samples[runs / 2]
}

/// The iteration count that makes one job take about `target` on the
/// calling thread.
///
/// Calibrated with runs of the job's own size, by their median (of 11,
/// refined three times): runs much longer than a scheduler time slice
/// would be preempted on a busy machine and make the jobs too short, and a
/// preemption spoils one sample, not the estimate.
pub fn calibrate(target: Duration) -> u64 {
    let mut iters: u64 = 1 << 10;
    while job_time(iters) < target / 4 {
        iters *= 2;
    }
    for _ in 0..3 {
        let scale = target.as_secs_f64() / median_job_time(11, iters).as_secs_f64().max(1e-9);
        iters = ((iters as f64 * scale) as u64).max(1);
    }
    iters
}
