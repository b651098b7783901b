//! Overload: what a server's CPU pool does when requests come faster than it
//! can serve them, with an unbounded queue, with shedding, and with
//! pushback.
//!
//! ```text
//! cargo run --release --example overload
//! cargo run --release --example overload -- --secs 5 --load 2.0 --job-ms 2 --threads 8
//! ```
//!
//! A current-thread tokio runtime receives "requests" on an open-loop
//! schedule: request `i` has an intended arrival time `start + i / rate`,
//! fixed in advance, and every latency is measured from that time, so the
//! schedule never waits for the system (a slow server does not slow its
//! clients down; it makes them wait). The rate is `--load` times the pool's
//! capacity (`threads / job time`), for `--secs` seconds. Each request
//! carries a `--payload-kb` body, allocated when it is accepted and freed
//! when its job is done (what a queued request holds on to), and needs one
//! CPU job of `--job-ms`: a fixed number of iterations of a hash loop,
//! calibrated at start-up (busy work, not a sleep). Each accepted request
//! is handled by a tokio task of its own that awaits the job's `Task`.
//!
//! Three strategies, one after the other in the same run, each on a fresh
//! pool of `--threads` workers:
//!
//! - **unbounded spawn**: `Pool::spawn` for every request; every request
//!   is queued, and the queue grows as long as the overload lasts;
//! - **try_spawn shed**: a pool with `Builder::max_queued(n)`; a request
//!   whose `try_spawn` is refused is shed at once (an HTTP 503) and its
//!   body freed;
//! - **reserve pushback**: the same bound; the producer awaits
//!   `pool.reserve()` before it accepts the next request (an accept loop
//!   that stops accepting), so requests are accepted late instead of
//!   queued. At the end of the arrival window the producer stops; requests
//!   it had not accepted by then are counted as *held back* (in a server
//!   they would still be in the listen backlog, or at the client).
//!
//! `n` follows the rule in `Builder::max_queued`'s docs: `n = threads ×
//! (queue-wait budget) / (job time)`, rounded down, with a budget of
//! `--wait-budget` job times (default 1). Under sustained overload the
//! queue is always full, so every admitted job waits about that budget: it
//! is the typical wait, not a ceiling. A job admitted last waits for `n`
//! completions, which on `t` busy workers take up to `ceil(n / t)` job
//! times, plus whatever preempts the workers (on a 2-core machine, the
//! loop's own thread): a budget of 1 keeps that tail near the goal of 2
//! job times, while 1.5 (n = 3 on 2 threads) measured 4.7–6.0 ms at p99
//! for 2 ms jobs on the 2-core machine of `BENCHMARKS.md`.
//!
//! # Reading the tables
//!
//! - **offered**: requests submitted to the pool (with pushback: accepted
//!   by the producer); **done**: completed; **shed**: refused by
//!   `try_spawn`; **held back**: with pushback, requests of the window the
//!   producer had not accepted when it ended.
//! - **queue wait**: from just before the `spawn` call to the first line of
//!   the job, measured inside the job from a timestamp taken at submission;
//!   p50, p99 and max over the completed requests.
//! - **job run p50**: the job's own run time, measured inside it: the
//!   calibrated job time on a quiet machine, longer where the workers share
//!   their cores with other processes (then the pool's real capacity is
//!   lower, and queue waits longer, than the header says).
//! - **e2e p99**: from the request's intended arrival to the moment its
//!   handler on the loop has the result. With pushback it includes how late
//!   the request was accepted.
//! - **accept late p99**: intended arrival to submission. For the first two
//!   strategies this is the loop's own lag (tokio's timer has a 1 ms
//!   resolution, so requests are taken in small bursts); with pushback it
//!   is the pushback itself.
//! - **RSS**: the process's VmRSS from `/proc/self/status`, sampled every
//!   250 ms from the start of the arrivals until every accepted request is
//!   done; start, peak and end (after the drain), and at the end of each
//!   second of the arrival window. **done at**: when the last accepted
//!   request was done, from the first intended arrival.
//! - **queue wait p99 per second**: requests grouped by the second in which
//!   they were submitted. Flat with a bound; growing without one.
//!
//! The unbounded strategy runs last, so that the memory its queue held
//! (freed, but kept by the allocator) is not reused by the other two, which
//! would hide what they allocate; the heap is trimmed (`malloc_trim`)
//! between strategies where glibc provides it.
//!
//! Takes about `3 × secs` plus the unbounded queue's drain, `(load − 1) ×
//! secs`: 20 s with the defaults on a quiet machine.
//!
//! The machine's load matters: the job time is calibrated at start-up on
//! one core, so a busy machine has less capacity than the header says (see
//! **job run p50**), is more overloaded than `--load`, and takes longer to
//! drain. The load average is printed at the start and at the end.

