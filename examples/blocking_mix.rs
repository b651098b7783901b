//! Mixed load: blocking calls and CPU jobs submitted together to a small
//! pool. Do the CPU jobs still get the pool's threads while the
//! blocking calls wait, and do the blocking calls wait only for themselves?
//!
//! ```text
//! cargo run --release --example blocking_mix
//! cargo run --release --example blocking_mix -- --rounds 3 --sleepers 100 --sleep-ms 20
//! ```
//!
//! The load: `--sleepers` jobs that each `std::thread::sleep(--sleep-ms)`
//! (standing for a sync HTTP call) and `--cpu-jobs` CPU jobs of `--cpu-ms`
//! each (a hash loop of a fixed number of iterations, calibrated once at
//! start-up: busy work, not a sleep), on pools of `--threads` threads.
//! They are submitted from one thread as fast as it can, interleaved
//! (about 3 sleepers, then 1 CPU job, with the defaults), and the clock
//! starts just before the first submission. Each job returns the instant it
//! ended; the submitter awaits every job.
//!
//! The variants, each on a fresh pool or runtime every round (so that spare
//! threads start cold), taking turns round by round:
//!
//! - **offload, CPU jobs only**: the baseline, `Pool::spawn` of the CPU
//!   jobs alone, no sleepers;
//! - **offload**: sleepers by `Pool::spawn_blocking`, CPU jobs by
//!   `Pool::spawn`;
//! - **offload, warm spares**: the same, on a pool that has just run the
//!   same load once, unmeasured: its spare threads are still alive;
//! - **offload, blocking()**: sleepers by `Pool::spawn` of a job that
//!   sleeps inside `offload::blocking`, CPU jobs by `Pool::spawn`;
//! - **offload, unmarked**: everything by `Pool::spawn`, the sleeps
//!   unmarked: what a blocking call costs a pool that is not told, with
//!   blocking detection on (the default: `Builder::detect_blocking`);
//! - **offload, unmarked, no detection**: the same with
//!   `detect_blocking(false)`, as before detection existed;
//! - **tokio spawn_blocking**: a multi-thread runtime of `--threads`
//!   workers; everything by `spawn_blocking` (tokio has no CPU pool, so
//!   this is what its users do); the submitter runs in `block_on`;
//! - **tokio, CPU on workers**: the same runtime; sleepers by
//!   `spawn_blocking`, CPU jobs by `tokio::spawn` of an async block that
//!   computes (on the runtime's `--threads` async workers);
//! - **blocking::unblock**: everything by smol's `blocking::unblock`. Its
//!   pool is global and cannot be made fresh, and (blocking 1.7) its
//!   threads never exit below its cap of 500: its first round starts cold,
//!   the later ones find the threads of the first;
//! - **rayon + oneshot**: a rayon `ThreadPool` of `--threads`, everything
//!   by `spawn` with a oneshot channel for the result: the sleepers hold
//!   the pool's threads, and the CPU jobs wait behind them.
//!
//! A variant whose first round takes longer than `--slow-secs` (the ones
//! whose sleepers hold the pool's threads take about `sleepers × sleep /
//! threads`, 5 s with the defaults) runs that one round only, to keep the
//! run short (about 30 s with the defaults on an idle machine); the
//! **rounds** column says how many each ran.
//!
//! # Reading the table
//!
//! - **CPU makespan**: from the first submission to the end of the last
//!   CPU job; the median over the rounds, then the fastest and slowest
//!   round. **×ideal**: the median over `cpu-jobs × cpu-ms / threads`, the
//!   time the CPU jobs take on `threads` threads of their own (1.00 is
//!   perfect). On a machine with as many cores as `--threads`, running the
//!   CPU jobs on more threads than cores does not shorten it.
//! - **sleepers makespan**: the same for the last sleeper. **×ideal**: over
//!   `ceil(sleepers / 512) × sleep-ms`, the time with one thread per
//!   sleeper up to 512 at once (offload's and tokio's default cap;
//!   `blocking`'s is 500).
//! - **peak threads**: the most threads the process had at once during a
//!   round, beyond those it had just before the round (the main thread,
//!   the sampler's own, and `blocking`'s pool once it has run), the
//!   largest over the variant's rounds: `Threads:` of `/proc/self/status`,
//!   every 1 ms, from a sampler thread; `-` where there is no `/proc`.
//!   Before each round the process waits for the threads of the previous
//!   one to exit.
//! - **goals**, for offload (medians): the CPU makespan at
//!   most 1.1× the CPU jobs' alone, the sleepers' at most 1.3× ideal, cold
//!   and warm; and the unmarked sleepers' figures within 1.5× of the
//!   marked ones (`offload`'s), which needs the pool to detect blocking
//!   jobs by itself; the same ratios for `blocking()`, for comparison.

