//! Batch wake-up: how often two jobs submitted together to an idle-ish
//! 2-thread pool run one after the other instead of in parallel.
//!
//! ```text
//! cargo run --release --example batch_wakeup [-- TRIALS]
//! ```
//!
//! Each trial submits a very short job S (about 20 µs of spinning), waits a
//! few µs (0, 10, 30 or 60, round-robin), so that one worker is finishing S
//! while the other spins or goes to sleep, then submits two jobs J1 and J2 at
//! once from the main thread. Each spins on the CPU for 1.5 ms and records
//! its start and end `Instant`. The trial is **serialized** when one job
//! started at or after the other ended (no slack): the pool ran them one
//! after the other although it has two threads. Between trials the main
//! thread sleeps 0, 50 µs or 1 ms (round-robin, coprime with the offsets) so
//! the workers are caught at different stages of going idle.
//!
//! The same trials run on an `offload` pool (2 threads, `Inherit` priority,
//! results through `Task::wait`) and on a 2-thread rayon pool (`spawn` plus
//! a std channel). **makespan** is from just before J1 is submitted until the
//! later of the two ends, in µs (median and 99th percentile). A serialized
//! trial costs about one extra job (1.5 ms). **same thread** counts the
//! serialized trials in which one worker ran both jobs: the signature of a
//! batch stuck behind its taker's job while the other worker sleeps, rather
//! than of the two workers timesharing one core. The
//! race needs a worker to be preempted or slow at the wrong moment, so the
//! figures depend on the machine's load, printed first.

#![forbid(unsafe_code)]

use std::hint::spin_loop;
use std::sync::mpsc;
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

const WORK: Duration = Duration::from_micros(1500);
const SHORT: Duration = Duration::from_micros(20);
const OFFSETS_US: [u64; 4] = [0, 10, 30, 60];
const GAPS_US: [u64; 3] = [0, 50, 1000];

/// A job's start and end, and the thread that ran it.
type Span = (Instant, Instant, ThreadId);

/// Spins on the CPU for `work` and returns when it started and ended.
fn job(work: Duration) -> Span {
    let start = Instant::now();
    while start.elapsed() < work {
        spin_loop();
    }
    (start, Instant::now(), thread::current().id())
}

fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        spin_loop();
    }
}

/// One trial's outcome: when J1 was submitted, and the spans of J1 and J2.
type Outcome = (Instant, Span, Span);

/// Runs `trials` trials with `trial(offset)` and prints one table row.
fn measure(name: &str, trials: usize, mut trial: impl FnMut(Duration) -> Outcome) {
    let mut serialized = 0;
    let mut same_thread = 0;
    let mut makespans = Vec::with_capacity(trials);
    for i in 0..trials {
        let offset = Duration::from_micros(OFFSETS_US[i % OFFSETS_US.len()]);
        let (submitted, a, b) = trial(offset);
        if b.0 >= a.1 || a.0 >= b.1 {
            serialized += 1;
            if a.2 == b.2 {
                same_thread += 1;
            }
        }
        makespans.push(a.1.max(b.1).duration_since(submitted));
        let gap = GAPS_US[i % GAPS_US.len()];
        if gap > 0 {
            thread::sleep(Duration::from_micros(gap));
        }
    }
    makespans.sort_unstable();
    let pct = |p: usize| makespans[(makespans.len() - 1) * p / 100].as_micros();
    println!(
        "{name:<8} {trials:>7} {serialized:>11} {:>12.2} {same_thread:>12} {:>10} {:>9}",
        100.0 * serialized as f64 / trials as f64,
        pct(50),
        pct(99),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let trials: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 2000,
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load1 = load.split_whitespace().next().unwrap_or("?");
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    println!("1-minute load: {load1}   nproc: {nproc}");
    println!("jobs: 2 x {WORK:?} after a {SHORT:?} job; offsets {OFFSETS_US:?} µs; gaps {GAPS_US:?} µs\n");
    println!(
        "{:<8} {:>7} {:>11} {:>12} {:>12} {:>10} {:>9}",
        "pool", "trials", "serialized", "serialized %", "same thread", "median µs", "p99 µs"
    );

    let pool = offload::Pool::builder()
        .threads(2)
        .worker_priority(offload::WorkerPriority::Inherit)
        .build()?;
    measure("offload", trials, |offset| {
        let short = pool.spawn(move || job(SHORT));
        spin_for(offset);
        let submitted = Instant::now();
        let j1 = pool.spawn(move || job(WORK));
        let j2 = pool.spawn(move || job(WORK));
        let (a, b) = (j1.wait().unwrap(), j2.wait().unwrap());
        short.wait().unwrap();
        (submitted, a, b)
    });
    pool.shutdown();

    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build()?;
    measure("rayon", trials, |offset| {
        let (tx, rx) = mpsc::channel();
        let send = |id: usize, work: Duration| {
            let tx = tx.clone();
            move || tx.send((id, job(work))).unwrap()
        };
        pool.spawn(send(0, SHORT));
        spin_for(offset);
        let submitted = Instant::now();
        pool.spawn(send(1, WORK));
        pool.spawn(send(2, WORK));
        let mut spans = [None; 3];
        for _ in 0..3 {
            let (id, span) = rx.recv().unwrap();
            spans[id] = Some(span);
        }
        (submitted, spans[1].unwrap(), spans[2].unwrap())
    });
    Ok(())
}
