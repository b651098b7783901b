//! The per-Task cost of the service options, in one run on one pool size:
//! `metrics_sample_every(64)` (the default) against `(1)` (every Task
//! timed), and, when built with `--features tracing`, the span capture
//! (no subscriber installed: the cost every user of the feature pays).
//!
//!     cargo run --release --example spawn_cost
//!     cargo run --release --example spawn_cost --features tracing
//!
//! Each round spawns `BATCH` empty jobs from this thread and waits for all
//! of them; it prints the median over `ROUNDS` rounds of the time per job.

use std::time::{Duration, Instant};

use offload::Pool;

const BATCH: usize = 10_000;
const ROUNDS: usize = 31;

fn per_job(pool: &Pool) -> Duration {
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let tasks: Vec<_> = (0..BATCH).map(|i| pool.spawn(move || i)).collect();
            for task in tasks {
                std::hint::black_box(task.wait().unwrap());
            }
            start.elapsed() / BATCH as u32
        })
        .collect();
    rounds.sort_unstable();
    rounds[ROUNDS / 2]
}

fn main() {
    let threads = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    println!(
        "{threads} threads, {BATCH} jobs per round, median of {ROUNDS} rounds; tracing feature {}",
        if cfg!(feature = "tracing") {
            "on"
        } else {
            "off"
        }
    );
    for every in [64, 1, 64, 1] {
        let pool = Pool::builder()
            .threads(threads)
            .metrics_sample_every(every)
            .build()
            .expect("build the pool");
        per_job(&pool); // warm up
        println!("sample every {every:>2}: {:?} per job", per_job(&pool));
    }
}
