//! A soak test: a mixed, service-like load for a given time, checking that
//! nothing grows and nothing is lost.
//!
//! ```text
//! cargo run --release --example soak -- --secs 60
//! ```
//!
//! An async loop (tokio's current-thread runtime, watched by a
//! `LoopWatch`) sends, every second, about 0.8 s of requests to a pool of
//! two workers with blocking detection on and a short
//! `blocking_keep_alive` (50 ms): CPU jobs (with `join`), jobs that block
//! unmarked (detected, helped) and marked (`offload::blocking`, a stand-in),
//! `spawn_blocking` and `try_spawn_blocking` jobs, jobs cancelled, jobs
//! awaited with a timeout shorter than they take (the Task dropped), jobs
//! that panic; and to a bounded pool (`max_queued`) through `try_spawn`
//! and `reserve`. Now and then the loop itself stalls, for the watch to
//! report. Then it waits until every request is answered and the spare
//! threads have expired (they restart in the next second), and samples the
//! process: open file descriptors, live threads, resident memory, and the
//! pools' metrics.
//!
//! At the end it prints the series and exits non-zero if:
//! - open descriptors or threads at a quiet moment grew by more than 2
//!   from the first sample after the warm-up (the first tenth of the run,
//!   at least 3 s), or resident memory by more than 8 MiB;
//! - a Task was lost: a request whose answer never came (30 s), a job
//!   closure neither run nor dropped, a job that ran on a thread where the
//!   pool's `on_thread_start` hook did not run, or a thread that ran the
//!   start hook and not the stop hook;
//! - the metrics do not add up: spawned, refused and panicked as the
//!   ledger counted, every spawned Task completed, panicked or cancelled;
//! - the loop's stalls went unreported.

use std::cell::Cell;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use offload::{JoinError, LoopWatch, Pool, Task};

/// The ledger: what the loop submitted and what came back.
#[derive(Default)]
struct Ledger {
    /// Tasks created, per pool (main, bounded).
    spawned: [AtomicU64; 2],
    /// Submissions refused, per pool.
    refused: [AtomicU64; 2],
    /// Job closures made, and dropped (after running or not).
    closures: AtomicU64,
    closures_dropped: AtomicU64,
    /// Jobs that started running and panic on purpose.
    panics_run: AtomicU64,
    /// Requests answered: Ok, a panic, cancelled, timed out (Task dropped).
    ok: AtomicU64,
    panicked: AtomicU64,
    cancelled: AtomicU64,
    timed_out: AtomicU64,
    /// Requests whose answer never came: lost Tasks.
    lost: AtomicU64,
    /// Jobs that ran where the pool's start hook did not.
    no_set_up: AtomicU64,
    /// Thread hooks run.
    starts: AtomicU64,
    stops: AtomicU64,
    /// Stalls caused on the loop, and stalls the watch reported (ended).
    stalls_caused: AtomicU64,
    stalls_seen: AtomicU64,
}

static LEDGER: std::sync::LazyLock<Ledger> = std::sync::LazyLock::new(Ledger::default);

thread_local! {
    /// Set by the pools' `on_thread_start` hook.
    static SET_UP: Cell<bool> = const { Cell::new(false) };
}

const MAIN: usize = 0;
const BOUNDED: usize = 1;

/// A job closure's witness: counts its drop, whether the job ran or not.
struct Witness;

impl Witness {
    fn new() -> Self {
        LEDGER.closures.fetch_add(1, Ordering::Relaxed);
        Witness
    }

