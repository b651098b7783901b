//! What blocking detection (`Builder::detect_blocking`) costs a
//! pool that never blocks: pools with detection on and off, side by side in
//! one run, rounds taking turns.
//!
//! ```text
//! cargo run --release --example detect_cost
//! cargo run --release --example detect_cost -- --rounds 9 --jobs 200000
//! ```
//!
//! - **idle**: the process's CPU time (`getrusage`) over `--idle-ms` of a
//!   pool that ran one job and then sits idle, in cores (CPU time over wall
//!   time). Detection on should add nothing: its thread sleeps without a
//!   timer while no job waits.
//! - **burst**: `--jobs` trivial Tasks spawned from outside as fast as one
//!   thread can, then awaited: time per job. Every worker is busy and jobs
//!   wait the whole time, so the detector ticks (every 2 ms).
//! - **CPU jobs**: `--cpu-jobs` jobs of 1 ms of hashing each on every
//!   worker: the makespan. Jobs wait, each runs for 1 ms, so the detector
//!   reads the workers' `/proc` state a few times per job.
//!
//! - **detector's share**: the CPU time of the detector thread itself
//!   (`offload-detect`, from `/proc/self/task/<tid>/schedstat`) over the
//!   process's during the burst and the CPU jobs: its direct cost. (The
//!   wall-clock burst figure of this 2-core VM moves by ±50% from round to
//!   round, far more than 1%; this share does not.)
//!
//! Each figure is the median over `--rounds` rounds, on a fresh pool of one
//! thread per core each round, with the fastest and slowest round; the
//! ratio is on over off.

use std::error::Error;
use std::time::{Duration, Instant};

use offload::Pool;

#[path = "support/mod.rs"]
mod support;

use support::args::Args;
use support::machine;
use support::table;
use support::work::{calibrate, hash_job};

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

const USAGE: &str = "\
usage: detect_cost [--rounds R] [--jobs N] [--cpu-jobs N] [--idle-ms MS] [--markdown]
  --rounds R     rounds per variant, taking turns (default 7)
  --jobs N       trivial jobs per burst (default 100000)
  --cpu-jobs N   1 ms CPU jobs per round (default 400)
  --idle-ms MS   idle time measured per round (default 2000)
  --markdown     print the table as markdown";

struct Config {
    rounds: usize,
    jobs: usize,
    cpu_jobs: usize,
    idle: Duration,
    markdown: bool,
}

fn parse_args() -> Result<Config> {
    let mut args = Args::new(USAGE);
    let mut config = Config {
        rounds: 7,
        jobs: 100_000,
        cpu_jobs: 400,
        idle: Duration::from_millis(2000),
        markdown: false,
    };
    while let Some(arg) = args.next_arg() {
        if arg == "--markdown" {
            config.markdown = true;
            continue;
        }
        let flag = args.flag(arg)?;
        match flag.name.as_str() {
            "--rounds" => config.rounds = flag.parse()?,
            "--jobs" => config.jobs = flag.parse()?,
            "--cpu-jobs" => config.cpu_jobs = flag.parse()?,
            "--idle-ms" => config.idle = Duration::from_millis(flag.parse()?),
            _ => return Err(flag.unknown().into()),
        }
    }
    if config.rounds == 0 || config.jobs == 0 || config.cpu_jobs == 0 {
        return Err(format!("--rounds, --jobs and --cpu-jobs must be positive\n{USAGE}").into());
    }
    Ok(config)
}

fn pool(threads: usize, detect: bool) -> Result<Pool> {
    Ok(Pool::builder()
        .threads(threads)
        .detect_blocking(detect)
        .build()?)
}

/// CPU cores used by the process while `pool` sits idle for `idle`.
fn idle_cores(pool: &Pool, idle: Duration) -> Result<f64> {
    pool.spawn(|| ()).wait()?;
    // Let the workers' spins end and the detector fall dormant.
    std::thread::sleep(Duration::from_millis(50));
    let cpu = machine::cpu_time().ok_or("no getrusage here")?;
    let start = Instant::now();
    std::thread::sleep(idle);
    let used = machine::cpu_time().ok_or("no getrusage here")? - cpu;
    Ok(used.as_secs_f64() / start.elapsed().as_secs_f64())
}

/// Time per job of a burst of `jobs` trivial Tasks.
fn burst(pool: &Pool, jobs: usize) -> Result<Duration> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..jobs).map(|i| pool.spawn(move || i)).collect();
    for task in tasks {
        task.wait()?;
    }
    Ok(start.elapsed() / jobs as u32)
}

