//! Loop lag: what CPU-bound work does to an async event loop, and what
//! `offload` does about it.
//!
//! ```text
//! cargo run --release --example loop_lag
//! ```
//!
//! A current-thread tokio runtime runs a 1 ms ticker: a task that wakes on a
//! fixed schedule and records how late each wake-up was (actual time minus
//! scheduled time; missed ticks are fired in a burst, so a stall of 30 ms
//! shows up as 30 late ticks). Meanwhile the same loop handles a batch of
//! 4 × cores CPU jobs, each a fixed number of iterations of a hash loop
//! (calibrated once at startup to about 30 ms, then identical in every mode),
//! in one of three ways:
//!
//! - **inline on the loop**: the jobs are computed by a task on the loop, one
//!   after another (yielding in between, as a server would between requests);
//! - **tokio spawn_blocking**: each job goes to tokio's blocking thread pool,
//!   which starts one thread per job that is waiting;
//! - **offload Pool::spawn**: each job goes to an `offload::Pool` with its
//!   default one worker per core, and the loop awaits the returned Tasks.
//!
//! A first row runs the ticker with no jobs at all: the timer's own floor
//! (tokio's timer has a 1 ms resolution, so sub-millisecond lags are noise).
//!
//! # Reading the table
//!
//! - **worst lag / p99 lag**: the largest and the 99th-percentile tick lateness
//!   over all rounds. This is how long any other request on that loop would
//!   have waited. Inline, it is about one whole job.
//! - **makespan**: time from the first submission until every job is done
//!   (median over the rounds), and **× ideal**, its ratio to the total
//!   single-threaded work divided by the number of cores. 1.00 is perfect
//!   parallel speed-up; inline on the loop cannot do better than `cores`.
//! - **CPU s**: user + system CPU time the whole process used during one round
//!   (median), from `getrusage`. Compare it with the work itself (jobs × job
//!   time): anything above that is overhead (spinning, context switches).
//! - **watch worst / watch p99**: the same loop's lag as an
//!   `offload::LoopWatch` at the ticker's period measures it (how long the
//!   loop took to poll it after a wake-up): the worst over all rounds, and
//!   the median of the rounds' p99s. The watch samples once per answered
//!   wake-up, where the ticker counts every missed tick of a stall (30 late
//!   ticks for a 30 ms stall), so their worst lags agree and their p99s
//!   need not. The watch adds one wake-up per period to the loop, so its
//!   CPU is in the CPU column too.
//!
//! Under the table come a short legend, a one-line verdict (offload's p99
//! lag against `spawn_blocking`'s and inline's, from the watch's
//! microsecond figures), and a warning when the machine was busy: a 1-minute
//! load average above half the cores before the run, or an idle loop whose
//! p99 lag was far above its quiet value of about 0.1 ms. A busy machine
//! inflates every row; it is not a defect of any of them.

use std::error::Error;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

#[path = "support/mod.rs"]
mod support;

use support::machine::{cpu_time, load_average_1m};
use support::stats::worst_and_p99;
use support::work::hash_job;

/// The ticker's period.
const TICK: Duration = Duration::from_millis(1);
/// How long one job should take on one core, roughly.
const TARGET_JOB_TIME: Duration = Duration::from_millis(30);
/// Jobs per batch, per core.
const JOBS_PER_CORE: usize = 4;
/// Batches per mode; the modes take turns, round after round.
const ROUNDS: usize = 15;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// The iteration count that makes one job take about [`TARGET_JOB_TIME`],
/// and the measured single-threaded time of one such job (median of 5).
fn calibrate() -> (u64, Duration) {
    let time = |iters| {
        let start = Instant::now();
        black_box(hash_job(black_box(0), iters));
        start.elapsed()
    };
    let mut iters: u64 = 1 << 16;
    let mut elapsed = time(iters);
    while elapsed < Duration::from_millis(10) {
        iters *= 2;
        elapsed = time(iters);
    }
    let scale = TARGET_JOB_TIME.as_secs_f64() / elapsed.as_secs_f64();
    let iters = (iters as f64 * scale) as u64;
    let mut samples: Vec<Duration> = (0..5).map(|_| time(iters)).collect();
    samples.sort();
    (iters, samples[samples.len() / 2])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    Inline,
    SpawnBlocking,
    Offload,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Idle, Mode::Inline, Mode::SpawnBlocking, Mode::Offload];

    fn label(self) -> &'static str {
        match self {
            Mode::Idle => "(no jobs: timer floor)",
            Mode::Inline => "inline on the loop",
            Mode::SpawnBlocking => "tokio spawn_blocking",
            Mode::Offload => "offload Pool::spawn",
        }
    }
}

/// What one batch measured.
struct Round {
    lateness: Vec<Duration>,
    /// The same loop's lag as an `offload::LoopWatch` measured it.
    watched: offload::LoopStats,
    makespan: Duration,
    cpu: Option<Duration>,
    checksum: u64,
}