use std::error::Error;
use std::fmt::Debug;
use std::fs::File;
use std::future::Future;
use std::hint::black_box;
use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::executor::block_on;
use futures::FutureExt;

#[path = "support/mod.rs"]
mod support;

use support::args::Args;
use support::machine;
use support::work::{self, hash_job};

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// The most sleepers that offload's and tokio's pools run at once by default.
const CAP: usize = 512;
/// How often the sampler counts the process's threads.
const SAMPLE_PERIOD: Duration = Duration::from_millis(1);
/// How long a round waits at most for the previous round's threads to exit,
/// and for how long a thread count that stopped falling counts as settled.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);
const SETTLE_STABLE: Duration = Duration::from_millis(200);
/// The goals: CPU makespan over the CPU jobs' alone, sleepers'
/// makespan over ideal, unmarked figures over marked ones.
const GOAL_CPU: f64 = 1.1;
const GOAL_SLEEPERS: f64 = 1.3;
const GOAL_UNMARKED: f64 = 1.5;

const USAGE: &str = "\
usage: blocking_mix [--threads T] [--sleepers N] [--sleep-ms MS]
                    [--cpu-jobs N] [--cpu-ms MS] [--rounds R] [--slow-secs S]
  --threads T      threads of each pool or runtime (default 2)
  --sleepers N     jobs that sleep (default 200)
  --sleep-ms MS    how long each sleeps, ms (default 50)
  --cpu-jobs N     CPU jobs (default 64)
  --cpu-ms MS      CPU time of each, ms (default 10)
  --rounds R       rounds per variant, the variants taking turns (default 5)
  --slow-secs S    a variant whose first round takes longer runs no more
                   rounds (default 2)";

// ---- flags --------------------------------------------------------------------

struct Config {
    threads: usize,
    sleepers: usize,
    sleep_ms: u64,
    cpu_jobs: usize,
    cpu_ms: f64,
    rounds: usize,
    slow_secs: f64,
}

