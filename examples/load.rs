//! An open-loop HTTP load generator for `examples/server`, and its matrix:
//! every `/work` mode of the server at 50%, 90% and 150% of
//! its pool's CPU capacity, in one table and one chart (`docs/server.svg`).
//!
//! ```text
//! cargo build --release --example server && cargo run --release --example load -- --matrix
//! cargo run --release --example load -- --matrix --runtime multi --svg docs/server-multi.svg
//! cargo run --release --example load -- --matrix --priority-compare --markdown
//! cargo run --release --example load -- --addr 127.0.0.1:8080 --load 0.9 --secs 10
//! ```
//!
//! The matrix takes about two minutes with the defaults (15 rows of 4 s,
//! plus start-up, warm-up, and the drain of the queues that grew);
//! `--secs 1` checks that everything works in under a minute.
//!
//! # The load: open loop
//!
//! Requests go out on a schedule fixed in advance: request `i` is due at
//! `start + i / rate`, whatever the server does, and its latency is
//! measured from that intended time to the moment its whole answer has
//! been read. A slow server therefore cannot slow the load down (a closed
//! loop, where each client waits for its answer before it sends again,
//! would send less exactly when the server is slow, and hide the queueing:
//! coordinated omission). `/work` and `/ping` are interleaved evenly,
//! `--ping-per-work` pings for each `/work?ms=N`.
//!
//! Each request runs as a task of its own over real TCP to 127.0.0.1, with
//! hyper's HTTP/1.1 client: it takes an idle keep-alive connection if there
//! is one, or else opens a new one at once; it never waits for a
//! connection. Open connections are capped (`--max-conns`, 2048); a
//! request due while the cap is reached and no connection is idle is not
//! sent and counts as an error, as do failed connects, broken connections
//! and requests with no answer within `--timeout` (30 s). The sleep until
//! each intended time is a Linux `timerfd` (microsecond wake-ups; tokio's
//! own timer rounds to milliseconds, which would add up to 1 ms to every
//! latency). Latencies go into `hdrhistogram`s, in µs.
//!
//! The generator is one thread: a current-thread tokio runtime, the
//! cheapest way to keep thousands of connections, so that it takes as
//! little as possible of the machine from the server it measures.
//!
//! # Capacity and load
//!
//! `--load L` means `/work` requests at `L × T × 1000 / N` per second, for
//! a pool of `--threads T` workers and `--work-ms N`: L = 1 keeps every
//! worker busy if the work is spread perfectly. The pings come on top
//! (`--ping-per-work` of them per `/work`; they cost microseconds each).
//! `--rate R` gives the total request rate instead. The `inline` mode runs
//! `/work` on the event loop itself: on a current-thread runtime its
//! capacity is one core, not T, so it is overloaded at loads above 1 / T.
//!
//! # The matrix
//!
//! `--matrix` starts `examples/server` (found beside this executable, in
//! `target/release/examples/`; `--server PATH` to use another) once per row,
//! on `127.0.0.1:0`, with `--mode`, `--runtime` (current-thread unless
//! `--runtime multi`), `--threads` and, for the offload modes,
//! `--priority inherit` (the default; `--priority-compare` adds rows at
//! `--priority nice`). For each load (`--loads`, default 0.5, 0.9, 1.5)
//! and each mode (`--modes`, default all five), taking turns mode by mode
//! so that a change in the machine's load spreads over all of them, it:
//! starts a fresh server and reads its `listening on ADDR` line; warms up
//! for `--warmup` seconds (0.5) at a quarter of the capacity, which also
//! opens the first connections; runs the load for `--secs` (4) and waits
//! for every answer; reads the server's memory; and stops it (SIGTERM,
//! SIGKILL after 5 s).
//!
//! # What shares the cores
//!
//! Everything runs on one machine: the server's event loop (one thread, or
//! one per core with `--runtime multi`), its `/work` pool (`--threads`,
//! default one per core; `spawn-blocking` grows threads as needed), and this
//! generator's thread. On a 2-core machine at 90% load the pool alone
//! needs 1.8 cores, so the loop and the generator get the rest, and the
//! scheduler decides who waits: a `/ping` waits for a core exactly as it
//! would in production with a busy pool, but the generator does too, and
//! its delay counts in the latencies (it is the `gen late p99` column).
//! Worker priority (`--priority nice`) changes that split. In production
//! the clients are elsewhere: `--generator-nice -10` (root or
//! `CAP_SYS_NICE`) raises the generator's thread above the server's while
//! it measures, which comes closer to that (the servers are started at this
//! process's own priority, so their relative priorities do not change).
//! The machine's load average is printed beside every row: other processes
//! take cores too.
//!
//! # Reading the tables (latencies in ms)
//!
//! - **/ping p50, p99, p99.9**: answered `/ping`s (200), from the intended
//!   send time.
//! - **/work done/s**: `/work` answered 200 within the sending window, per
//!   second. Below the offered rate when the server cannot keep up (or
//!   sheds); at low load slightly below it too (the answers still in flight
//!   when the window ends).
//! - **/work p99**: answered `/work` (200 only: a shed 503 returns fast and
//!   is counted, not timed, here; its p99 is in the second table).
//!   **p99 1st s / last s**: the same over the requests due in the first and
//!   in the last second: flat when the server keeps up or sheds, growing
//!   when its queue does. The second table has every second.
//! - **503**: answers 503 (shed). **errors**: no answer (not sent, connect,
//!   I/O, timeout) or another status; broken down below the tables.
//!   Percentiles count answered requests only: read them beside errors.
//! - **RSS MiB start/peak/end**: the server's resident memory after start,
//!   its peak (`VmHWM`, warm-up included), and after the last answer.
//! - **gen late p99**: how late the generator started requests, after their
//!   intended time; it is in every latency above. **load avg**: the
//!   machine's 1-minute load average before and after the row.
//! - Second table: offered rates; `/work` p99 by second due; **503 p99**;
//!   **drain s**: from the end of the window to the last answer; **peak
//!   conns**: connections open at once; **server CPU**, **gen CPU**: CPU
//!   seconds per second of the window (plus the drain), in cores.

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

