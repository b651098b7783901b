//! Whether a `join` keeps its parallelism, against rayon and chili in the
//! same run: coarse joins on fresh, warm and busy pools, and fib(30) called
//! again and again with gaps between the calls.
//!
//! ```text
//! cargo run --release --example join_goals                # everything
//! cargo run --release --example join_goals -- --only coarse --runs 10
//! cargo run --release --example join_goals -- --only fib --gaps 0,1,10,100
//! ```
//!
//! - **coarse**: `install(|| join(work, work))` on a 2-thread pool, each
//!   half `--ms` of calibrated CPU work (200 ms by default), `--runs` times
//!   for each member, offload and rayon taking turns. `fresh`: on a pool
//!   built just before; `warm`: on a pool that has just run the previous
//!   join; `frees`: on a warm pool whose other worker is busy with a job of
//!   a quarter of `--ms` (50 ms by default) when the join starts. Ideal:
//!   `--ms` for fresh and warm, `--ms` plus a quarter for frees (the free
//!   worker takes the second half when its job ends). Goal: every run
//!   ≤ 1.05× rayon's median.
//! - **fib**: fib(30) with a join at every call, `--calls` consecutive calls
//!   (15) from outside the pool at each gap of `--gaps` (ms) between calls,
//!   on the pools of all threads: offload (`install` per call), chili (a
//!   scope per call), rayon (`install` per call), and sequentially. Goal:
//!   every offload call ≤ 0.7× the sequential median, and offload's median
//!   ≤ chili's.
//!
//! The coarse table also counts the runs whose two halves ran on two
//! threads (`split`): on a loaded machine the times mean little, but a
//! join that kept its second half to itself shows as a run not split.
//!
//! Prints the machine's load average first: on a shared machine the figures
//! are indicative only.

#[path = "support/mod.rs"]
mod support;

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use support::args::Args;
use support::machine;
use support::table;
use support::work::{calibrate, hash_job};

const USAGE: &str = "usage: join_goals [--only coarse|fib] [--runs N] [--ms MS] \
                     [--calls N] [--gaps MS,MS,..] [--threads N] [--markdown]";

struct Config {
    only: Option<String>,
    runs: usize,
    ms: u64,
    calls: usize,
    gaps: Vec<u64>,
    threads: usize,
    markdown: bool,
}

fn config() -> Result<Config, String> {
    let mut args = Args::new(USAGE);
    let mut config = Config {
        only: None,
        runs: 10,
        ms: 200,
        calls: 15,
        gaps: vec![0, 1, 10, 100],
        threads: machine::cores().map_err(|e| e.to_string())?,
        markdown: false,
    };
    while let Some(arg) = args.next_arg() {
        if arg == "--markdown" {
            config.markdown = true;
            continue;
        }
        let flag = args.flag(arg)?;
        match flag.name.as_str() {
            "--only" => config.only = Some(flag.value.clone()),
            "--runs" => config.runs = flag.parse()?,
            "--ms" => config.ms = flag.parse()?,
            "--calls" => config.calls = flag.parse()?,
            "--threads" => config.threads = flag.parse()?,
            "--gaps" => {
                config.gaps = flag.parse_with(|v: &str| {
                    v.split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<u64>, _>>()
                })?
            }
            _ => return Err(flag.unknown()),
        }
    }
    Ok(config)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// A 2-thread pool of each kind, behind one interface.
trait Coarse {
    fn build() -> Self;
    /// `join(work, work)` inside the pool; whether the halves ran on two
    /// threads.
    fn join(&self, iters: u64) -> bool;
    /// Occupies one worker with `iters` of work; returns once it started.
    fn occupy(&self, iters: u64);
}

impl Coarse for offload::Pool {
    fn build() -> Self {
        offload::Pool::builder()
            .threads(2)
            .build()
            .expect("offload pool")
    }
    fn join(&self, iters: u64) -> bool {
        self.install(|| {
            let (a, b) = offload::join(|| half(1, iters), || half(2, iters));
            a != b
        })
    }
    fn occupy(&self, iters: u64) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.spawn(move || {
            tx.send(()).unwrap();
            black_box(hash_job(3, iters));
        })
        .detach();
        rx.recv().unwrap();
    }
}

impl Coarse for rayon::ThreadPool {
    fn build() -> Self {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("rayon pool")
    }
    fn join(&self, iters: u64) -> bool {
        self.install(|| {
            let (a, b) = rayon::join(|| half(1, iters), || half(2, iters));
            a != b
        })
    }
    fn occupy(&self, iters: u64) {
        let (tx, rx) = std::sync::mpsc::channel();
        self.spawn(move || {
            tx.send(()).unwrap();
            black_box(hash_job(3, iters));
        });
        rx.recv().unwrap();
    }
}

/// One half of a coarse join: its work, then the thread that ran it.
fn half(seed: u64, iters: u64) -> thread::ThreadId {
    black_box(hash_job(seed, iters));
    thread::current().id()
}

/// One run of a scenario on a pool of kind `P`: its time, and whether the
/// halves ran on two threads.
fn coarse_run<P: Coarse>(scenario: &str, iters: u64, warm: &P) -> (Duration, bool) {
    match scenario {
        "fresh" => {
            let pool = P::build();
            let start = Instant::now();
            let split = pool.join(iters);
            (start.elapsed(), split)
        }
        "warm" => {
            warm.join(iters / 8);
            let start = Instant::now();
            let split = warm.join(iters);
            (start.elapsed(), split)
        }
        _ => {
            warm.join(iters / 8);
            let start = Instant::now();
            warm.occupy(iters / 4);
            let split = warm.join(iters);
            (start.elapsed(), split)
        }
    }
}

