//! Flow-control micro figures: how soon a running job sees its Task
//! cancelled, what one `offload::is_cancelled()` costs in a hot loop, and
//! what a refused `try_spawn` costs.
//!
//! ```text
//! cargo run --release --example cancel_latency
//! cargo run --release --example cancel_latency -- --trials 2000 --calls 20000000 --refusals 100000 --batches 11
//! ```
//!
//! - **cancellation seen**: a one-worker pool runs a job that spins on
//!   `offload::is_cancelled()` (nothing else in the loop: the best case
//!   of a job that looks often) and records `Instant::now()` the moment it
//!   sees `true`. The submitting thread waits until the job is in its loop,
//!   pauses 1 to 5 µs, records the instant just before it drops the `Task`
//!   (or calls `Task::cancel`), and spins until the job has answered. The
//!   figure is the difference: the cost of the drop or `cancel` call, the
//!   cache line's trip to the worker's core, and one loop iteration.
//!   Median, p99 and max over `--trials` trials of each.
//! - **is_cancelled() in a hot loop**: inside a job, `--calls` iterations
//!   of an empty loop (`black_box(i)`), and of the same loop that also
//!   checks `is_cancelled()` and breaks on `true`; time per iteration,
//!   median of `--batches` batches, and the difference: what one call adds.
//! - **try_spawn refused**: a one-worker pool with `max_queued(1)`, its
//!   worker held by a job that waits on a channel and its one slot taken,
//!   so every `try_spawn` is refused. Time per refused call (the closure
//!   captures 40 bytes and comes back in the error, which is dropped),
//!   median of `--batches` batches of `--refusals` calls; and the heap
//!   allocations the refusing thread made over all of them, counted per
//!   thread by a counting global allocator as `tests/allocations.rs`
//!   counts (the goal is none).
//!
//! Spinning needs two free cores (the submitter and the worker); on a
//! busy machine the tails (p99, max) include preemptions. The load
//! average is printed at the start and at the end.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::error::Error;
use std::hint::{black_box, spin_loop};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[path = "support/mod.rs"]
mod support;

use support::args::Args;
use support::machine;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// The goals: a dropped Task seen within this (median) ...
const GOAL_SEEN: Duration = Duration::from_micros(10);
/// ... and a refused `try_spawn` costing at most this.
const GOAL_REFUSAL_NS: f64 = 100.0;

const USAGE: &str = "\
usage: cancel_latency [--trials N] [--calls N] [--refusals N] [--batches N]
  --trials N     cancellation trials, each for drop and for cancel() (default 2000)
  --calls N      loop iterations per is_cancelled() batch (default 20000000)
  --refusals N   refused try_spawn calls per batch (default 100000)
  --batches N    batches for the two costs; the median is reported (default 11)";

// ---- counting allocator -----------------------------------------------------------

/// The system allocator, counting each thread's allocations.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to `System` unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is `System.dealloc`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made so far by the calling thread.
fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// ---- flags ------------------------------------------------------------------------

struct Config {
    trials: usize,
    calls: u64,
    refusals: u64,
    batches: usize,
}

fn parse_args() -> Result<Config> {
    let mut config = Config {
        trials: 2000,
        calls: 20_000_000,
        refusals: 100_000,
        batches: 11,
    };
    let mut args = Args::new(USAGE);
    while let Some(flag) = args.next_flag()? {
        match flag.name.as_str() {
            "--trials" => config.trials = flag.parse()?,
            "--calls" => config.calls = flag.parse()?,
            "--refusals" => config.refusals = flag.parse()?,
            "--batches" => config.batches = flag.parse()?,
            _ => return Err(flag.unknown().into()),
        }
    }
    if config.trials == 0 || config.calls == 0 || config.refusals == 0 || config.batches == 0 {
        return Err(format!("every flag must be positive\n{USAGE}").into());
    }
    Ok(config)
}

// ---- cancellation seen by a running job ----------------------------------------------

#[derive(Clone, Copy)]
enum How {
    Drop,
    Cancel,
}