fn parse_args() -> Result<Config> {
    let mut config = Config {
        threads: 2,
        sleepers: 200,
        sleep_ms: 50,
        cpu_jobs: 64,
        cpu_ms: 10.0,
        rounds: 5,
        slow_secs: 2.0,
    };
    let mut args = Args::new(USAGE);
    while let Some(flag) = args.next_flag()? {
        match flag.name.as_str() {
            "--threads" => config.threads = flag.parse()?,
            "--sleepers" => config.sleepers = flag.parse()?,
            "--sleep-ms" => config.sleep_ms = flag.parse()?,
            "--cpu-jobs" => config.cpu_jobs = flag.parse()?,
            "--cpu-ms" => config.cpu_ms = flag.parse()?,
            "--rounds" => config.rounds = flag.parse()?,
            "--slow-secs" => config.slow_secs = flag.parse()?,
            _ => return Err(flag.unknown().into()),
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if config.threads == 0
        || config.sleepers == 0
        || config.sleep_ms == 0
        || config.cpu_jobs == 0
        || config.rounds == 0
        || !positive(config.cpu_ms)
        || !positive(config.slow_secs)
    {
        return Err(format!("every flag must be positive\n{USAGE}").into());
    }
    Ok(config)
}

// ---- the load -------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sleeper,
    Cpu,
}

/// A job: it returns the instant it ended.
type Job = Box<dyn FnOnce() -> Instant + Send>;
/// A submitted job's result, as each variant's future delivers it.
type Pending = Pin<Box<dyn Future<Output = Instant>>>;

struct Plan {
    threads: usize,
    sleep: Duration,
    /// Hash iterations of one CPU job.
    iters: u64,
    /// The submission order.
    order: Vec<Kind>,
}

impl Plan {
    fn new(config: &Config, iters: u64) -> Self {
        // Spread the CPU jobs evenly among the sleepers (Bresenham): job `k`
        // is a CPU job when `k × cpu / total` crosses an integer.
        let total = config.sleepers + config.cpu_jobs;
        let order = (0..total)
            .map(|k| {
                if (k + 1) * config.cpu_jobs / total > k * config.cpu_jobs / total {
                    Kind::Cpu
                } else {
                    Kind::Sleeper
                }
            })
            .collect();
        Self {
            threads: config.threads,
            sleep: Duration::from_millis(config.sleep_ms),
            iters,
            order,
        }
    }

    fn job(&self, kind: Kind, seed: u64) -> Job {
        match kind {
            Kind::Sleeper => {
                let sleep = self.sleep;
                Box::new(move || {
                    thread::sleep(sleep);
                    Instant::now()
                })
            }
            Kind::Cpu => {
                let iters = self.iters;
                Box::new(move || {
                    black_box(hash_job(seed, iters));
                    Instant::now()
                })
            }
        }
    }
}

/// From the first submission to the last CPU job's end, and to the last
/// sleeper's (`None` without sleepers).
#[derive(Clone, Copy)]
struct Makespans {
    cpu: Duration,
    sleepers: Option<Duration>,
}

/// Submits the jobs of `order` through `submit`, from this thread, then
/// awaits every one of them.
async fn mixed_load(
    plan: &Plan,
    order: &[Kind],
    mut submit: impl FnMut(Kind, Job) -> Pending,
) -> Makespans {
    let start = Instant::now();
    let pending: Vec<(Kind, Pending)> = order
        .iter()
        .enumerate()
        .map(|(seed, &kind)| (kind, submit(kind, plan.job(kind, seed as u64))))
        .collect();
    let (mut cpu, mut sleepers) = (start, None);
    for (kind, job) in pending {
        let end = job.await;
        match kind {
            Kind::Cpu => cpu = cpu.max(end),
            Kind::Sleeper => sleepers = sleepers.max(Some(end)),
        }
    }
    Makespans {
        cpu: cpu - start,
        sleepers: sleepers.map(|end| end - start),
    }
}

/// A future of a job's `Result` that a correct run never fails.
fn expect<T, E: Debug>(
    result: impl Future<Output = Result<T, E>> + 'static,
) -> Pin<Box<dyn Future<Output = T>>> {
    Box::pin(result.map(|r| r.expect("a job failed")))
}

// ---- the variants -------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    OffloadCpuOnly,
    Offload,
    OffloadWarm,
    OffloadBlocking,
    OffloadUnmarked,
    OffloadUnmarkedOff,
    TokioBlocking,
    TokioWorkers,
    Unblock,
    Rayon,
}

impl Variant {
    const ALL: [Variant; 10] = [
        Variant::OffloadCpuOnly,
        Variant::Offload,
        Variant::OffloadWarm,
        Variant::OffloadBlocking,
        Variant::OffloadUnmarked,
        Variant::OffloadUnmarkedOff,
        Variant::TokioBlocking,
        Variant::TokioWorkers,
        Variant::Unblock,
        Variant::Rayon,
    ];

    fn index(self) -> usize {
        Variant::ALL
            .iter()
            .position(|&v| v == self)
            .expect("a variant")
    }

    fn label(self) -> &'static str {
        match self {
            Variant::OffloadCpuOnly => "offload, CPU jobs only",
            Variant::Offload => "offload",
            Variant::OffloadWarm => "offload, warm spares",
            Variant::OffloadBlocking => "offload, blocking()",
            Variant::OffloadUnmarked => "offload, unmarked",
            Variant::OffloadUnmarkedOff => "offload, unmarked, no detection",
            Variant::TokioBlocking => "tokio spawn_blocking",
            Variant::TokioWorkers => "tokio, CPU on workers",
            Variant::Unblock => "blocking::unblock",
            Variant::Rayon => "rayon + oneshot",
        }
    }
}

/// What one round of one variant measured.
struct Round {
    makespans: Makespans,
    peak_threads: Option<usize>,
    /// The whole round, pool start (and warm-up) and shutdown included.
    took: Duration,
}