#[path = "load/generator.rs"]
mod generator;
#[path = "load/report.rs"]
mod report;
#[path = "load/server.rs"]
mod server;
#[path = "support/mod.rs"]
mod support;

use generator::{Client, Outcome, Plan};
use report::Row;
use support::args::Args;
use support::machine;
use support::work;

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// The server's `/work` modes, in table order.
const MODES: [&str; 5] = [
    "inline",
    "spawn-blocking",
    "rayon",
    "offload",
    "offload-shed",
];
/// The matrix's loads, over the pool's CPU capacity.
const LOADS: [f64; 3] = [0.5, 0.9, 1.5];
/// The warm-up's load.
const WARMUP_LOAD: f64 = 0.25;
/// A pause between rows, for the previous server's exit to settle.
const BETWEEN_ROWS: Duration = Duration::from_millis(300);

const USAGE: &str = "\
usage: load --matrix [options]        every mode × load against examples/server
       load --addr HOST:PORT [options] one run against a running server
  --load L             /work rate over the pool's capacity (single run; default 0.9)
  --rate R             total requests per second instead (single run)
  --loads L,L,…        the matrix's loads (default 0.5,0.9,1.5)
  --modes M,M,…        the matrix's modes (default inline,spawn-blocking,rayon,offload,offload-shed)
  --threads T          the pool's workers, passed to the server (default: one per core)
  --work-ms N          CPU ms per /work request, an integer (default 10)
  --ping-per-work K    /ping requests per /work request (default 4)
  --secs S             sending window per run (default 4)
  --warmup S           warm-up before each run, at 25% load (default 0.5; 0 for none)
  --timeout S          per-request timeout (default 30)
  --max-conns N        connections open at once, at most (default 2048)
  --runtime R          the server's runtime: current or multi (default current)
  --priority-compare   add the offload modes at --priority nice
  --max-queued N       passed to the server for offload-shed (default: the server's)
  --server PATH        the server binary (default: examples/server beside this one)
  --server-arg ARG     one more argument for the server (repeatable)
  --svg PATH           the chart (default docs/server.svg; matrix only)
  --markdown           tables as markdown
  --generator-nice N   the generator's thread at nice N while it measures (e.g. -10;
                       below 0 needs root or CAP_SYS_NICE); servers start at the
                       caller's priority";