use std::error::Error;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[path = "support/mod.rs"]
mod support;

use support::args::Args;
use support::machine;
use support::work::{self, hash_job};

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// How often the resident set size is sampled.
const RSS_PERIOD: Duration = Duration::from_millis(250);
/// The goal: queue wait p99 at most this many job times with a bound.
const GOAL_JOB_TIMES: f64 = 2.0;
/// RSS growth over the arrival window below which memory counts as flat.
const FLAT_MIB: f64 = 2.0;
/// The largest latency the histograms hold, in microseconds (10 minutes).
const MAX_US: u64 = 600_000_000;

const USAGE: &str = "\
usage: overload [--secs S] [--load L] [--job-ms MS] [--threads T]
                [--wait-budget B] [--payload-kb KB]
  --secs S          arrival window per strategy, seconds (default 5)
  --load L          offered rate over the pool's capacity (default 2.0)
  --job-ms MS       CPU time of one request's job, ms (default 2)
  --threads T       pool workers (default: one per core)
  --wait-budget B   queue-wait budget for max_queued, in job times (default 1)
  --payload-kb KB   request body held until the job is done, KiB (default 4)";

// ---- flags ------------------------------------------------------------------

struct Config {
    secs: f64,
    load: f64,
    job_ms: f64,
    threads: usize,
    wait_budget: f64,
    payload_kb: usize,
}

fn parse_args() -> Result<Config> {
    let mut config = Config {
        secs: 5.0,
        load: 2.0,
        job_ms: 2.0,
        threads: machine::cores()?,
        wait_budget: 1.0,
        payload_kb: 4,
    };
    let mut args = Args::new(USAGE);
    while let Some(flag) = args.next_flag()? {
        match flag.name.as_str() {
            "--secs" => config.secs = flag.parse()?,
            "--load" => config.load = flag.parse()?,
            "--job-ms" => config.job_ms = flag.parse()?,
            "--threads" => config.threads = flag.parse()?,
            "--wait-budget" => config.wait_budget = flag.parse()?,
            "--payload-kb" => config.payload_kb = flag.parse()?,
            _ => return Err(flag.unknown().into()),
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !(positive(config.secs)
        && positive(config.load)
        && positive(config.job_ms)
        && positive(config.wait_budget)
        && config.threads > 0)
    {
        return Err(format!("every flag must be positive\n{USAGE}").into());
    }
    Ok(config)
}

// ---- the work -----------------------------------------------------------------

/// The job of one request: its queue wait (timed from `submitted`, inside
/// the job), its own run time, and a hash (of its body too, so the body
/// lives until the job ran).
fn request_job(
    submitted: Instant,
    seed: u64,
    iters: u64,
    body: Vec<u8>,
) -> impl FnOnce() -> JobOutput + Send + 'static {
    move || {
        let started = Instant::now();
        let wait = started.saturating_duration_since(submitted);
        let salt = body.len() as u64 ^ u64::from(body.last().copied().unwrap_or(0));
        let hash = hash_job(seed ^ salt, iters);
        (wait, started.elapsed(), hash)
    }
}

/// What a request's job returns: queue wait, run time, hash.
type JobOutput = (Duration, Duration, u64);

/// A request body of `bytes`, written so that its pages are resident.
fn request_body(bytes: usize) -> Vec<u8> {
    vec![0xa5; bytes]
}

// ---- memory -------------------------------------------------------------------

/// The process's resident set size, in KiB (`VmRSS`), or 0 if unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Gives the heap's free memory back to the system, where glibc can.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions; it only releases free
    // memory of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Samples the RSS every [`RSS_PERIOD`] on a thread of its own, so that a
/// busy loop does not delay the samples.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<(Duration, u64)>>,
}