fn run_round(variant: Variant, plan: &Plan) -> Result<Round> {
    let began = Instant::now();
    let sampler = ThreadSampler::start();
    let cpu_only: Vec<Kind> = plan
        .order
        .iter()
        .copied()
        .filter(|&k| k == Kind::Cpu)
        .collect();
    let order = match variant {
        Variant::OffloadCpuOnly => &cpu_only,
        _ => &plan.order,
    };
    let makespans = match variant {
        Variant::OffloadCpuOnly
        | Variant::Offload
        | Variant::OffloadWarm
        | Variant::OffloadBlocking
        | Variant::OffloadUnmarked
        | Variant::OffloadUnmarkedOff => {
            let pool = offload::Pool::builder()
                .threads(plan.threads)
                .detect_blocking(variant != Variant::OffloadUnmarkedOff)
                .build()?;
            let mut submit = |kind, job: Job| match (variant, kind) {
                (_, Kind::Cpu) | (Variant::OffloadUnmarked | Variant::OffloadUnmarkedOff, _) => {
                    expect(pool.spawn(job))
                }
                (Variant::OffloadBlocking, Kind::Sleeper) => {
                    expect(pool.spawn(move || offload::blocking(job)))
                }
                _ => expect(pool.spawn_blocking(job)),
            };
            if variant == Variant::OffloadWarm {
                block_on(mixed_load(plan, order, &mut submit));
            }
            let makespans = block_on(mixed_load(plan, order, &mut submit));
            pool.shutdown();
            makespans
        }
        Variant::TokioBlocking | Variant::TokioWorkers => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(plan.threads)
                .build()?;
            let handle = rt.handle().clone();
            let makespans =
                rt.block_on(mixed_load(plan, order, |kind, job| match (variant, kind) {
                    (Variant::TokioWorkers, Kind::Cpu) => {
                        expect(handle.spawn(async move { job() }))
                    }
                    _ => expect(handle.spawn_blocking(job)),
                }));
            drop(rt);
            makespans
        }
        Variant::Unblock => block_on(mixed_load(plan, order, |_, job| {
            Box::pin(blocking::unblock(job))
        })),
        Variant::Rayon => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(plan.threads)
                .build()?;
            block_on(mixed_load(plan, order, |_, job| {
                let (tx, rx) = oneshot::channel();
                pool.spawn(move || {
                    let _ = tx.send(job());
                });
                expect(rx)
            }))
        }
    };
    Ok(Round {
        makespans,
        peak_threads: sampler.map(ThreadSampler::finish),
        took: began.elapsed(),
    })
}

// ---- the process's threads ----------------------------------------------------

/// The process's thread count, from `/proc/self/status` (Linux).
fn process_threads() -> Option<usize> {
    let mut status = String::new();
    File::open("/proc/self/status")
        .ok()?
        .read_to_string(&mut status)
        .ok()?;
    parse_threads(&status)
}