// ---- flags ---------------------------------------------------------------------

struct Config {
    matrix: bool,
    addr: Option<SocketAddr>,
    load: Option<f64>,
    rate: Option<f64>,
    loads: Vec<f64>,
    modes: Vec<String>,
    threads: usize,
    work_ms: u64,
    ping_per_work: f64,
    secs: f64,
    warmup: f64,
    timeout: f64,
    max_conns: usize,
    runtime: String,
    priority_compare: bool,
    max_queued: Option<usize>,
    server: Option<PathBuf>,
    server_args: Vec<String>,
    svg: Option<PathBuf>,
    markdown: bool,
    generator_nice: Option<i32>,
}

fn list<T: std::str::FromStr>(value: &str) -> Result<Vec<T>, T::Err> {
    value.split(',').map(|v| v.trim().parse()).collect()
}

fn parse_args() -> Result<Config> {
    let mut c = Config {
        matrix: false,
        addr: None,
        load: None,
        rate: None,
        loads: LOADS.to_vec(),
        modes: MODES.iter().map(|m| m.to_string()).collect(),
        threads: machine::cores()?,
        work_ms: 10,
        ping_per_work: 4.0,
        secs: 4.0,
        warmup: 0.5,
        timeout: 30.0,
        max_conns: 2048,
        runtime: "current".into(),
        priority_compare: false,
        max_queued: None,
        server: None,
        server_args: Vec::new(),
        svg: None,
        markdown: false,
        generator_nice: None,
    };
    let mut args = Args::new(USAGE);
    while let Some(arg) = args.next_arg() {
        match arg.as_str() {
            "--matrix" => c.matrix = true,
            "--priority-compare" => c.priority_compare = true,
            "--markdown" => c.markdown = true,
            _ => {
                let flag = args.flag(arg)?;
                match flag.name.as_str() {
                    "--addr" => c.addr = Some(flag.parse()?),
                    "--load" => c.load = Some(flag.parse()?),
                    "--rate" => c.rate = Some(flag.parse()?),
                    "--loads" => c.loads = flag.parse_with(list)?,
                    "--modes" => c.modes = flag.parse_with(list)?,
                    "--threads" => c.threads = flag.parse()?,
                    "--work-ms" => c.work_ms = flag.parse()?,
                    "--ping-per-work" => c.ping_per_work = flag.parse()?,
                    "--secs" => c.secs = flag.parse()?,
                    "--warmup" => c.warmup = flag.parse()?,
                    "--timeout" => c.timeout = flag.parse()?,
                    "--max-conns" => c.max_conns = flag.parse()?,
                    "--runtime" => c.runtime = flag.value,
                    "--max-queued" => c.max_queued = Some(flag.parse()?),
                    "--server" => c.server = Some(flag.value.into()),
                    "--server-arg" => c.server_args.push(flag.value),
                    "--svg" => c.svg = Some(flag.value.into()),
                    "--generator-nice" => c.generator_nice = Some(flag.parse()?),
                    _ => return Err(flag.unknown().into()),
                }
            }
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let non_negative = |x: f64| x.is_finite() && x >= 0.0;
    if !(c.work_ms > 0
        && positive(c.secs)
        && positive(c.timeout)
        && non_negative(c.ping_per_work)
        && non_negative(c.warmup)
        && c.threads > 0
        && c.max_conns > 0
        && c.load.is_none_or(positive)
        && c.rate.is_none_or(positive)
        && !c.loads.is_empty()
        && c.loads.iter().all(|&l| positive(l)))
    {
        return Err(format!("rates, loads and times must be positive\n{USAGE}").into());
    }
    if !["current", "multi"].contains(&c.runtime.as_str()) {
        return Err(format!("--runtime {}: current or multi\n{USAGE}", c.runtime).into());
    }
    if let Some(m) = c.modes.iter().find(|m| !MODES.contains(&m.as_str())) {
        return Err(format!("--modes: unknown mode {m}\n{USAGE}").into());
    }
    if c.matrix == c.addr.is_some() {
        return Err(format!("give either --matrix or --addr\n{USAGE}").into());
    }
    if c.load.is_some() && c.rate.is_some() {
        return Err(format!("give --load or --rate, not both\n{USAGE}").into());
    }
    Ok(c)
}

impl Config {
    /// `/work` requests per second the pool can serve.
    fn capacity(&self) -> f64 {
        self.threads as f64 * 1000.0 / self.work_ms as f64
    }

    fn plan(&self, work_rate: f64, secs: f64) -> Plan {
        Plan {
            work_rate,
            ping_per_work: self.ping_per_work,
            work_ms: self.work_ms,
            secs,
            timeout: Duration::from_secs_f64(self.timeout),
        }
    }

    fn warmup_plan(&self) -> Option<Plan> {
        (self.warmup > 0.0).then(|| self.plan(WARMUP_LOAD * self.capacity(), self.warmup))
    }
}

// ---- the machine -----------------------------------------------------------------

/// Lets this thread's timers fire to the microsecond (Linux's default slack
/// is 50 µs), and lets the generator and the servers it starts hold as
/// many sockets as the hard limit allows.
fn tune_process() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on this process, with valid arguments.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Sets this thread's nice value (Linux: nice values are per thread, so
/// the servers this process starts, and the threads they start, are not
/// affected); returns the previous one.
#[cfg(target_os = "linux")]
fn set_thread_nice(nice: i32) -> std::io::Result<i32> {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // getpriority returns -1 both as a nice value and as an error: errno
    // tells them apart, so clear it first.
    // SAFETY: `__errno_location` returns this thread's errno, valid for
    // writes for as long as the thread lives.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain system call on our own thread id.
    let old = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
    if old == -1 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(0) {
            return Err(err);
        }
    }
    // With `PRIO_PROCESS` and a thread id, Linux changes that thread only
    // (setpriority(2), "BUGS").
    // SAFETY: plain system call on our own thread id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(old)
}

#[cfg(not(target_os = "linux"))]
fn set_thread_nice(_nice: i32) -> std::io::Result<i32> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "per-thread nice values are Linux only",
    ))
}