/// Everything a batch needs to know.
#[derive(Clone)]
struct Setup {
    pool: offload::Pool,
    jobs: u64,
    iters: u64,
    /// How long the no-jobs round lasts.
    idle_time: Duration,
}

/// Ticks every [`TICK`] until `stop` is set; returns each tick's lateness.
async fn ticker(stop: Arc<AtomicBool>) -> Vec<Duration> {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut lateness = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // With `Burst`, `tick` returns the scheduled time, not the actual one.
        let scheduled = interval.tick().await;
        lateness.push(scheduled.elapsed());
    }
    lateness
}

/// Runs the batch of jobs the way `mode` says; returns the XOR of the results.
async fn run_jobs(mode: Mode, setup: &Setup) -> Result<u64> {
    let iters = setup.iters;
    let mut checksum = 0;
    match mode {
        Mode::Idle => tokio::time::sleep(setup.idle_time).await,
        Mode::Inline => {
            for seed in 0..setup.jobs {
                checksum ^= hash_job(seed, iters);
                tokio::task::yield_now().await;
            }
        }
        Mode::SpawnBlocking => {
            let handles: Vec<_> = (0..setup.jobs)
                .map(|seed| tokio::task::spawn_blocking(move || hash_job(seed, iters)))
                .collect();
            for handle in handles {
                checksum ^= handle.await?;
            }
        }
        Mode::Offload => {
            let tasks: Vec<_> = (0..setup.jobs)
                .map(|seed| setup.pool.spawn(move || hash_job(seed, iters)))
                .collect();
            for task in tasks {
                checksum ^= task.await?;
            }
        }
    }
    Ok(checksum)
}

/// One batch in `mode`, with the ticker running alongside on the same loop.
async fn run_round(mode: Mode, setup: &Setup) -> Result<Round> {
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn(ticker(Arc::clone(&stop)));
    // A watch at the ticker's period, beside it; it reports nothing here.
    let watch = offload::LoopWatch::new(Duration::from_secs(10))
        .period(TICK)
        .on_stall(|_| {});
    let watched = watch.stats();
    let watching = tokio::spawn(watch);
    // Let the ticker take its first (immediate) tick before the jobs start.
    tokio::task::yield_now().await;

    let cpu_before = cpu_time();
    let start = Instant::now();
    // The jobs are driven by a task of their own, as a request handler would be.
    let setup = setup.clone();
    let checksum = tokio::spawn(async move { run_jobs(mode, &setup).await }).await??;
    let makespan = start.elapsed();
    let cpu_after = cpu_time();

    stop.store(true, Ordering::Relaxed);
    let lateness = ticker.await?;
    watching.abort();
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
    Ok(Round {
        lateness,
        watched,
        makespan,
        cpu,
        checksum,
    })
}

fn median(mut values: Vec<Duration>) -> Option<Duration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A lag to the precision it was measured with: microseconds below 1 ms.
fn lag(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        ms(d)
    }
}

/// The figures of one row that the verdict and the busy-machine check read.
struct RowLag {
    /// The ticker's p99 lateness over every round.
    ticker_p99: Duration,
    /// The median of the rounds' p99 lags as the watch measured them.
    watch_p99: Duration,
}

/// Prints one table row from all rounds of one mode.
fn print_row(mode: Mode, rounds: &[Round], ideal: Duration) -> RowLag {
    let (worst, p99) = worst_and_p99(rounds.iter().flat_map(|r| r.lateness.iter().copied()));

    let (makespan, ratio) = match mode {
        Mode::Idle => ("-".to_string(), "-".to_string()),
        _ => {
            let makespan = median(rounds.iter().map(|r| r.makespan).collect()).unwrap_or_default();
            let ratio = makespan.as_secs_f64() / ideal.as_secs_f64();
            (ms(makespan), format!("{ratio:.2}"))
        }
    };
    let cpu = rounds
        .iter()
        .map(|r| r.cpu)
        .collect::<Option<Vec<_>>>()
        .and_then(median)
        .map_or_else(|| "n/a".to_string(), |c| format!("{:.3}", c.as_secs_f64()));

    // The watch's figures per round: its worst lag over every round, and
    // the median of the rounds' p99s (a watch's histogram stays its own).
    let watch_worst = rounds
        .iter()
        .map(|r| r.watched.lag_max())
        .max()
        .unwrap_or_default();
    let watch_p99 =
        median(rounds.iter().map(|r| r.watched.lag_p99()).collect()).unwrap_or_default();
    println!(
        "{:<24}{:>11}{:>11}{:>12}{:>9}{:>8}{:>12}{:>12}",
        mode.label(),
        ms(worst),
        ms(p99),
        makespan,
        ratio,
        cpu,
        lag(watch_worst),
        lag(watch_p99)
    );
    RowLag {
        ticker_p99: p99,
        watch_p99,
    }
}

