//! Find what blocks your loop: `offload::LoopWatch` on a small tokio server
//! whose handler calls a blocking function, then on three executors, then
//! what watching costs.
//!
//! ```text
//! cargo run --release --example stall
//! ```
//!
//! 1. **The server.** A current-thread tokio runtime serves a line protocol
//!    on loopback; each request makes the handler call `render_report`, a
//!    CPU-bound function of about 50 ms. A client sends a few requests. With
//!    the call made on the loop, the watch (threshold 20 ms) reports each
//!    stall while it is happening and names `render_report` on the stack;
//!    with the call moved to `offload::spawn`, it reports nothing.
//! 2. **Detection.** On tokio, smol and a futures executor, ten stalls of
//!    50 ms each, in a blocking system call (a `thread::sleep` in
//!    `stall_for`: the stack is copied through `/proc`) and in user code (a
//!    spin in `spin_for`: through a signal), each begun just after the loop
//!    answered a wake-up (the worst case): how long after the stall began
//!    the report came (the bound is threshold + period = 30 ms, plus the
//!    capture and the symbolization), whether the stack names the function,
//!    and what the capture cost the watcher (copy p50/p99, unwinding and
//!    symbolizing p50/max, from each report's `{:#}` form).
//! 3. **Cost.** Process CPU of an idle tokio loop over 3 s without a watch
//!    and with one at three periods (getrusage), and the throughput of a busy
//!    loop (small tasks) with and without one, in alternating rounds.
//! 4. **No EINTR.** A loop stalled again and again in `poll(2)` with a
//!    30 ms timeout (a call the kernel never restarts after a signal),
//!    watched with a 5 ms threshold and a 1 ms period, until 1 000 stalls
//!    were captured (the first argument changes the count): how many of
//!    its calls returned `EINTR`.
//! 5. **A slow reporter.** Part 2's futures row (user code) again, alone and
//!    beside a second loop that stalls without pause and whose reporter
//!    sleeps 1 s on each report: the difference in delay is what the slow
//!    reporter costs another watch.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{self, Either};
use offload::{LoopWatch, Stall};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[path = "support/mod.rs"]
mod support;

use support::machine;
use support::work::{calibrate, hash_job};

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

const THRESHOLD: Duration = Duration::from_millis(20);
/// `LoopWatch`'s default period at this threshold (half of it).
const PERIOD: Duration = Duration::from_millis(10);
const REQUESTS: usize = 3;
const STALL: Duration = Duration::from_millis(50);
const STALLS: usize = 10;

/// The blocking function: about 50 ms of CPU work.
#[inline(never)]
fn render_report(seed: u64, iters: u64) -> String {
    format!("report {:x}", hash_job(seed, iters))
}