impl RssSampler {
    fn start(origin: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut samples = Vec::with_capacity(1024);
            let mut next = Instant::now();
            while !flag.load(Ordering::Acquire) {
                samples.push((origin.elapsed(), rss_kib()));
                next += RSS_PERIOD;
                while !flag.load(Ordering::Acquire) {
                    match next.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => thread::park_timeout(left),
                        _ => break,
                    }
                }
            }
            samples.push((origin.elapsed(), rss_kib()));
            samples
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        self.thread.join().expect("the RSS sampler does not panic")
    }
}

// ---- strategies ---------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Unbounded,
    Shed,
    Pushback,
}

impl Strategy {
    /// Table order.
    const ALL: [Strategy; 3] = [Strategy::Unbounded, Strategy::Shed, Strategy::Pushback];
    /// Run order: the unbounded queue last (module docs).
    const RUN_ORDER: [Strategy; 3] = [Strategy::Shed, Strategy::Pushback, Strategy::Unbounded];

    fn label(self) -> &'static str {
        match self {
            Strategy::Unbounded => "unbounded spawn",
            Strategy::Shed => "try_spawn shed",
            Strategy::Pushback => "reserve pushback",
        }
    }
}

/// What the request handlers record; shared by the handler tasks of one
/// strategy (all on the one loop thread, so the lock is never contended).
struct Stats {
    /// Spawn to job start, µs.
    queue_wait: Histogram<u64>,
    /// The same, one histogram per second of submission.
    queue_wait_by_second: Vec<Histogram<u64>>,
    /// The job's own run time, µs.
    job_run: Histogram<u64>,
    /// Intended arrival to the result on the loop, µs.
    latency: Histogram<u64>,
    /// Intended arrival to submission, µs.
    accept_late: Histogram<u64>,
    completed: u64,
    failed: u64,
    /// Accepted requests whose handler has not finished.
    outstanding: u64,
    checksum: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl Stats {
    fn new(windows: usize) -> Self {
        Self {
            queue_wait: histogram(),
            queue_wait_by_second: (0..windows).map(|_| histogram()).collect(),
            job_run: histogram(),
            latency: histogram(),
            accept_late: histogram(),
            completed: 0,
            failed: 0,
            outstanding: 0,
            checksum: 0,
        }
    }
}

/// Everything one strategy measured.
struct Outcome {
    stats: Stats,
    offered: u64,
    shed: u64,
    held_back: u64,
    /// From the first intended arrival until every accepted request was done.
    elapsed: Duration,
    rss: Vec<(Duration, u64)>,
}

/// The fixed parameters of a run.
struct Plan {
    threads: usize,
    max_queued: usize,
    iters: u64,
    /// Requests per second.
    rate: f64,
    total: u64,
    window: Duration,
    windows: usize,
    body_bytes: usize,
}

/// Hands an accepted request's Task to a handler task of its own.
fn handle(
    stats: &Arc<Mutex<Stats>>,
    task: offload::Task<JobOutput>,
    origin: Instant,
    intended: Instant,
    submitted: Instant,
) {
    {
        let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
        s.outstanding += 1;
        s.accept_late
            .saturating_record(micros(submitted.saturating_duration_since(intended)));
    }
    let stats = Arc::clone(stats);
    // The JoinHandle is dropped: a finished handler's memory is freed at
    // once, as a server's would be.
    drop(tokio::spawn(async move {
        let result = task.await;
        let done = Instant::now();
        let mut s = stats.lock().unwrap_or_else(PoisonError::into_inner);
        s.outstanding -= 1;
        match result {
            Ok((wait, run, hash)) => {
                s.completed += 1;
                s.job_run.saturating_record(micros(run));
                s.checksum ^= hash;
                let wait = micros(wait);
                s.queue_wait.saturating_record(wait);
                let second = submitted.saturating_duration_since(origin).as_secs() as usize;
                let last = s.queue_wait_by_second.len() - 1;
                s.queue_wait_by_second[second.min(last)].saturating_record(wait);
                s.latency
                    .saturating_record(micros(done.saturating_duration_since(intended)));
            }
            Err(_) => s.failed += 1,
        }
    }));
}

async fn run(strategy: Strategy, plan: &Plan) -> Result<Outcome> {
    let mut builder = offload::Pool::builder().threads(plan.threads);
    if strategy != Strategy::Unbounded {
        builder = builder.max_queued(plan.max_queued);
    }
    let pool = builder.build()?;
    let stats = Arc::new(Mutex::new(Stats::new(plan.windows)));
    let (mut offered, mut shed, mut held_back) = (0, 0, 0);

    // A little slack so that the first arrival is not already late.
    let origin = Instant::now() + Duration::from_millis(20);
    let sampler = RssSampler::start(origin);
    let intended = |i: u64| origin + Duration::from_secs_f64(i as f64 / plan.rate);
    let deadline = origin + plan.window;
    let sleep_until = |t: Instant| tokio::time::sleep_until(tokio::time::Instant::from_std(t));

    match strategy {
        Strategy::Unbounded | Strategy::Shed => {
            let mut i = 0;
            while i < plan.total {
                let now = Instant::now();
                // Every request whose time has come, however late the loop is.
                while i < plan.total && intended(i) <= now {
                    let body = request_body(plan.body_bytes);
                    let submitted = Instant::now();
                    let job = request_job(submitted, i, plan.iters, body);
                    offered += 1;
                    if strategy == Strategy::Unbounded {
                        handle(&stats, pool.spawn(job), origin, intended(i), submitted);
                    } else {
                        match pool.try_spawn(job) {
                            Ok(task) => handle(&stats, task, origin, intended(i), submitted),
                            // A 503: the job (and the body it owns) is dropped.
                            Err(refused) if refused.is_full() => shed += 1,
                            Err(refused) => return Err(refused.to_string().into()),
                        }
                    }
                    i += 1;
                }
                if i < plan.total {
                    sleep_until(intended(i)).await;
                }
            }
        }
        Strategy::Pushback => {
            for i in 0..plan.total {
                if Instant::now() < intended(i) {
                    sleep_until(intended(i)).await;
                }
                let reserve = pool.reserve();
                let deadline = tokio::time::Instant::from_std(deadline);
                let permit = match tokio::time::timeout_at(deadline, reserve).await {
                    Ok(permit) => permit?,
                    // The window is over; the rest was never accepted.
                    Err(_) => {
                        held_back = plan.total - i;
                        break;
                    }
                };
                // Accepted only now: the body is read, the job submitted.
                let body = request_body(plan.body_bytes);
                let submitted = Instant::now();
                offered += 1;
                let task = permit.spawn(request_job(submitted, i, plan.iters, body));
                handle(&stats, task, origin, intended(i), submitted);
            }
        }
    }

    // Drain: wait for every accepted request's handler.
    loop {
        let outstanding = stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .outstanding;
        if outstanding == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = origin.elapsed();
    let rss = sampler.finish();
    pool.shutdown();
    drop(pool);
    let stats = Arc::into_inner(stats)
        .ok_or("a handler outlived the drain")?
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(Outcome {
        stats,
        offered,
        shed,
        held_back,
        elapsed,
        rss,
    })
}

// ---- report -------------------------------------------------------------------

/// A latency in µs, in the unit that suits it.
fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 10_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The last RSS sample taken at or before `t` since the origin.
fn rss_at(samples: &[(Duration, u64)], t: Duration) -> Option<u64> {
    samples
        .iter()
        .take_while(|(at, _)| *at <= t)
        .last()
        .map(|&(_, kib)| kib)
}

fn quantile(h: &Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        fmt_us(h.value_at_quantile(q))
    }
}

fn main() -> Result<()> {
    let config = parse_args()?;
    let cores = machine::cores()?;
    let load_at_start = machine::load_average();
    // The iteration count of a job of about `--job-ms`, and the measured
    // single-threaded time of one such job (median of 21).
    let iters = work::calibrate(Duration::from_secs_f64(config.job_ms / 1e3));
    let job_time = work::median_job_time(21, iters);
    let capacity = config.threads as f64 / job_time.as_secs_f64();
    let rate = config.load * capacity;
    let window = Duration::from_secs_f64(config.secs);
    // Rounded down: the budget is what the wait at a full queue may reach.
    let max_queued = ((config.threads as f64 * config.wait_budget).floor() as usize).max(1);
    let plan = Plan {
        threads: config.threads,
        max_queued,
        iters,
        rate,
        total: (rate * config.secs).floor() as u64,
        window,
        windows: (config.secs.ceil() as usize).max(1),
        body_bytes: config.payload_kb * 1024,
    };
    let goal = job_time.mul_f64(GOAL_JOB_TIMES);

    println!(
        "overload: an offload pool offered {:.1}× its capacity, three ways",
        config.load
    );
    println!("machine: {cores} cores; load average at start: {load_at_start}");
    println!(
        "pool: {} workers; job: {:.2} M hash iterations = {} single-threaded (target {} ms); capacity {:.0} req/s",
        config.threads,
        iters as f64 / 1e6,
        fmt_us(micros(job_time)),
        config.job_ms,
        capacity
    );
    println!(
        "offered: {:.0} req/s for {} s = {} requests, open loop (times from each request's intended arrival); body {} KiB each",
        rate, config.secs, plan.total, config.payload_kb
    );
    println!(
        "bounded pools: max_queued = threads × budget / job = {} × {} = {} (typical wait at a full queue ≈ {})",
        config.threads,
        config.wait_budget,
        max_queued,
        fmt_us(micros(job_time.mul_f64(max_queued as f64 / config.threads as f64)))
    );
    println!(
        "run order: try_spawn shed, reserve pushback, unbounded spawn (the unbounded queue last)"
    );
    println!();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut outcomes: Vec<Option<Outcome>> = Strategy::ALL.iter().map(|_| None).collect();
    for strategy in Strategy::RUN_ORDER {
        trim_heap();
        let outcome = runtime.block_on(run(strategy, &plan))?;
        let index = Strategy::ALL
            .iter()
            .position(|s| *s == strategy)
            .unwrap_or(0);
        outcomes[index] = Some(outcome);
    }
    let outcomes: Vec<(Strategy, Outcome)> = Strategy::ALL
        .into_iter()
        .zip(outcomes)
        .filter_map(|(s, o)| o.map(|o| (s, o)))
        .collect();

    // Every strategy ran the same job on every request it completed.
    if outcomes.iter().any(|(_, o)| o.stats.failed > 0) {
        return Err("a request's job failed".into());
    }

    println!(
        "{:<18}{:>9}{:>9}{:>8}{:>10}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}",
        "", "", "", "", "held", "queue wait", "", "", "job run", "e2e", "accept late"
    );
    println!(
        "{:<18}{:>9}{:>9}{:>8}{:>10}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}",
        "strategy", "offered", "done", "shed", "back", "p50", "p99", "max", "p50", "p99", "p99"
    );
    for (strategy, o) in &outcomes {
        let s = &o.stats;
        println!(
            "{:<18}{:>9}{:>9}{:>8}{:>10}{:>11}{:>11}{:>11}{:>11}{:>11}{:>12}",
            strategy.label(),
            o.offered,
            s.completed,
            o.shed,
            o.held_back,
            quantile(&s.queue_wait, 0.5),
            quantile(&s.queue_wait, 0.99),
            if s.queue_wait.is_empty() {
                "-".into()
            } else {
                fmt_us(s.queue_wait.max())
            },
            quantile(&s.job_run, 0.5),
            quantile(&s.latency, 0.99),
            quantile(&s.accept_late, 0.99),
        );
    }
    println!();

    // Per second: queue wait p99 (by second of submission) and RSS.
    let seconds: Vec<String> = (0..plan.windows)
        .map(|k| format!("{}-{} s", k, k + 1))
        .collect();
    print!("{:<34}", "queue wait p99, by second submitted");
    for label in &seconds {
        print!("{label:>11}");
    }
    println!();
    for (strategy, o) in &outcomes {
        print!("{:<34}", strategy.label());
        for h in &o.stats.queue_wait_by_second {
            print!("{:>11}", quantile(h, 0.99));
        }
        println!();
    }
    println!();
    print!("{:<34}{:>8}", "RSS MiB (VmRSS every 250 ms)", "start");
    for k in 1..=plan.windows {
        print!("{:>8}", format!("{k} s"));
    }
    println!("{:>8}{:>8}{:>10}", "peak", "end", "done at");
    for (strategy, o) in &outcomes {
        let start = o.rss.first().map_or(0, |&(_, kib)| kib);
        let peak = o.rss.iter().map(|&(_, kib)| kib).max().unwrap_or(0);
        let end = o.rss.last().map_or(0, |&(_, kib)| kib);
        print!("{:<34}{:>8.1}", strategy.label(), mib(start));
        for k in 1..=plan.windows {
            let t = Duration::from_secs(k as u64).min(plan.window);
            match rss_at(&o.rss, t) {
                Some(kib) => print!("{:>8.1}", mib(kib)),
                None => print!("{:>8}", "-"),
            }
        }
        println!(
            "{:>8.1}{:>8.1}{:>10}",
            mib(peak),
            mib(end),
            format!("{:.1} s", o.elapsed.as_secs_f64())
        );
    }
    println!();

    println!(
        "goals (queue wait p99 ≤ {GOAL_JOB_TIMES}× the job = {}; memory flat: RSS grows < {FLAT_MIB} MiB over the arrival window):",
        fmt_us(micros(goal))
    );
    for (strategy, o) in &outcomes {
        let s = &o.stats;
        let p99 = if s.queue_wait.is_empty() {
            0
        } else {
            s.queue_wait.value_at_quantile(0.99)
        };
        let start = o.rss.first().map_or(0, |&(_, kib)| kib);
        let at_end = rss_at(&o.rss, plan.window).unwrap_or(start);
        let growth = mib(at_end) - mib(start);
        let by_second: Vec<u64> = s
            .queue_wait_by_second
            .iter()
            .filter(|h| !h.is_empty())
            .map(|h| h.value_at_quantile(0.99))
            .collect();
        let grows = by_second.len() > 1 && by_second.windows(2).all(|w| w[1] > w[0]);
        let verdict = match strategy {
            Strategy::Unbounded => format!(
                "queue wait p99 grows every second: {}; RSS {:+.1} MiB",
                if grows { "yes" } else { "no" },
                growth
            ),
            _ => format!(
                "queue wait p99 {} ≤ {}: {}; RSS {:+.1} MiB: {}",
                fmt_us(p99),
                fmt_us(micros(goal)),
                if p99 <= micros(goal) {
                    "met"
                } else {
                    "NOT met"
                },
                growth,
                if growth < FLAT_MIB {
                    "flat"
                } else {
                    "NOT flat"
                }
            ),
        };
        println!("  {:<18}{verdict}", strategy.label());
    }
    println!();
    let checksum = outcomes
        .iter()
        .fold(0, |acc, (_, o)| acc ^ o.stats.checksum);
    println!(
        "measured in {:.1} s; load average at the end: {} (checksum {:x})",
        started.elapsed().as_secs_f64(),
        machine::load_average(),
        black_box(checksum) & 0xffff
    );
    Ok(())
}