    /// The job runs: checks that its thread was set up.
    fn ran(&self) {
        if !SET_UP.with(Cell::get) {
            LEDGER.no_set_up.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        LEDGER.closures_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wraps `f` into a job that carries a witness.
fn job<T>(f: impl FnOnce() -> T + Send + 'static) -> impl FnOnce() -> T + Send + 'static {
    let witness = Witness::new();
    move || {
        witness.ran();
        f()
    }
}

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn fib(n: u32) -> u64 {
    if n < 2 {
        return u64::from(n);
    }
    let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
    a + b
}

/// Awaits a Task with a watchdog: an answer that never comes is a lost Task.
async fn settle<T>(task: Task<T>) {
    match tokio::time::timeout(Duration::from_secs(30), task).await {
        Ok(Ok(_)) => {
            LEDGER.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(error)) => record(&error),
        Err(_) => {
            LEDGER.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn record(error: &JoinError) {
    if error.is_panic() {
        LEDGER.panicked.fetch_add(1, Ordering::Relaxed);
    } else {
        LEDGER.cancelled.fetch_add(1, Ordering::Relaxed);
    }
}

fn spawned(pool: usize) {
    LEDGER.spawned[pool].fetch_add(1, Ordering::Relaxed);
}

/// One request of kind `kind`: submits its job(s) and awaits the answer.
async fn request(main: Pool, bounded: Pool, kind: u64) {
    match kind % 12 {
        // CPU work with fork-join.
        0..=2 => {
            spawned(MAIN);
            settle(main.spawn(job(|| {
                spin(Duration::from_micros(200));
                fib(12)
            })))
            .await;
        }
        // A blocking call nobody marked: detected, helped.
        3 => {
            spawned(MAIN);
            settle(main.spawn(job(|| thread::sleep(Duration::from_millis(2))))).await;
        }
        // A marked blocking call in the middle of CPU work: a stand-in.
        4 => {
            spawned(MAIN);
            settle(main.spawn(job(|| {
                spin(Duration::from_micros(100));
                offload::blocking(|| thread::sleep(Duration::from_millis(2)));
                spin(Duration::from_micros(100));
            })))
            .await;
        }
        // A job that is one blocking call.
        5 => {
            spawned(MAIN);
            settle(main.spawn_blocking(job(|| thread::sleep(Duration::from_millis(3))))).await;
        }
        6 => match main.try_spawn_blocking(job(|| thread::sleep(Duration::from_millis(1)))) {
            Ok(task) => {
                spawned(MAIN);
                settle(task).await;
            }
            Err(_) => {
                LEDGER.refused[MAIN].fetch_add(1, Ordering::Relaxed);
            }
        },
        // Cancelled, queued or running.
        7 => {
            spawned(MAIN);
            let task = main.spawn(job(|| {
                for _ in 0..20 {
                    if offload::is_cancelled() {
                        return;
                    }
                    spin(Duration::from_micros(50));
                }
            }));
            task.cancel();
            settle(task).await;
        }
        // Awaited with a timeout shorter than the job: the Task is dropped.
        8 => {
            spawned(MAIN);
            let task = main.spawn(job(|| thread::sleep(Duration::from_millis(4))));
            match tokio::time::timeout(Duration::from_millis(1), task).await {
                Ok(Ok(())) => {
                    LEDGER.ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(error)) => record(&error),
                Err(_) => {
                    LEDGER.timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // A panic.
        9 => {
            spawned(MAIN);
            settle(main.spawn(job(|| {
                LEDGER.panics_run.fetch_add(1, Ordering::Relaxed);
                std::panic::panic_any(Expected);
            })))
            .await;
        }
        // The bounded pool: try_spawn, refused when full.
        10 => match bounded.try_spawn(job(|| spin(Duration::from_micros(300)))) {
            Ok(task) => {
                spawned(BOUNDED);
                settle(task).await;
            }
            Err(_) => {
                LEDGER.refused[BOUNDED].fetch_add(1, Ordering::Relaxed);
            }
        },
        // The bounded pool: wait for a slot.
        _ => match tokio::time::timeout(Duration::from_secs(30), bounded.reserve()).await {
            Ok(Ok(permit)) => {
                spawned(BOUNDED);
                settle(permit.spawn(job(|| spin(Duration::from_micros(300))))).await;
            }
            Ok(Err(_)) => unreachable!("the bounded pool is not shut down"),
            Err(_) => {
                LEDGER.lost.fetch_add(1, Ordering::Relaxed);
            }
        },
    }
}

/// The payload of the panics on purpose (not reported).
struct Expected;

/// One sample of the process and the pools.
#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: u64,
    fds: usize,
    threads: usize,
    rss_kib: u64,
    requests: u64,
    spawned: u64,
    completed: u64,
    panicked: u64,
    cancelled: u64,
    refused: u64,
    spares_peak: usize,
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, Iterator::count)
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn secs_arg() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--secs")
        .and_then(|i| args.get(i + 1))
        .map_or(30, |secs| secs.parse().expect("--secs N"))
}

fn hooked(builder: offload::Builder) -> offload::Builder {
    builder
        .on_thread_start(|_| {
            SET_UP.with(|set| set.set(true));
            LEDGER.starts.fetch_add(1, Ordering::Relaxed);
        })
        .on_thread_stop(|_| {
            LEDGER.stops.fetch_add(1, Ordering::Relaxed);
        })
}

fn main() -> ExitCode {
    let secs = secs_arg();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<Expected>() {
            default_hook(info);
        }
    }));
    let main_pool = hooked(Pool::builder().threads(2))
        .blocking_keep_alive(Duration::from_millis(50))
        .max_blocking_threads(16)
        .max_queued_blocking(8)
        .build()
        .expect("the main pool");
    let bounded = hooked(Pool::builder().threads(1))
        .max_queued(4)
        .build()
        .expect("the bounded pool");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let watch = LoopWatch::new(Duration::from_millis(20)).on_stall(|stall| {
        if !stall.is_ongoing() {
            LEDGER.stalls_seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    let spares_peak = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let requests = runtime.block_on({
        let (main_pool, bounded, samples) = (main_pool.clone(), bounded.clone(), samples.clone());
        let spares_peak = spares_peak.clone();
        async move {
            let watching = tokio::spawn(watch);
            let mut requests = 0u64;
            for second in 0..secs {
                let until = started + Duration::from_secs(second) + Duration::from_millis(800);
                let mut in_flight = Vec::new();
                while Instant::now() < until {
                    // A burst of 24 requests, then a short pause.
                    for _ in 0..24 {
                        in_flight.push(tokio::spawn(request(
                            main_pool.clone(),
                            bounded.clone(),
                            requests,
                        )));
                        requests += 1;
                    }
                    spares_peak.fetch_max(main_pool.metrics().spare_threads(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if requests % 2400 == 0 {
                        // The loop stalls: a blocking call on the loop.
                        LEDGER.stalls_caused.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(60));
                    }
                }
                for request in in_flight {
                    request.await.expect("a request");
                }
                // Quiet: the spare threads expire (they restart next second).
                let quiet = Instant::now();
                while main_pool.metrics().spare_threads() > 0
                    && quiet.elapsed() < Duration::from_secs(5)
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let m = main_pool.metrics();
                let b = bounded.metrics();
                samples.lock().unwrap().push(Sample {
                    secs: second + 1,
                    fds: count_dir("/proc/self/fd"),
                    threads: count_dir("/proc/self/task"),
                    rss_kib: rss_kib(),
                    requests,
                    spawned: m.spawned() + b.spawned(),
                    completed: m.completed() + b.completed(),
                    panicked: m.panicked() + b.panicked(),
                    cancelled: m.cancelled() + b.cancelled(),
                    refused: m.refused() + b.refused(),
                    spares_peak: spares_peak.swap(0, Ordering::Relaxed),
                });
                // Wait for the start of the next second.
                let next = started + Duration::from_secs(second + 1);
                tokio::time::sleep_until(next.into()).await;
            }
            watching.abort();
            let _ = watching.await;
            requests
        }
    });
    drop(runtime);

    let mut failures = Vec::new();
    let samples = samples.lock().unwrap().clone();
    println!(
        "{:>5} {:>4} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>6}",
        "secs",
        "fds",
        "threads",
        "rss_kib",
        "requests",
        "spawned",
        "completed",
        "panicked",
        "cancelled",
        "refused",
        "spares"
    );
    for s in &samples {
        println!(
            "{:>5} {:>4} {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>8} {:>6}",
            s.secs,
            s.fds,
            s.threads,
            s.rss_kib,
            s.requests,
            s.spawned,
            s.completed,
            s.panicked,
            s.cancelled,
            s.refused,
            s.spares_peak
        );
    }
    // Growth: from the first sample after the warm-up to every later one.
    let warm_up = (secs / 10).max(3) as usize;
    if let Some(base) = samples.get(warm_up.min(samples.len().saturating_sub(1))) {
        for s in &samples[warm_up.min(samples.len())..] {
            if s.fds > base.fds + 2 {
                failures.push(format!(
                    "open fds grew: {} at {} s, then {} at {} s",
                    base.fds, base.secs, s.fds, s.secs
                ));
            }
            if s.threads > base.threads + 2 {
                failures.push(format!(
                    "threads grew: {} at {} s, then {} at {} s",
                    base.threads, base.secs, s.threads, s.secs
                ));
            }
            if s.rss_kib > base.rss_kib + 8 * 1024 {
                failures.push(format!(
                    "RSS grew: {} KiB at {} s, then {} KiB at {} s",
                    base.rss_kib, base.secs, s.rss_kib, s.secs
                ));
            }
        }
    }

    // The ledger, with every Task settled: the metrics before shutdown.
    let l = &*LEDGER;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (m, b) = (main_pool.metrics(), bounded.metrics());
    let answered = get(&l.ok) + get(&l.panicked) + get(&l.cancelled) + get(&l.timed_out);
    let refused = get(&l.refused[MAIN]) + get(&l.refused[BOUNDED]);
    let checks = [
        (
            "requests answered or refused",
            requests,
            answered + refused + get(&l.lost),
        ),
        ("lost Tasks", get(&l.lost), 0),
        ("main pool: spawned", m.spawned(), get(&l.spawned[MAIN])),
        (
            "bounded pool: spawned",
            b.spawned(),
            get(&l.spawned[BOUNDED]),
        ),
        ("main pool: refused", m.refused(), get(&l.refused[MAIN])),
        (
            "bounded pool: refused",
            b.refused(),
            get(&l.refused[BOUNDED]),
        ),
        ("panicked", m.panicked() + b.panicked(), get(&l.panics_run)),
        ("jobs without the thread set-up", get(&l.no_set_up), 0),
    ];
    for (what, counted, expected) in checks {
        if counted != expected {
            failures.push(format!("{what}: {counted}, expected {expected}"));
        }
    }
    // Timed-out Tasks were dropped: their jobs end (or are discarded) soon.
    let settle_deadline = Instant::now() + Duration::from_secs(30);
    let settled =
        |m: &offload::Metrics| m.completed() + m.panicked() + m.cancelled() == m.spawned();
    while !(settled(&main_pool.metrics()) && settled(&bounded.metrics()))
        && Instant::now() < settle_deadline
    {
        thread::sleep(Duration::from_millis(10));
    }
    for (name, m) in [
        ("main", main_pool.metrics()),
        ("bounded", bounded.metrics()),
    ] {
        if !settled(&m) || m.queued() != 0 || m.running() != 0 {
            failures.push(format!("{name} pool's metrics do not add up:\n{m}"));
        }
    }
    let stalls_caused = get(&l.stalls_caused);
    if get(&l.stalls_seen) < stalls_caused {
        failures.push(format!(
            "the loop stalled {stalls_caused} times, the watch reported {}",
            get(&l.stalls_seen)
        ));
    }
    main_pool.shutdown();
    bounded.shutdown();
    drop((main_pool, bounded));
    if get(&l.closures) != get(&l.closures_dropped) {
        failures.push(format!(
            "job closures made {}, dropped {}",
            get(&l.closures),
            get(&l.closures_dropped)
        ));
    }
    if get(&l.starts) != get(&l.stops) {
        failures.push(format!(
            "thread start hooks {}, stop hooks {}",
            get(&l.starts),
            get(&l.stops)
        ));
    }
    println!(
        "soak: {secs} s, {requests} requests ({} ok, {} panicked, {} cancelled, {} timed out, \
         {refused} refused), {} thread set-ups, {stalls_caused} loop stalls ({} reported)",
        get(&l.ok),
        get(&l.panicked),
        get(&l.cancelled),
        get(&l.timed_out),
        get(&l.starts),
        get(&l.stalls_seen),
    );
    if failures.is_empty() {
        println!("soak: ok (fds and threads within 2, RSS within 8 MiB of the first sample after {warm_up} s; no Task lost; metrics add up)");
        ExitCode::SUCCESS
    } else {
        for failure in &failures {
            eprintln!("soak: FAILED: {failure}");
        }
        ExitCode::FAILURE
    }
}