/// Runs the warm-up (if any) and the measured load against `addr` on
/// `rt`; `pid` is the server's, for its CPU time. Returns the outcome and
/// the server's and the generator's CPU use in cores.
fn measure(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    plan: &Plan,
    addr: SocketAddr,
    pid: Option<u32>,
) -> Result<(Outcome, Option<f64>, Option<f64>)> {
    let restore = config
        .generator_nice
        .and_then(|nice| match set_thread_nice(nice) {
            Ok(old) => Some(old),
            Err(e) => {
                eprintln!("--generator-nice {nice}: {e}; measuring at the usual priority");
                None
            }
        });
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(rt, async {
        let client = Rc::new(Client::new(addr, config.max_conns));
        if let Some(warmup) = config.warmup_plan() {
            generator::run(&client, &warmup).await?;
        }
        let server_cpu = pid.and_then(server::cpu_time);
        let own_cpu = server::own_cpu_time();
        let start = generator::now_ns();
        let outcome = generator::run(&client, plan).await?;
        let wall = (generator::now_ns() - start) as f64 / 1e9;
        let cores = |before: Option<Duration>, after: Option<Duration>| {
            before
                .zip(after)
                .map(|(b, a)| a.saturating_sub(b).as_secs_f64() / wall)
        };
        let server_cpu = cores(server_cpu, pid.and_then(server::cpu_time));
        let own_cpu = cores(own_cpu, server::own_cpu_time());
        Ok::<_, std::io::Error>((outcome, server_cpu, own_cpu))
    });
    // Dropping the LocalSet closes every connection.
    drop(local);
    if let Some(old) = restore {
        // Back to where it was (raising a nice value is always allowed), so
        // that the next server starts at the caller's priority.
        set_thread_nice(old)?;
    }
    Ok(result?)
}

// ---- one run ---------------------------------------------------------------------