/// Makespan of `jobs` CPU jobs of `iters` hash rounds each.
fn cpu_jobs(pool: &Pool, jobs: usize, iters: u64) -> Result<Duration> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..jobs as u64)
        .map(|seed| pool.spawn(move || hash_job(seed, iters)))
        .collect();
    for task in tasks {
        task.wait()?;
    }
    Ok(start.elapsed())
}

/// CPU time of the thread named `offload-detect` (there is one pool at a
/// time here), from its `schedstat`; zero if there is none.
fn detector_cpu() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "offload-detect" {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
            return Duration::from_nanos(ns.unwrap_or(0));
        }
    }
    Duration::ZERO
}

/// `median (fastest–slowest)` of `samples`, with `decimals` digits, and
/// the median.
fn cell(samples: &mut [f64], decimals: usize) -> (String, f64) {
    let (median, lo, hi) = spread(samples);
    (
        format!("{median:.decimals$} ({lo:.decimals$}–{hi:.decimals$})"),
        median,
    )
}

/// Median, fastest and slowest of `samples`.
fn spread<T: PartialOrd + Copy>(samples: &mut [T]) -> (T, T, T) {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    (
        samples[samples.len() / 2],
        samples[0],
        samples[samples.len() - 1],
    )
}

fn main() -> Result<()> {
    let config = parse_args()?;
    let threads = machine::cores()?;
    println!(
        "detect_cost: {threads} cores, load average {} at the start",
        machine::load_average()
    );
    let iters = calibrate(Duration::from_millis(1));
    // [off, on]
    let mut idle = [Vec::new(), Vec::new()];
    let mut bursts = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    let mut shares = Vec::new();
    let started = Instant::now();
    for round in 0..config.rounds {
        // Alternate which goes first, so neither always follows the other.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for detect in order {
            let pool = pool(threads, detect)?;
            let at = usize::from(detect);
            idle[at].push(idle_cores(&pool, config.idle)?);
            let (detector0, process0) = (detector_cpu(), machine::cpu_time().unwrap_or_default());
            bursts[at].push(burst(&pool, config.jobs)?.as_secs_f64() * 1e9);
            cpu[at].push(cpu_jobs(&pool, config.cpu_jobs, iters)?.as_secs_f64() * 1e3);
            if detect {
                let process = machine::cpu_time().unwrap_or_default() - process0;
                let detector = detector_cpu() - detector0;
                shares.push(detector.as_secs_f64() / process.as_secs_f64().max(1e-9));
            }
            pool.shutdown();
        }
    }
    println!(
        "measured in {:.1} s; load average {} at the end\n",
        started.elapsed().as_secs_f64(),
        machine::load_average()
    );

    let headers = ["measure", "detection off", "detection on", "on / off"].map(String::from);
    // One row per measure: off, on, and how on compares.
    let row = |label: String,
               [off, on]: &mut [Vec<f64>; 2],
               decimals,
               compare: fn(f64, f64) -> String| {
        let (off_cell, off) = cell(off, decimals);
        let (on_cell, on) = cell(on, decimals);
        vec![label, off_cell, on_cell, compare(on, off)]
    };
    let ratio: fn(f64, f64) -> String = |on, off| format!("{:.3}×", on / off);
    let (share, _) = cell(&mut shares.iter().map(|s| s * 100.0).collect::<Vec<_>>(), 3);
    let rows = vec![
        row(
            format!("idle pool, cores ({} s)", config.idle.as_secs_f64()),
            &mut idle,
            5,
            |on, off| format!("{:+.5} cores", on - off),
        ),
        row(
            format!("burst of {} trivial jobs, ns per job", config.jobs),
            &mut bursts,
            0,
            ratio,
        ),
        row(
            format!("{} CPU jobs of 1 ms, makespan ms", config.cpu_jobs),
            &mut cpu,
            1,
            ratio,
        ),
        vec![
            "detector thread's share of the CPU time, burst and CPU jobs".into(),
            "-".into(),
            format!("{share}%"),
            "-".into(),
        ],
    ];
    table::print(&headers, &rows, 1, config.markdown);
    println!(
        "\nmedians of {} rounds (fastest–slowest); goals: idle ≤ 0.005 cores, \
         burst ≤ 1% slower with detection on",
        config.rounds
    );
    Ok(())
}