/// Serves `REQUESTS` requests of one client, calling `render_report` on the
/// loop (`offloaded == false`) or through `offload::spawn`. Returns the
/// stalls the watch saw.
fn serve(offloaded: bool, iters: u64) -> Result<Vec<Stall>> {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let seen = reports.clone();
    let watch = LoopWatch::new(THRESHOLD).on_stall(move |stall| {
        // What the default reporter writes to stderr: the whole report
        // while the stall lasts, its first line when it is over.
        if stall.is_ongoing() {
            println!("{stall}");
        } else {
            println!("{}", stall.to_string().lines().next().unwrap_or_default());
        }
        seen.lock().unwrap().push(stall.clone());
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let waiting = reports.clone();
    runtime.block_on(async move {
        let watching = tokio::spawn(watch);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let client = std::thread::spawn(move || -> std::io::Result<()> {
            let mut stream = BufReader::new(TcpStream::connect(address)?);
            for id in 0..REQUESTS {
                writeln!(stream.get_mut(), "GET /report/{id}")?;
                let mut response = String::new();
                stream.read_line(&mut response)?;
            }
            Ok(())
        });
        let (socket, _) = listener.accept().await?;
        let (read, mut write) = socket.into_split();
        let mut lines = tokio::io::BufReader::new(read).lines();
        let mut seed = 0;
        while let Some(_request) = lines.next_line().await? {
            seed += 1;
            let body = if offloaded {
                offload::spawn(move || render_report(seed, iters)).await?
            } else {
                render_report(seed, iters)
            };
            write.write_all(format!("{body}\n").as_bytes()).await?;
        }
        client.join().expect("the client thread")?;
        // Let the watch report the end of the last stall before it goes.
        let ended = |reports: &[Stall]| reports.iter().filter(|s| !s.is_ongoing()).count();
        let all_ended = || {
            let reports = waiting.lock().unwrap();
            ended(&reports) == reports.len() - ended(&reports)
        };
        while !all_ended() {
            tokio::task::yield_now().await;
        }
        watching.abort();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let reports = reports.lock().unwrap().clone();
    Ok(reports)
}

/// The stall of part 2 (it reads the clock after the sleep, so that the
/// sleep is not a tail call and `stall_for` keeps a frame of its own).
#[inline(never)]
fn stall_for(duration: Duration) -> Duration {
    let start = Instant::now();
    std::thread::sleep(duration);
    start.elapsed()
}

#[derive(Clone, Copy, Debug)]
enum Executor {
    Tokio,
    Smol,
    Futures,
}

/// The stall of part 2 in user code: a spin of `duration`.
#[inline(never)]
fn spin_for(duration: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
    start.elapsed()
}

/// Where a stall of part 2 is spent.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// In a blocking system call (`stall_for`).
    Syscall,
    /// In user code (`spin_for`).
    UserCode,
}

/// The capture's cost, read back from the trailer of a report's `{:#}`
/// form ("stack copied through X in 85 µs, unwound and symbolized in
/// 2.3 ms").
fn capture_cost(stall: &Stall) -> Option<(Duration, Duration)> {
    let full = format!("{stall:#}");
    let line = full.lines().last()?;
    let rest = line.split_once("stack copied through ")?.1;
    let (copy, unwind) = rest.split_once(", unwound and symbolized in ")?;
    let copy = copy.split_once(" in ")?.1;
    let unwind = unwind.trim_end_matches(')');
    Some((parse_rounded(copy)?, parse_rounded(unwind)?))
}

fn parse_rounded(text: &str) -> Option<Duration> {
    let (value, unit) = text.trim().split_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let scale = match unit {
        "ns" => 1e-9,
        "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(value * scale))
}

/// Runs `body` on `executor` with `watch` polled by the same loop.
fn run_watched<T>(
    executor: Executor,
    watch: LoopWatch,
    body: impl std::future::Future<Output = T>,
) -> T {
    let both = async move {
        match future::select(watch, std::pin::pin!(body)).await {
            Either::Left(_) => unreachable!("a LoopWatch never completes"),
            Either::Right((value, _)) => value,
        }
    };
    match executor {
        Executor::Tokio => tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(both),
        Executor::Smol => smol::block_on(both),
        Executor::Futures => futures::executor::block_on(both),
    }
}

/// Yields to the executor until `done`.
async fn turn_until(done: impl Fn() -> bool) {
    while !done() {
        let mut yielded = false;
        future::poll_fn(|cx| {
            if std::mem::replace(&mut yielded, true) {
                std::task::Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
    }
}

/// What part 2 measured on one executor and kind of stall.
struct Detected {
    /// From each stall's start to its ongoing report.
    delays: Vec<Duration>,
    /// How many stacks named the stalling function.
    named: usize,
    /// Each capture's copy, and its unwinding and symbolizing.
    costs: Vec<(Duration, Duration)>,
}

/// Part 2 on one executor.
fn detection(executor: Executor, kind: Kind) -> Detected {
    let started = Arc::new(Mutex::new(Instant::now()));
    let delays = Arc::new(Mutex::new(Vec::new()));
    let named = Arc::new(Mutex::new(0));
    let costs = Arc::new(Mutex::new(Vec::new()));
    let (start, delay, name, cost) = (
        started.clone(),
        delays.clone(),
        named.clone(),
        costs.clone(),
    );
    let function = match kind {
        Kind::Syscall => "stall_for",
        Kind::UserCode => "spin_for",
    };
    let watch = LoopWatch::new(THRESHOLD).on_stall(move |stall| {
        if stall.is_ongoing() {
            delay.lock().unwrap().push(start.lock().unwrap().elapsed());
            let names = stall.stack().unwrap_or_default().iter();
            if names
                .filter_map(|frame| frame.function())
                .any(|f| f.contains(function))
            {
                *name.lock().unwrap() += 1;
            }
            cost.lock().unwrap().extend(capture_cost(stall));
        }
    });
    let stats = watch.stats();
    run_watched(executor, watch, async {
        turn_until(|| stats.samples() > 0).await;
        for i in 0..STALLS as u64 {
            // Start each stall just after the loop answered a wake-up: the
            // next one comes a whole period later, the worst case.
            turn_until(|| stats.samples() > 2 * i + 1).await;
            *started.lock().unwrap() = Instant::now();
            match kind {
                Kind::Syscall => black_box(stall_for(STALL)),
                Kind::UserCode => black_box(spin_for(STALL)),
            };
            turn_until(|| stats.stalls() > i).await;
        }
        turn_until(|| delays.lock().unwrap().len() >= STALLS).await;
    });
    let delays = delays.lock().unwrap().clone();
    let named = *named.lock().unwrap();
    let costs = costs.lock().unwrap().clone();
    Detected {
        delays,
        named,
        costs,
    }
}

/// One `poll(2)` of `timeout_ms` with nothing to wait for: `true` if it
/// returned `EINTR`.
#[inline(never)]
fn poll_interrupted(timeout_ms: i32) -> bool {
    // SAFETY: poll with no descriptors only sleeps.
    let polled = unsafe { libc::poll(std::ptr::null_mut(), 0, timeout_ms) };
    polled < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
}

/// Part 4: `captures` stalls in `poll(2)`; returns the calls made, how
/// many returned `EINTR`, and how many stalls had a stack.
fn eintr(captures: usize) -> (usize, usize, usize) {
    let stacks = Arc::new(Mutex::new((0usize, 0usize)));
    let seen = stacks.clone();
    let watch = LoopWatch::new(Duration::from_millis(5))
        .period(Duration::from_millis(1))
        .on_stall(move |stall| {
            if stall.is_ongoing() {
                let mut seen = seen.lock().unwrap();
                seen.0 += 1;
                seen.1 += usize::from(stall.stack().is_some());
            }
        });
    let (mut calls, mut interrupted) = (0, 0);
    let yielded = std::cell::Cell::new(false);
    run_watched(Executor::Futures, watch, async {
        while stacks.lock().unwrap().0 < captures {
            // A turn of the loop between the calls: the watch is polled.
            yielded.set(false);
            turn_until(|| yielded.replace(true)).await;
            calls += 1;
            interrupted += usize::from(poll_interrupted(30));
        }
    });
    let with_stack = stacks.lock().unwrap().1;
    (calls, interrupted, with_stack)
}

/// Part 5's neighbour: a loop on its own thread that stalls again and
/// again, watched by a reporter that sleeps 1 s; runs until `stop`.
fn slow_neighbour(stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let watch = LoopWatch::new(THRESHOLD).on_stall(|stall| {
            if stall.is_ongoing() {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        run_watched(Executor::Futures, watch, async {
            while !stop.load(Ordering::Relaxed) {
                black_box(spin_for(STALL));
                let yielded = std::cell::Cell::new(false);
                turn_until(|| yielded.replace(true)).await;
            }
        });
    })
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Part 3a: process CPU per second of an idle tokio loop, with or without a
/// watch.
fn idle_cpu(period: Option<Duration>, time: Duration) -> Result<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async {
        let watching = period.map(|period| tokio::spawn(LoopWatch::new(THRESHOLD).period(period)));
        tokio::task::yield_now().await;
        let before = machine::cpu_time();
        tokio::time::sleep(time).await;
        let used = machine::cpu_time()
            .zip(before)
            .map(|(after, before)| after - before);
        if let Some(watching) = watching {
            watching.abort();
        }
        Ok(used.map_or(f64::NAN, |used| used.as_secs_f64() / time.as_secs_f64()))
    })
}

/// Part 3b: tasks that yield, completed per second on a busy tokio loop.
fn busy_rate(watched: bool, time: Duration) -> Result<f64> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let watching = watched.then(|| tokio::spawn(LoopWatch::new(THRESHOLD)));
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < time {
            let tasks: Vec<_> = (0..64)
                .map(|i| tokio::spawn(async move { black_box(hash_job(i, 2_000)) }))
                .collect();
            for task in tasks {
                black_box(task.await?);
                done += 1;
            }
        }
        if let Some(watching) = watching {
            watching.abort();
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn main() -> Result<()> {
    println!(
        "machine: {} cores, load average {}",
        machine::cores()?,
        machine::load_average()
    );
    let iters = calibrate(STALL);

    println!("\n## 1. A tokio server whose handler calls render_report (~50 ms of CPU)\n");
    println!("### on the loop");
    let inline = serve(false, iters)?;
    println!("### through offload::spawn");
    let offloaded = serve(true, iters)?;
    let stalls = |reports: &[Stall]| reports.iter().filter(|s| !s.is_ongoing()).count();
    let naming = inline
        .iter()
        .filter(|stall| stall.to_string().contains("render_report"))
        .count();
    println!(
        "\n{REQUESTS} requests: on the loop {} stalls ({} reports name render_report); offloaded {} stalls, {} reports",
        stalls(&inline),
        naming,
        stalls(&offloaded),
        offloaded.len()
    );

    println!(
        "\n## 2. Detection: {STALLS} stalls of {} each, threshold {}, period {} (bound {})\n",
        ms(STALL),
        ms(THRESHOLD),
        ms(PERIOD),
        ms(THRESHOLD + PERIOD)
    );
    let mut rows = Vec::new();
    for executor in [Executor::Tokio, Executor::Smol, Executor::Futures] {
        for kind in [Kind::Syscall, Kind::UserCode] {
            let Detected {
                mut delays,
                named,
                costs,
            } = detection(executor, kind);
            delays.sort();
            let mut copies: Vec<Duration> = costs.iter().map(|cost| cost.0).collect();
            let mut unwinds: Vec<Duration> = costs.iter().map(|cost| cost.1).collect();
            copies.sort();
            unwinds.sort();
            rows.push(vec![
                format!("{executor:?}"),
                format!("{kind:?}"),
                format!("{}", delays.len()),
                ms(quantile(&delays, 0.5)),
                ms(quantile(&delays, 1.0)),
                format!("{named}/{}", delays.len()),
                format!(
                    "{:.0} / {:.0} µs",
                    quantile(&copies, 0.5).as_secs_f64() * 1e6,
                    quantile(&copies, 0.99).as_secs_f64() * 1e6
                ),
                format!(
                    "{} / {}",
                    ms(quantile(&unwinds, 0.5)),
                    ms(quantile(&unwinds, 1.0))
                ),
            ]);
        }
    }
    let headers = [
        "executor",
        "stalled in",
        "reported",
        "delay p50",
        "delay max",
        "stack names it",
        "copy p50 / p99",
        "unwind+symbolize p50 / max",
    ];
    support::table::print(&headers.map(String::from), &rows, 1, false);

    println!("\n## 3. Cost at the default period\n");
    let idle_time = Duration::from_secs(3);
    let periods = [None, Some(PERIOD), Some(PERIOD * 2), Some(PERIOD * 5)];
    let mut idle: Vec<Vec<f64>> = periods.iter().map(|_| Vec::new()).collect();
    for _ in 0..3 {
        for (period, samples) in periods.iter().zip(&mut idle) {
            samples.push(idle_cpu(*period, idle_time)?);
        }
    }
    let idle: Vec<f64> = idle.into_iter().map(median).collect();
    for (period, cores) in periods.iter().zip(&idle) {
        let label = period.map_or_else(
            || "not watched".to_string(),
            |p| format!("period {}", ms(p)),
        );
        println!(
            "idle loop, {label:<18} process CPU {cores:.4} cores (+{:.4}; median of 3 × 3 s)",
            cores - idle[0]
        );
    }
    let (mut busy_bare, mut busy_watched) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        busy_bare.push(busy_rate(false, Duration::from_secs(1))?);
        busy_watched.push(busy_rate(true, Duration::from_secs(1))?);
    }
    let (busy_bare, busy_watched) = (median(busy_bare), median(busy_watched));
    println!(
        "busy loop, tasks/s: {busy_bare:.0} bare, {busy_watched:.0} watched ({:.3}×; median of 7 × 1 s, alternating)",
        busy_watched / busy_bare
    );

    let captures = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(1_000);
    println!("\n## 4. EINTR: {captures} stalls captured in poll(2) (30 ms timeout; threshold 5 ms, period 1 ms)\n");
    let (calls, interrupted, with_stack) = eintr(captures);
    println!(
        "{calls} calls, {interrupted} returned EINTR; {with_stack} of {captures} captures had a stack"
    );

    println!("\n## 5. A reporter that sleeps 1 s on another watch\n");
    let mut alone = detection(Executor::Futures, Kind::UserCode).delays;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let neighbour = slow_neighbour(stop.clone());
    let mut beside = detection(Executor::Futures, Kind::UserCode).delays;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    neighbour.join().expect("the neighbour loop");
    alone.sort();
    beside.sort();
    println!(
        "delay p50 / max: alone {} / {}, beside the slow reporter {} / {} (+{} at p50)",
        ms(quantile(&alone, 0.5)),
        ms(quantile(&alone, 1.0)),
        ms(quantile(&beside, 0.5)),
        ms(quantile(&beside, 1.0)),
        ms(quantile(&beside, 0.5).saturating_sub(quantile(&alone, 0.5)))
    );
    Ok(())
}