/// Nanoseconds from just before the drop (or `cancel`) to the job's first
/// `true` from `is_cancelled()`, one per trial.
fn cancellation_seen(pool: &offload::Pool, trials: usize, how: How) -> Result<Histogram<u64>> {
    let mut seen_after = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
    let epoch = Instant::now();
    let nanos = move || u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    for trial in 0..trials {
        let started = Arc::new(AtomicBool::new(false));
        // The job's instant, plus one (zero: not seen yet).
        let seen = Arc::new(AtomicU64::new(0));
        let task = {
            let (started, seen) = (Arc::clone(&started), Arc::clone(&seen));
            pool.spawn(move || {
                started.store(true, Ordering::Release);
                let mut spins = 0u64;
                while !offload::is_cancelled() {
                    spins = black_box(spins + 1);
                }
                seen.store(nanos() + 1, Ordering::Release);
                spins
            })
        };
        while !started.load(Ordering::Acquire) {
            spin_loop();
        }
        // Let the job settle into its loop; vary the phase a little.
        let pause = Instant::now();
        let pause_for = Duration::from_micros(1 + (trial % 5) as u64);
        while pause.elapsed() < pause_for {
            spin_loop();
        }
        let before = nanos();
        let kept = match how {
            How::Drop => {
                drop(task);
                None
            }
            How::Cancel => {
                task.cancel();
                Some(task)
            }
        };
        let at = loop {
            match seen.load(Ordering::Acquire) {
                0 => spin_loop(),
                at => break at - 1,
            }
        };
        seen_after.saturating_record(at.saturating_sub(before).max(1));
        if let Some(task) = kept {
            // Cancelled while running: it resolves to what the job returned.
            // (The dropped Task's job finishes on its own, just as soon.)
            task_result(task)?;
        }
    }
    Ok(seen_after)
}

/// `task`'s output, which must be the job's own (it saw the request).
fn task_result<T>(task: offload::Task<T>) -> Result<T> {
    task.wait()
        .map_err(|e| format!("the job did not return: {e}").into())
}

// ---- is_cancelled() in a hot loop -------------------------------------------------------

