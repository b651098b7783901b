//! A real HTTP/1.1 server whose CPU work runs where `--mode` says: the
//! server half of the HTTP measurement in `BENCHMARKS.md` (`examples/load.rs`
//! is the load generator and matrix runner).
//!
//! ```text
//! cargo run --release --example server -- --mode offload --addr 127.0.0.1:8080
//! curl -s 127.0.0.1:8080/ping          # pong
//! curl -s '127.0.0.1:8080/work?ms=5'   # 5 ms of hashing; the hash in hex
//! ```
//!
//! # Flags
//!
//! - `--mode MODE`: where `/work` runs (default `offload`):
//!   - `inline`: on the event loop, in the handler (it blocks the loop);
//!   - `spawn-blocking`: `tokio::task::spawn_blocking` (tokio's blocking
//!     pool, up to 512 threads: what a tokio user gets by default;
//!     `--threads` does not apply);
//!   - `rayon`: `rayon::ThreadPool::spawn` on a pool of `--threads`, the
//!     result sent back through a tokio oneshot channel;
//!   - `offload`: `offload::Pool::spawn` on a pool of `--threads`;
//!   - `offload-shed`: `offload::Pool::try_spawn` on a pool of `--threads`
//!     built with `max_queued(--max-queued)`; a refused job is answered
//!     503 Service Unavailable at once.
//! - `--addr IP:PORT`: where to listen (default `127.0.0.1:8080`; port 0
//!   picks a free one).
//! - `--runtime current|multi`: tokio's current-thread runtime (default) or
//!   its multi-thread one (a worker per core).
//! - `--priority inherit|nice|idle`: the offload pool's
//!   `WorkerPriority`: `Inherit` (the default), `Nice(10)` or `Idle`.
//!   Ignored by the other modes.
//! - `--threads N`: the rayon or offload pool's size (default: one per
//!   core).
//! - `--max-queued N`: `offload-shed`'s queue bound (default: `--threads`,
//!   the rule `n = t` of `Builder::max_queued`'s docs, for a queue wait of
//!   at most about two job times).
//! - `--drain-ms N`: on shutdown, how long requests in flight may finish
//!   before their connections are dropped (default 1000).
//! - `--iters-per-ms N`: the size of 1 ms of work, instead of calibrating
//!   it at start-up (the matrix in `examples/load.rs` calibrates once and
//!   gives every server the same size: calibrations vary by a few per cent
//!   from run to run, which is as much as the differences it measures).
//!
//! Once it is ready, the server prints exactly one line to stdout,
//! `listening on IP:PORT` (the address it bound, so a parent process can
//! read the port), and flushes it; anything else (the calibration, the
//! configuration, errors) goes to stderr. It serves until SIGINT or
//! SIGTERM, then closes its connections and its pool and exits with
//! status 0.
//!
//! # Routes
//!
//! `GET /ping` answers `pong` at once, on the event loop. `GET /work?ms=N`
//! runs `N` ms of CPU work of fixed size: a hash loop whose iterations per
//! ms are calibrated at start-up (the median of several runs of about
//! 1 ms), so a request costs the same work whatever the load, not the same
//! time; it answers 200 with the hash, 503 when `offload-shed` refuses it,
//! 400 for a missing or bad `ms`. Other paths are 404. In the offload modes
//! the job looks at `offload::is_cancelled()` about every 0.1 ms, so a
//! request whose client went away stops its work (hyper drops the request's
//! future, which drops its `Task`); the other modes run it to the end (see
//! `app.rs`).
//!
//! # Why hyper and not axum
//!
//! axum would add tower's service layers and a router between hyper and the
//! handler; for two routes a `match` on the path does, and every layer less
//! is one less thing between the measurement and the event loop. The server
//! is hyper 1's own `http1` connection on a tokio `TcpStream` (through
//! hyper-util's `TokioIo`), with `Full<Bytes>` bodies and `TCP_NODELAY`.
//!
//! The logic lives in `app.rs`, which `tests/server.rs` includes too.

mod app;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use offload::WorkerPriority;

use app::{Config, Flavor, Mode};

const USAGE: &str = "\
usage: server [--mode inline|spawn-blocking|rayon|offload|offload-shed]
              [--addr IP:PORT] [--runtime current|multi]
              [--priority inherit|nice|idle] [--threads N] [--max-queued N]
              [--drain-ms N] [--iters-per-ms N]";