/// What the columns mean, printed under the table.
const LEGEND: &str = "\
legend:
  worst lag, p99 lag  how late the loop's 1 ms ticker fired (every missed tick counts):
                      what any other request on this loop would have waited
  makespan, × ideal   time until every job of a batch was done (median), and its
                      ratio to (work / cores); 1.00 is a perfect parallel speed-up
  CPU s               CPU time the whole process used per batch (median); above the
                      work per batch is overhead
  watch worst/p99     the same loop's lag as an offload::LoopWatch times it, to the
                      microsecond (p99: median of the rounds' p99s)";

/// The watch's p99 on an idle loop of a quiet machine is about 0.1 ms; well
/// above it, something else was using the cores during the run.
const QUIET_FLOOR: Duration = Duration::from_micros(500);

/// The one-line verdict, from the watch's p99s (the ticker's are rounded to
/// its 1 ms resolution).
fn verdict(floor: &RowLag, inline: &RowLag, spawn_blocking: &RowLag, offload: &RowLag) -> String {
    let times = |other: Duration| other.as_secs_f64() / offload.watch_p99.as_secs_f64().max(1e-6);
    format!(
        "verdict: offload kept the loop's p99 lag at {} ({:.0}× lower than tokio \
         spawn_blocking's {}, {:.0}× lower than inline's {}); the idle loop's floor is {}",
        lag(offload.watch_p99),
        times(spawn_blocking.watch_p99),
        lag(spawn_blocking.watch_p99),
        times(inline.watch_p99),
        lag(inline.watch_p99),
        lag(floor.watch_p99),
    )
}

/// A warning when the run's figures say more about a busy machine than about
/// the pools: a high load average before the run, or an idle loop that lagged.
fn busy_warning(cores: usize, load_before: Option<f64>, floor: &RowLag) -> Option<String> {
    let mut why = Vec::new();
    if let Some(load) = load_before.filter(|&l| l > 0.5 * cores as f64) {
        why.push(format!(
            "the 1-minute load average was {load:.2} on {cores} cores before the run"
        ));
    }
    if floor.watch_p99 > QUIET_FLOOR {
        why.push(format!(
            "the idle loop's p99 lag was {} (about 0.1 ms on a quiet machine; ticker p99 {})",
            lag(floor.watch_p99),
            ms(floor.ticker_p99)
        ));
    }
    (!why.is_empty()).then(|| {
        format!(
            "WARNING: the machine was busy during this run: {}. Other processes took the \
             cores, so every row's lag is inflated; rerun on a quiet machine before \
             reading the figures.",
            why.join("; ")
        )
    })
}

fn main() -> Result<()> {
    let cores = std::thread::available_parallelism()?.get();
    let load_before = load_average_1m();
    let pool = offload::Pool::builder().build()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;

    let (iters, job_time) = calibrate();
    let jobs = JOBS_PER_CORE * cores;
    let ideal = job_time * jobs as u32 / cores as u32;

    println!(
        "machine: {cores} cores; offload pool: {} workers",
        pool.threads()
    );
    println!(
        "jobs: {jobs} per batch, each {:.1} M iterations of a hash loop = {} single-threaded",
        iters as f64 / 1e6,
        ms(job_time)
    );
    println!(
        "ideal makespan: {jobs} × {} / {cores} cores = {}; {ROUNDS} rounds per mode, {} ticks",
        ms(job_time),
        ms(ideal),
        ms(TICK)
    );
    println!();

    let setup = Setup {
        pool,
        jobs: jobs as u64,
        iters,
        idle_time: ideal,
    };
    let mut results: Vec<Vec<Round>> = Mode::ALL.iter().map(|_| Vec::new()).collect();
    runtime.block_on(async {
        for _ in 0..ROUNDS {
            for (mode, rounds) in Mode::ALL.into_iter().zip(&mut results) {
                rounds.push(run_round(mode, &setup).await?);
            }
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    })?;

    // Every mode computed the same jobs: their results must agree.
    let mut checksums = Mode::ALL
        .into_iter()
        .zip(&results)
        .filter(|(mode, _)| *mode != Mode::Idle)
        .flat_map(|(_, rounds)| rounds.iter().map(|r| r.checksum));
    let first = checksums.next();
    if checksums.any(|c| Some(c) != first) {
        return Err("the modes computed different results".into());
    }

    println!(
        "{:<24}{:>11}{:>11}{:>12}{:>9}{:>8}{:>12}{:>12}",
        "mode", "worst lag", "p99 lag", "makespan", "× ideal", "CPU s", "watch worst", "watch p99"
    );
    let lags: Vec<RowLag> = Mode::ALL
        .into_iter()
        .zip(&results)
        .map(|(mode, rounds)| print_row(mode, rounds, ideal))
        .collect();
    println!();
    println!(
        "(work per batch: {:.3} CPU s; makespan and CPU s are medians per batch)",
        (job_time * jobs as u32).as_secs_f64()
    );
    println!("{LEGEND}");
    println!();
    let [floor, inline, spawn_blocking, offload] = &lags[..] else {
        unreachable!("one row per mode");
    };
    println!("{}", verdict(floor, inline, spawn_blocking, offload));
    if let Some(warning) = busy_warning(cores, load_before, floor) {
        println!();
        println!("{warning}");
    }
    Ok(())
}