fn parse_threads(status: &str) -> Option<usize> {
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits until the threads of earlier rounds, which some pools let exit in
/// the background, are gone: until the process has no more than `baseline`
/// threads, or its count has not changed for [`SETTLE_STABLE`] (threads
/// that never exit, as `blocking`'s: that count becomes the new
/// `baseline`), at most [`SETTLE_TIMEOUT`].
fn settle(baseline: &mut Option<usize>) {
    let Some(floor) = baseline else { return };
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let (mut last, mut since) = (process_threads(), Instant::now());
    while let Some(count) = last {
        if count <= *floor {
            return;
        }
        if since.elapsed() >= SETTLE_STABLE {
            *floor = count;
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
        thread::sleep(Duration::from_millis(10));
        let now = process_threads();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Samples the process's thread count every [`SAMPLE_PERIOD`] on a thread
/// of its own, and keeps the largest, less the count before it started.
struct ThreadSampler {
    before: usize,
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

impl ThreadSampler {
    /// `None` where there is no `/proc/self/status`.
    fn start() -> Option<Self> {
        let before = process_threads()?;
        let mut file = File::open("/proc/self/status").ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let (mut peak, mut status) = (0, String::new());
            loop {
                // Reread from the start: the kernel regenerates the text.
                status.clear();
                if file.seek(SeekFrom::Start(0)).is_ok() && file.read_to_string(&mut status).is_ok()
                {
                    peak = peak.max(parse_threads(&status).unwrap_or(0));
                }
                if flag.load(Ordering::Acquire) {
                    return peak;
                }
                thread::sleep(SAMPLE_PERIOD);
            }
        });
        Some(Self {
            before,
            stop,
            thread,
        })
    }

    /// The most threads at once beyond those before [`start`](Self::start)
    /// (the sampler's own not counted).
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Release);
        let peak = self.thread.join().expect("the sampler does not panic");
        peak.saturating_sub(self.before + 1)
    }
}

// ---- report ---------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median (the upper one of an even count), the least and the largest.
fn median_min_max(mut values: Vec<Duration>) -> (Duration, Duration, Duration) {
    values.sort();
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// `median (min–max)` in ms, or the one value of a single round; and the
/// median. `-` and `None` without values.
fn spread(values: Vec<Duration>) -> (String, Option<Duration>) {
    match values.len() {
        0 => ("-".into(), None),
        1 => (format!("{:.0}", ms(values[0])), Some(values[0])),
        _ => {
            let (median, min, max) = median_min_max(values);
            let text = format!("{:.0} ({:.0}–{:.0})", ms(median), ms(min), ms(max));
            (text, Some(median))
        }
    }
}

/// `a / b`, if both are known.
fn ratio(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    a.zip(b).map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
}

fn times(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}"))
}

/// `1.03× (≤ 1.1×): met`, against a goal of at most `goal`.
fn verdict(x: Option<f64>, goal: f64) -> String {
    match x {
        Some(x) if x <= goal => format!("{x:.2}× (≤ {goal}×): met"),
        Some(x) => format!("{x:.2}× (≤ {goal}×): MISSED"),
        None => "-".into(),
    }
}

/// The median makespans of each variant, CPU and sleepers.
struct Medians {
    cpu: Vec<Option<Duration>>,
    sleepers: Vec<Option<Duration>>,
}

fn print_goals(m: &Medians, ideal_sleepers: Duration, fifo_bound: Duration) {
    let cpu = |v: Variant| m.cpu[v.index()];
    let sleepers = |v: Variant| m.sleepers[v.index()];
    let alone = cpu(Variant::OffloadCpuOnly);
    println!("goals:");
    for v in [Variant::Offload, Variant::OffloadWarm] {
        println!(
            "  {:<22}CPU makespan over the CPU jobs alone {}; sleepers over ideal {}",
            v.label(),
            verdict(ratio(cpu(v), alone), GOAL_CPU),
            verdict(ratio(sleepers(v), Some(ideal_sleepers)), GOAL_SLEEPERS)
        );
    }
    let marked = Variant::Offload;
    for v in [Variant::OffloadUnmarked, Variant::OffloadBlocking] {
        println!(
            "  {:<22}over `offload`: CPU makespan {}; sleepers {}",
            v.label(),
            verdict(ratio(cpu(v), cpu(marked)), GOAL_UNMARKED),
            verdict(ratio(sleepers(v), sleepers(marked)), GOAL_UNMARKED)
        );
    }
    println!(
        "  unmarked sleepers over their FIFO bound ({:.0} ms: the CPU jobs queued ahead of the \
         last sleeper on the pool's threads, then its sleep): {}",
        ms(fifo_bound),
        times(ratio(sleepers(Variant::OffloadUnmarked), Some(fifo_bound)))
    );
}

fn main() -> Result<()> {
    let config = parse_args()?;
    let cores = machine::cores()?;
    let load_at_start = machine::load_average();
    let iters = work::calibrate(Duration::from_secs_f64(config.cpu_ms / 1e3));
    let job_time = work::median_job_time(11, iters);
    let plan = Plan::new(&config, iters);
    let ideal_cpu = Duration::from_secs_f64(
        config.cpu_jobs as f64 * config.cpu_ms / 1e3 / config.threads as f64,
    );
    let ideal_sleepers = plan.sleep * config.sleepers.div_ceil(CAP) as u32;
    // Unmarked, every job shares one FIFO queue and the CPU jobs get
    // `threads` threads: the last sleeper starts at best once the CPU jobs
    // ahead of it have started, as a pool with exact detection would.
    let last_sleeper = plan.order.iter().rposition(|&k| k == Kind::Sleeper);
    let cpu_ahead = last_sleeper.map_or(0, |i| {
        plan.order[..i].iter().filter(|&&k| k == Kind::Cpu).count()
    });
    let fifo_bound =
        Duration::from_secs_f64(cpu_ahead as f64 * config.cpu_ms / 1e3 / config.threads as f64)
            + plan.sleep;
    let mut baseline = process_threads();

    println!(
        "blocking_mix: {} sleepers of {} ms + {} CPU jobs of {} ms, interleaved, submitted at once to {} threads",
        config.sleepers, config.sleep_ms, config.cpu_jobs, config.cpu_ms, config.threads
    );
    println!("machine: {cores} cores; load average at start: {load_at_start}");
    println!(
        "CPU job: {:.2} M hash iterations = {:.2} ms single-threaded (calibrated once, target {} ms)",
        iters as f64 / 1e6,
        ms(job_time),
        config.cpu_ms
    );
    println!(
        "ideal: CPU {} × {} ms / {} threads = {:.0} ms; sleepers {:.0} ms (up to {CAP} at once)",
        config.cpu_jobs,
        config.cpu_ms,
        config.threads,
        ms(ideal_cpu),
        ms(ideal_sleepers)
    );

    let started = Instant::now();
    let mut rounds: Vec<Vec<Round>> = Variant::ALL.iter().map(|_| Vec::new()).collect();
    for round in 0..config.rounds {
        for (v, &variant) in Variant::ALL.iter().enumerate() {
            let slow = rounds[v]
                .first()
                .is_some_and(|r| r.took.as_secs_f64() > config.slow_secs);
            if slow {
                continue;
            }
            settle(&mut baseline);
            let r = run_round(variant, &plan)?;
            eprintln!(
                "round {}: {:<32} CPU {:>6.0} ms, sleepers {:>6} ms",
                round + 1,
                variant.label(),
                ms(r.makespans.cpu),
                r.makespans
                    .sleepers
                    .map_or("-".into(), |d| format!("{:.0}", ms(d)))
            );
            rounds[v].push(r);
        }
    }
    println!(
        "measured in {:.1} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        machine::load_average()
    );
    println!();

    let header = |cells: [&str; 7]| {
        println!(
            "{:<32}{:>7}{:>22}{:>8}{:>22}{:>8}{:>9}",
            cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6]
        );
    };
    header([
        "",
        "",
        "CPU makespan ms",
        "",
        "sleepers makespan",
        "",
        "peak",
    ]);
    header([
        "variant",
        "rounds",
        "median (min–max)",
        "×ideal",
        "ms, median (min–max)",
        "×ideal",
        "threads",
    ]);
    let mut medians = Medians {
        cpu: Vec::new(),
        sleepers: Vec::new(),
    };
    for (variant, rounds) in Variant::ALL.iter().zip(&rounds) {
        let (cpu, cpu_median) = spread(rounds.iter().map(|r| r.makespans.cpu).collect());
        let (sleepers, sleepers_median) =
            spread(rounds.iter().filter_map(|r| r.makespans.sleepers).collect());
        let peak = rounds.iter().filter_map(|r| r.peak_threads).max();
        println!(
            "{:<32}{:>7}{:>22}{:>8}{:>22}{:>8}{:>9}",
            variant.label(),
            rounds.len(),
            cpu,
            times(ratio(cpu_median, Some(ideal_cpu))),
            sleepers,
            times(ratio(sleepers_median, Some(ideal_sleepers))),
            peak.map_or("-".into(), |n| n.to_string())
        );
        medians.cpu.push(cpu_median);
        medians.sleepers.push(sleepers_median);
    }
    let cut: Vec<&str> = Variant::ALL
        .iter()
        .zip(&rounds)
        .filter(|(_, r)| r.len() < config.rounds)
        .map(|(v, _)| v.label())
        .collect();
    if !cut.is_empty() {
        println!();
        println!(
            "one round only (its first took longer than --slow-secs {}): {}",
            config.slow_secs,
            cut.join(", ")
        );
    }
    println!();
    print_goals(&medians, ideal_sleepers, fifo_bound);
    Ok(())
}