/// The flags that take a value.
const FLAGS: [&str; 8] = [
    "--mode",
    "--addr",
    "--runtime",
    "--priority",
    "--threads",
    "--max-queued",
    "--drain-ms",
    "--iters-per-ms",
];

/// The command line.
struct Args {
    mode: Mode,
    addr: SocketAddr,
    runtime: Flavor,
    priority: WorkerPriority,
    threads: Option<usize>,
    max_queued: Option<usize>,
    drain: Duration,
    iters_per_ms: Option<u64>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        mode: Mode::Offload,
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        runtime: Flavor::Current,
        priority: WorkerPriority::Inherit,
        threads: None,
        max_queued: None,
        drain: Duration::from_secs(1),
        iters_per_ms: None,
    };
    fn count(flag: &str, value: &str) -> Result<usize, String> {
        match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag} wants a positive integer, not {value:?}")),
        }
    }
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        // `--flag value` or `--flag=value`.
        let (flag, value) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), value.to_owned()),
            None if !FLAGS.contains(&arg.as_str()) => return Err(format!("unknown flag {arg:?}")),
            None => {
                let value = args.next().ok_or_else(|| format!("{arg} wants a value"))?;
                (arg, value)
            }
        };
        match flag.as_str() {
            "--mode" => {
                parsed.mode =
                    Mode::from_name(&value).ok_or_else(|| format!("unknown mode {value:?}"))?;
            }
            "--addr" => {
                parsed.addr = value
                    .parse()
                    .map_err(|_| format!("--addr wants IP:PORT, not {value:?}"))?;
            }
            "--runtime" => {
                parsed.runtime = Flavor::from_name(&value)
                    .ok_or_else(|| format!("unknown runtime {value:?}"))?;
            }
            "--priority" => {
                parsed.priority = match value.as_str() {
                    "inherit" => WorkerPriority::Inherit,
                    "nice" => WorkerPriority::Nice(10),
                    "idle" => WorkerPriority::Idle,
                    _ => return Err(format!("unknown priority {value:?}")),
                };
            }
            "--threads" => parsed.threads = Some(count("--threads", &value)?),
            "--max-queued" => parsed.max_queued = Some(count("--max-queued", &value)?),
            "--drain-ms" => {
                let ms = value
                    .parse()
                    .map_err(|_| format!("--drain-ms wants an integer, not {value:?}"))?;
                parsed.drain = Duration::from_millis(ms);
            }
            "--iters-per-ms" => {
                parsed.iters_per_ms = Some(count("--iters-per-ms", &value)? as u64);
            }
            _ => return Err(format!("unknown flag {flag:?}")),
        }
    }
    Ok(parsed)
}

/// Resolves at the first SIGINT or SIGTERM. The handlers are installed
/// before this returns, so a signal sent as soon as the `listening` line
/// is out is caught.
#[cfg(unix)]
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves at the first Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn run(args: Args) -> io::Result<()> {
    let calibration = Instant::now();
    let given = args.iters_per_ms.is_some();
    let iters_per_ms = args.iters_per_ms.unwrap_or_else(app::calibrate);
    let mut config = Config::new(args.mode, iters_per_ms);
    if let Some(threads) = args.threads {
        config.threads = threads;
    }
    config.max_queued = args.max_queued;
    config.priority = args.priority;
    config.drain = args.drain;
    eprintln!(
        "server: mode {} on a {} runtime; {} pool threads, max_queued {}, priority {:?}; \
         1 ms of work = {iters_per_ms} iterations ({})",
        config.mode,
        args.runtime,
        match config.mode {
            Mode::Rayon | Mode::Offload | Mode::OffloadShed => config.threads.to_string(),
            Mode::Inline => "no".to_owned(),
            Mode::SpawnBlocking => "tokio's blocking".to_owned(),
        },
        match config.mode {
            Mode::OffloadShed => config.queue_bound().to_string(),
            _ => "-".to_owned(),
        },
        config.priority,
        if given {
            "given".to_owned()
        } else {
            format!("calibrated in {:.0?}", calibration.elapsed())
        },
    );

    let runtime = args.runtime.build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        let shutdown = shutdown_signal()?;
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "listening on {}", listener.local_addr()?)?;
        stdout.flush()?;
        drop(stdout);
        app::serve(listener, config, shutdown).await
    })?;
    // spawn_blocking jobs still running after the drain are abandoned.
    runtime.shutdown_timeout(Duration::from_millis(100));
    eprintln!("server: shut down");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) if why.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("server: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("server: {err}");
            ExitCode::FAILURE
        }
    }
}