/// Medians of nanoseconds per iteration: the empty loop, the loop with the
/// check. Measured inside a job, where `is_cancelled` has a Task to read.
fn is_cancelled_cost(pool: &offload::Pool, calls: u64, batches: usize) -> Result<(f64, f64)> {
    let task = pool.spawn(move || {
        let mut empty = Vec::with_capacity(batches);
        let mut checked = Vec::with_capacity(batches);
        for _ in 0..batches {
            let start = Instant::now();
            for i in 0..calls {
                black_box(i);
            }
            empty.push(start.elapsed().as_secs_f64() * 1e9 / calls as f64);

            let start = Instant::now();
            let mut done = 0;
            for i in 0..calls {
                black_box(i);
                if offload::is_cancelled() {
                    break;
                }
                done += 1;
            }
            checked.push(start.elapsed().as_secs_f64() * 1e9 / calls as f64);
            assert_eq!(done, calls, "nobody cancelled this job");
        }
        (median(empty), median(checked))
    });
    task_result(task)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// ---- try_spawn refused ------------------------------------------------------------------

/// What the refusals measured.
struct Refusals {
    /// Nanoseconds per refused call: median, fastest and slowest batch.
    median_ns: f64,
    min_ns: f64,
    max_ns: f64,
    /// Heap allocations the refusing thread made over every batch.
    allocations: usize,
    calls: u64,
}

fn refusal_cost(refusals: u64, batches: usize) -> Result<Refusals> {
    // Detection off: a helper would otherwise run the queued job while the
    // blocker sits in `recv`, and the slot would be free again.
    let pool = offload::Pool::builder()
        .threads(1)
        .max_queued(1)
        .detect_blocking(false)
        .build()?;
    let (release, gate) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel();
    let blocker = pool.spawn(move || {
        started_tx.send(()).expect("the main thread waits for it");
        gate.recv().expect("the main thread releases it");
    });
    started.recv()?; // the worker is held; the queue is empty
    let queued = pool
        .try_spawn(|| 0u64)
        .map_err(|_| "the one slot was free")?;

    // A job as a server would submit one: a closure of a few words.
    let payload = [7u64; 4];
    let refuse = |i: u64| match pool.try_spawn(move || payload[0] ^ i) {
        Err(refused) if refused.is_full() => {
            let job = refused.into_inner();
            black_box(&job);
            true
        }
        Err(_) => false,
        Ok(task) => {
            task.detach();
            false
        }
    };
    // Warm up.
    for i in 0..1000 {
        refuse(i);
    }
    let mut per_call = Vec::with_capacity(batches);
    let mut unexpected = 0u64;
    let before = allocations();
    for _ in 0..batches {
        let start = Instant::now();
        for i in 0..refusals {
            if !refuse(black_box(i)) {
                unexpected += 1;
            }
        }
        per_call.push(start.elapsed().as_secs_f64() * 1e9 / refusals as f64);
    }
    // `per_call` was allocated up front, so this counts the refusals alone.
    let allocations = allocations() - before;

    release.send(())?;
    task_result(blocker)?;
    task_result(queued)?;
    pool.shutdown();
    if unexpected > 0 {
        return Err(format!("{unexpected} try_spawn calls were not refused as full").into());
    }
    let min_ns = per_call.iter().copied().fold(f64::INFINITY, f64::min);
    let max_ns = per_call.iter().copied().fold(0.0, f64::max);
    Ok(Refusals {
        median_ns: median(per_call),
        min_ns,
        max_ns,
        allocations,
        calls: refusals * batches as u64,
    })
}

// ---- report -----------------------------------------------------------------------------

/// Nanoseconds, in the unit that suits them.
fn fmt_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn main() -> Result<()> {
    let config = parse_args()?;
    let cores = machine::cores()?;
    println!("flow-control micro figures (examples/cancel_latency.rs)");
    println!(
        "machine: {cores} cores; load average at start: {}",
        machine::load_average()
    );
    println!();

    let pool = offload::Pool::builder().threads(1).build()?;
    // Warm the worker up (thread start, first Task).
    task_result(pool.spawn(|| 0))?;

    println!(
        "cancellation seen by a running job, from just before the call ({} trials each)",
        config.trials
    );
    println!("  {:<42}{:>10}{:>10}{:>10}", "", "median", "p99", "max");
    let mut medians = Vec::new();
    for (how, label) in [(How::Drop, "Task dropped"), (How::Cancel, "Task::cancel()")] {
        let seen = cancellation_seen(&pool, config.trials, how)?;
        let median = seen.value_at_quantile(0.5);
        medians.push((label, median));
        println!(
            "  {:<42}{:>10}{:>10}{:>10}",
            label,
            fmt_ns(median),
            fmt_ns(seen.value_at_quantile(0.99)),
            fmt_ns(seen.max())
        );
    }
    println!();

    let (empty, checked) = is_cancelled_cost(&pool, config.calls, config.batches)?;
    pool.shutdown();
    println!(
        "is_cancelled() in a job's hot loop ({} M iterations, median of {} batches)",
        config.calls as f64 / 1e6,
        config.batches
    );
    println!("  {:<42}{:>10.2} ns/iteration", "empty loop", empty);
    println!(
        "  {:<42}{:>10.2} ns/iteration",
        "loop + is_cancelled()", checked
    );
    println!(
        "  {:<42}{:>10.2} ns",
        "one call (the difference)",
        checked - empty
    );
    println!();

    let refusals = refusal_cost(config.refusals, config.batches)?;
    println!(
        "try_spawn refused on a full queue ({} calls × {} batches)",
        config.refusals, config.batches
    );
    println!(
        "  {:<42}{:>10.1} ns (batches from {:.1} to {:.1})",
        "per refused call, median", refusals.median_ns, refusals.min_ns, refusals.max_ns
    );
    println!(
        "  {:<42}{:>10} over {} refusals",
        "heap allocations on the refusing thread", refusals.allocations, refusals.calls
    );
    println!();

    let goal_seen = u64::try_from(GOAL_SEEN.as_nanos()).unwrap_or(u64::MAX);
    println!("goals:");
    for (label, median) in medians {
        println!(
            "  {label} seen within {} (median): {} ({})",
            fmt_ns(goal_seen),
            if median <= goal_seen {
                "met"
            } else {
                "NOT met"
            },
            fmt_ns(median)
        );
    }
    println!(
        "  try_spawn refusal ≤ {GOAL_REFUSAL_NS} ns and no allocation: {} ({:.1} ns, {} allocations)",
        if refusals.median_ns <= GOAL_REFUSAL_NS && refusals.allocations == 0 {
            "met"
        } else {
            "NOT met"
        },
        refusals.median_ns,
        refusals.allocations
    );
    println!(
        "  is_cancelled() a few ns: {:.2} ns per call",
        checked - empty
    );
    println!();
    println!("load average at the end: {}", machine::load_average());
    Ok(())
}