fn coarse(config: &Config) {
    let half = Duration::from_millis(config.ms);
    let iters = calibrate(half);
    println!(
        "coarse join: two halves of {} ms of work each, 2 threads, {} runs",
        config.ms, config.runs
    );
    let offload_pool = <offload::Pool as Coarse>::build();
    let rayon_pool = <rayon::ThreadPool as Coarse>::build();
    let mut rows = Vec::new();
    let mut met = true;
    for scenario in ["fresh", "warm", "frees"] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let (mut ours_split, mut theirs_split) = (0, 0);
        for _ in 0..config.runs {
            let (t, split) = coarse_run(scenario, iters, &offload_pool);
            ours.push(t);
            ours_split += usize::from(split);
            let (t, split) = coarse_run(scenario, iters, &rayon_pool);
            theirs.push(t);
            theirs_split += usize::from(split);
        }
        let reference = median(theirs.clone());
        let worst = ours.iter().max().copied().unwrap_or_default();
        let within = ours
            .iter()
            .filter(|d| d.as_secs_f64() <= 1.05 * reference.as_secs_f64())
            .count();
        met &= within == ours.len();
        let list = |v: &[Duration]| v.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(" ");
        rows.push(vec![
            scenario.to_owned(),
            ms(median(ours.clone())),
            ms(worst),
            ms(reference),
            format!("{:.2}", worst.as_secs_f64() / reference.as_secs_f64()),
            format!("{within}/{}", ours.len()),
            format!("{ours_split}/{}", ours.len()),
            format!("{theirs_split}/{}", theirs.len()),
            list(&ours),
            list(&theirs),
        ]);
    }
    let headers: Vec<String> = [
        "pool",
        "offload median ms",
        "offload worst",
        "rayon median",
        "worst/rayon",
        "runs ≤ 1.05×",
        "offload split",
        "rayon split",
        "offload runs",
        "rayon runs",
    ]
    .map(String::from)
    .into();
    table::print(&headers, &rows, 1, config.markdown);
    println!(
        "goal: every run ≤ 1.05× rayon's median: {}",
        if met { "met" } else { "missed" }
    );
}

mod fibs {
    pub fn sequential(n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        sequential(n - 1) + sequential(n - 2)
    }

    pub fn offload(n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (x, y) = offload::join(|| offload(n - 1), || offload(n - 2));
        x + y
    }

    pub fn rayon(n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (x, y) = rayon::join(|| rayon(n - 1), || rayon(n - 2));
        x + y
    }

    pub fn chili(s: &mut chili::Scope<'_>, n: u64) -> u64 {
        if n < 2 {
            return n;
        }
        let (x, y) = s.join(|s| chili(s, n - 1), |s| chili(s, n - 2));
        x + y
    }
}

fn fib(config: &Config) {
    const N: u64 = 30;
    println!(
        "fib({N}): {} consecutive calls per gap, {} threads",
        config.calls, config.threads
    );
    let offload_pool = offload::Pool::builder()
        .threads(config.threads)
        .build()
        .expect("offload pool");
    let rayon_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()
        .expect("rayon pool");
    let chili_pool = chili::ThreadPool::with_config(chili::Config {
        thread_count: std::num::NonZeroUsize::new(config.threads),
        ..chili::Config::default()
    });
    let mut rows = Vec::new();
    let mut met = true;
    for &gap in &config.gaps {
        let gap = Duration::from_millis(gap);
        let calls = |f: &mut dyn FnMut()| -> Vec<Duration> {
            (0..config.calls)
                .map(|_| {
                    thread::sleep(gap);
                    time(&mut *f)
                })
                .collect()
        };
        let sequential = calls(&mut || {
            black_box(fibs::sequential(black_box(N)));
        });
        let ours = calls(&mut || {
            black_box(offload_pool.install(|| fibs::offload(black_box(N))));
        });
        let chili = calls(&mut || {
            let mut scope = chili_pool.scope();
            black_box(fibs::chili(&mut scope, black_box(N)));
        });
        let rayon = calls(&mut || {
            black_box(rayon_pool.install(|| fibs::rayon(black_box(N))));
        });
        let seq = median(sequential);
        let worst = ours.iter().max().copied().unwrap_or_default();
        let (ours_median, chili_median) = (median(ours.clone()), median(chili));
        let worst_ratio = worst.as_secs_f64() / seq.as_secs_f64();
        met &= worst_ratio <= 0.7 && ours_median <= chili_median;
        rows.push(vec![
            format!("{} ms", gap.as_millis()),
            ms(seq),
            ms(ours_median),
            ms(worst),
            format!("{worst_ratio:.2}"),
            ms(chili_median),
            ms(median(rayon)),
            ours.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(" "),
        ]);
    }
    let headers: Vec<String> = [
        "gap",
        "sequential ms",
        "offload median",
        "offload worst",
        "worst/seq",
        "chili median",
        "rayon median",
        "offload calls",
    ]
    .map(String::from)
    .into();
    table::print(&headers, &rows, 1, config.markdown);
    println!(
        "goal: every call ≤ 0.7× sequential, median ≤ chili's: {}",
        if met { "met" } else { "missed" }
    );
}

fn main() {
    let config = match config() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    println!("load average: {}", machine::load_average());
    if config.only.as_deref() != Some("fib") {
        coarse(&config);
    }
    if config.only.as_deref() != Some("coarse") {
        fib(&config);
    }
    println!("load average: {}", machine::load_average());
}