fn single(config: &Config) -> Result<()> {
    let addr = config.addr.expect("checked by parse_args");
    let (plan, load) = match config.rate {
        Some(rate) => (
            config.plan(rate / (1.0 + config.ping_per_work), config.secs),
            None,
        ),
        None => {
            let load = config.load.unwrap_or(0.9);
            (
                config.plan(load * config.capacity(), config.secs),
                Some(load),
            )
        }
    };
    println!(
        "load: {addr}, {:.0} /work/s (?ms={}) + {:.0} /ping/s for {} s, open loop; machine: {} cores",
        plan.work_rate,
        config.work_ms,
        plan.ping_rate(),
        config.secs,
        machine::cores()?
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let load_before = machine::load_average_1m();
    let (outcome, _, generator_cpu) = measure(&rt, config, &plan, addr, None)?;
    let row = Row {
        label: "server".into(),
        load,
        outcome: Some(outcome),
        failure: None,
        mem_start: None,
        mem_end: None,
        load_avg: (load_before, machine::load_average_1m()),
        server_cpu: None,
        generator_cpu,
    };
    let rows = [row];
    println!();
    report::print_main(&rows, config.markdown);
    println!();
    report::print_details(&rows, config.markdown);
    report::print_problems(&rows);
    Ok(())
}

// ---- the matrix ------------------------------------------------------------------

/// One server configuration of the matrix: a mode, and for the offload
/// modes, the workers' priority.
struct Variant {
    mode: String,
    priority: Option<&'static str>,
}

impl Variant {
    fn label(&self) -> String {
        match self.priority {
            Some("nice") => format!("{} nice", self.mode),
            _ => self.mode.clone(),
        }
    }

    fn server_args(&self, config: &Config) -> Vec<String> {
        let mut args: Vec<String> = [
            "--mode",
            &self.mode,
            "--addr",
            "127.0.0.1:0",
            "--runtime",
            &config.runtime,
            "--threads",
            &config.threads.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(priority) = self.priority {
            args.extend(["--priority".to_string(), priority.to_string()]);
        }
        if let (Some(n), "offload-shed") = (config.max_queued, self.mode.as_str()) {
            args.extend(["--max-queued".to_string(), n.to_string()]);
        }
        args.extend(config.server_args.iter().cloned());
        args
    }
}

fn variants(config: &Config) -> Vec<Variant> {
    let mut variants = Vec::new();
    for mode in &config.modes {
        let offload = mode.starts_with("offload");
        variants.push(Variant {
            mode: mode.clone(),
            priority: offload.then_some("inherit"),
        });
        if offload && config.priority_compare {
            variants.push(Variant {
                mode: mode.clone(),
                priority: Some("nice"),
            });
        }
    }
    variants
}

/// One row: a fresh server, warm-up, the load, its memory, stopped.
fn matrix_row(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    binary: &std::path::Path,
    variant: &Variant,
    load: f64,
    extra_args: &[String],
) -> Row {
    let mut row = Row {
        label: variant.label(),
        load: Some(load),
        outcome: None,
        failure: None,
        mem_start: None,
        mem_end: None,
        load_avg: (machine::load_average_1m(), None),
        server_cpu: None,
        generator_cpu: None,
    };
    let mut args = variant.server_args(config);
    args.extend(extra_args.iter().cloned());
    let mut server = match server::Server::start(binary, &args) {
        Ok(server) => server,
        Err(e) => {
            row.failure = Some(e.to_string());
            row.load_avg.1 = machine::load_average_1m();
            return row;
        }
    };
    let pid = server.pid();
    row.mem_start = server::memory(pid);
    let plan = config.plan(load * config.capacity(), config.secs);
    match measure(rt, config, &plan, server.addr, Some(pid)) {
        Ok((outcome, server_cpu, generator_cpu)) => {
            row.outcome = Some(outcome);
            row.server_cpu = server_cpu;
            row.generator_cpu = generator_cpu;
        }
        Err(e) => row.failure = Some(format!("the load failed: {e}")),
    }
    row.mem_end = server::memory(pid);
    if let Some(status) = server.exited() {
        row.failure = Some(format!("the server exited during the run ({status})"));
        row.mem_end = None;
    }
    if let Err(e) = server.stop() {
        row.failure
            .get_or_insert(format!("stopping the server: {e}"));
    }
    row.load_avg.1 = machine::load_average_1m();
    row
}

fn matrix(config: &Config) -> Result<()> {
    let binary = match &config.server {
        Some(path) => path.clone(),
        None => server::default_path()?,
    };
    if !binary.is_file() {
        return Err(server::missing(&binary).into());
    }
    let cores = machine::cores()?;
    let variants = variants(config);
    let runtime = match config.runtime.as_str() {
        "multi" => "multi-thread",
        _ => "current-thread",
    };
    let load_at_start = machine::load_average_1m();
    let la = |x: Option<f64>| x.map_or("n/a".into(), |x| format!("{x:.2}"));
    println!(
        "server: {} on a {runtime} runtime, pool of {} threads; /work = {} ms of CPU, capacity {:.0} /work/s; {} /ping per /work",
        binary.display(),
        config.threads,
        config.work_ms,
        config.capacity(),
        config.ping_per_work
    );
    println!(
        "load: open loop, {} s per row after {} s of warm-up, one generator thread; machine: {cores} cores shared by the server, its pool and the generator; load average at start {}",
        config.secs,
        config.warmup,
        la(load_at_start)
    );
    if let Some(nice) = config.generator_nice {
        println!("the generator's thread measures at nice {nice}; the servers start at this process's priority");
    }
    // One size of work for every server: each server's own calibration
    // varies by a few per cent from run to run, as much as the throughput
    // differences the matrix measures.
    let iters_per_ms = work::calibrate(Duration::from_millis(1));
    let same_work = ["--iters-per-ms".to_string(), iters_per_ms.to_string()];
    println!("1 ms of work = {iters_per_ms} iterations of the hash loop, calibrated once here and given to every server");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for &load in &config.loads {
        for variant in &variants {
            let row = matrix_row(&rt, config, &binary, variant, load, &same_work);
            eprintln!("{}", progress(&row));
            rows.push(row);
            std::thread::sleep(BETWEEN_ROWS);
        }
    }
    let load_at_end = machine::load_average_1m();
    println!("load average at the end: {}", la(load_at_end));
    println!();
    report::print_main(&rows, config.markdown);
    println!();
    report::print_details(&rows, config.markdown);
    report::print_problems(&rows);

    let svg = config.svg.clone().unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/server.svg")
    });
    let title = format!("/ping p99 while /work runs where each mode puts it ({runtime} runtime)");
    let mut subtitle = vec![
        format!(
            "examples/load.rs: open loop, {} s per run; {} pool threads, /work = {} ms of CPU, {} /ping per /work; loads relative to {:.0} /work/s",
            config.secs, config.threads, config.work_ms, config.ping_per_work, config.capacity()
        ),
        format!(
            "{cores} cores shared by server, pool and load generator; load average {} at start, {} at end",
            la(load_at_start),
            la(load_at_end)
        ),
    ];
    if config.priority_compare {
        subtitle.push(
            "offload modes: workers at the server's own priority (Inherit, the default), and with \"nice\" at Nice(10)"
                .into(),
        );
    }
    if let Some(nice) = config.generator_nice {
        subtitle.push(format!("the load generator's thread at nice {nice}"));
    }
    report::write_svg(&svg, &rows, &title, &subtitle)?;
    println!();
    println!("chart written to {}", svg.display());
    Ok(())
}

/// One line per finished row, to stderr, while the matrix runs.
fn progress(row: &Row) -> String {
    let name = format!("{} at {}", row.label, report::load_label(row.load));
    match (&row.outcome, &row.failure) {
        (Some(o), _) => format!(
            "{name}: /ping p99 {} ms, /work {:.0}/s p99 {} ms, {} errors",
            if o.ping.is_empty() {
                "-".into()
            } else {
                report::ms(o.ping.value_at_quantile(0.99))
            },
            o.work_throughput(),
            if o.work.is_empty() {
                "-".into()
            } else {
                report::ms(o.work.value_at_quantile(0.99))
            },
            o.errors.total()
        ),
        (None, Some(why)) => format!("{name}: failed: {why}"),
        (None, None) => format!("{name}: no figures"),
    }
}

fn main() -> std::process::ExitCode {
    let result = parse_args().and_then(|config| {
        tune_process();
        if config.matrix {
            matrix(&config)
        } else {
            single(&config)
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
