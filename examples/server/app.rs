//! The HTTP server of `examples/server`, as a module that `main.rs` and
//! `tests/server.rs` share: a [`Config`], [`calibrate`], and [`serve`],
//! which serves a listener until a shutdown future resolves and returns
//! once the connections are closed and the pool is shut down.
//!
//! # Routes
//!
//! - `GET /ping`: `pong`, answered at once on the event loop.
//! - `GET /work?ms=N`: `N` ms of CPU work of fixed size (`N ×` the
//!   calibrated iterations per ms of a hash loop; busy work, not a sleep),
//!   run where [`Mode`] says; 200 with the hash in hex, 503 when
//!   `offload-shed` refuses it, 400 for a missing or bad `ms` (or one over
//!   [`Config::max_work_ms`]).
//! - 405 for another method on those two paths, 404 for any other path.
//!
//! # Cancellation
//!
//! The work runs in chunks of about 0.1 ms, and between two chunks it asks
//! [`offload::is_cancelled`]. In the offload modes, a request whose client
//! went away stops its job there: hyper notices the EOF on the busy
//! connection, drops the connection's service future, and with it the
//! [`offload::Task`], which cancels the job (a queued job never starts; a
//! running one sees `is_cancelled()`). Outside an offload worker
//! `is_cancelled()` is always `false`, so the other modes run a dropped
//! request's work to the end: `spawn_blocking` and `rayon::spawn` jobs
//! cannot be cancelled once queued, and `inline` work blocks the loop, so
//! nothing notices the EOF until it is done. hyper watches a busy
//! connection for an EOF when nothing else waits in its read buffer (no
//! pipelined request behind the one in flight) and half-close is off (its
//! default), whether or not the request said `Connection: close`.
//!
//! # Shutdown
//!
//! When the shutdown future resolves, [`serve`] stops accepting, asks every
//! connection to close after its request in flight (idle keep-alive
//! connections close at once), waits up to [`Config::drain`] for them, then
//! drops those still open (which cancels their offload jobs), and shuts the
//! pool down: an offload pool with `shutdown_async().await`; a rayon pool
//! is dropped (rayon cannot wait for its threads); tokio's blocking pool
//! belongs to the runtime, whose owner shuts it down.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use offload::WorkerPriority;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

// Relative to this file's directory, so that it resolves the same from
// `main.rs` and from `tests/server.rs`.
#[path = "../support/mod.rs"]
mod support;

use support::work;

/// Where `/work` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// On the event loop, in the request's handler: it blocks the loop.
    Inline,
    /// `tokio::task::spawn_blocking`: tokio's blocking pool (up to 512
    /// threads by default; `--threads` does not apply).
    SpawnBlocking,
    /// `rayon::ThreadPool::spawn` on a pool of [`Config::threads`], the
    /// result sent back through a tokio oneshot channel.
    Rayon,
    /// `offload::Pool::spawn` on a pool of [`Config::threads`], unbounded.
    Offload,
    /// `offload::Pool::try_spawn` on a pool bounded by
    /// [`Config::max_queued`]: a refused job is a 503.
    OffloadShed,
}

impl Mode {
    /// Every mode, in the order the docs list them.
    pub const ALL: [Mode; 5] = [
        Mode::Inline,
        Mode::SpawnBlocking,
        Mode::Rayon,
        Mode::Offload,
        Mode::OffloadShed,
    ];

    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Inline => "inline",
            Mode::SpawnBlocking => "spawn-blocking",
            Mode::Rayon => "rayon",
            Mode::Offload => "offload",
            Mode::OffloadShed => "offload-shed",
        }
    }

    /// The mode named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tokio runtime the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `new_current_thread`: one thread runs the loop, as in a
    /// thread-per-core server.
    Current,
    /// `new_multi_thread`: tokio's work-stealing runtime, one worker per
    /// core.
    Multi,
}

impl Flavor {
    /// The flavor's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Current => "current",
            Flavor::Multi => "multi",
        }
    }

    /// The flavor named `name` on the command line.
    pub fn from_name(name: &str) -> Option<Flavor> {
        [Flavor::Current, Flavor::Multi]
            .into_iter()
            .find(|flavor| flavor.name() == name)
    }

    /// Builds a runtime of this flavor, with I/O and timers.
    pub fn build(self) -> io::Result<tokio::runtime::Runtime> {
        match self {
            Flavor::Current => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Flavor::Multi => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a `/work` request reports to [`Config::on_job`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// The job was handed to its mode's executor (on the loop, just after
    /// the spawn; for `inline`, just before it runs).
    Submitted,
    /// `offload-shed` refused the job: the request gets a 503.
    Shed,
    /// The job's first line ran (on the thread that runs it).
    Started,
    /// The job ran to its end.
    Finished,
    /// The job saw `offload::is_cancelled()` and stopped early.
    Cancelled,
}

/// A callback for [`JobEvent`]s, called on whichever thread the event
/// happens on.
pub type JobHook = Arc<dyn Fn(JobEvent) + Send + Sync>;

/// How to serve.
#[derive(Clone)]
pub struct Config {
    /// Where `/work` runs.
    pub mode: Mode,
    /// Worker threads of the rayon or offload pool (default: one per core,
    /// as `num_cpus::get`, offload's own default).
    pub threads: usize,
    /// `offload-shed`'s `Builder::max_queued`; `None` (the default): as
    /// many as [`threads`](Config::threads), the rule `n = t` for a queue
    /// wait of at most about two job times.
    pub max_queued: Option<usize>,
    /// The offload pool's `Builder::worker_priority` (default: `Inherit`).
    pub priority: WorkerPriority,
    /// Iterations of the hash loop per ms of work ([`calibrate`]).
    pub iters_per_ms: u64,
    /// The largest `ms` that `/work` accepts (default: 60 000).
    pub max_work_ms: u64,
    /// How long a shutdown waits for requests in flight before it drops
    /// their connections (default: 1 s).
    pub drain: Duration,
    /// A test hook: called at each [`JobEvent`] (default: `None`).
    pub on_job: Option<JobHook>,
}

impl Config {
    /// The defaults for `mode`, with `iters_per_ms` from [`calibrate`].
    pub fn new(mode: Mode, iters_per_ms: u64) -> Config {
        Config {
            mode,
            threads: num_cpus::get(),
            max_queued: None,
            priority: WorkerPriority::Inherit,
            iters_per_ms,
            max_work_ms: 60_000,
            drain: Duration::from_secs(1),
            on_job: None,
        }
    }

    /// The bound of `offload-shed`'s queue.
    pub fn queue_bound(&self) -> usize {
        self.max_queued.unwrap_or(self.threads)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("threads", &self.threads)
            .field("max_queued", &self.max_queued)
            .field("priority", &self.priority)
            .field("iters_per_ms", &self.iters_per_ms)
            .field("max_work_ms", &self.max_work_ms)
            .field("drain", &self.drain)
            .field("on_job", &self.on_job.as_ref().map(|_| "Fn"))
            .finish()
    }
}

// ---- the work -----------------------------------------------------------------

/// The hash loop's iterations per millisecond on this machine: the median
/// of several runs of about 1 ms each (short runs, so that a preemption
/// spoils one sample and not the estimate), refined three times, on the
/// calling thread.
pub fn calibrate() -> u64 {
    work::calibrate(Duration::from_millis(1))
}

/// The job of one `/work` request.
struct Job {
    /// Iterations in all.
    iters: u64,
    /// Iterations between two looks at `is_cancelled`.
    chunk: u64,
    seed: u64,
    on_job: Option<JobHook>,
}

impl Job {
    fn emit(&self, event: JobEvent) {
        if let Some(hook) = &self.on_job {
            hook(event);
        }
    }

    /// The hash, or `None` if the job was cancelled.
    fn run(self) -> Option<u64> {
        self.emit(JobEvent::Started);
        let mut h = self.seed ^ work::HASH_BASIS;
        let mut done = 0;
        while done < self.iters {
            // Outside an offload worker this is always false.
            if offload::is_cancelled() {
                self.emit(JobEvent::Cancelled);
                return None;
            }
            let n = self.chunk.min(self.iters - done);
            h = work::hash_rounds(h, done, n);
            done += n;
        }
        self.emit(JobEvent::Finished);
        Some(h)
    }
}

// ---- the server ---------------------------------------------------------------

/// Where the jobs run, with the pool that runs them.
enum Executor {
    Inline,
    SpawnBlocking,
    Rayon(rayon::ThreadPool),
    Offload(offload::Pool),
    OffloadShed(offload::Pool),
}

impl Executor {
    fn start(config: &Config) -> io::Result<Executor> {
        let offload = || {
            offload::Pool::builder()
                .threads(config.threads)
                .worker_priority(config.priority)
                .thread_name(|i| format!("offload-{i}"))
        };
        Ok(match config.mode {
            Mode::Inline => Executor::Inline,
            Mode::SpawnBlocking => Executor::SpawnBlocking,
            Mode::Rayon => Executor::Rayon(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(config.threads)
                    .thread_name(|i| format!("rayon-{i}"))
                    .build()
                    .map_err(io::Error::other)?,
            ),
            Mode::Offload => Executor::Offload(offload().build()?),
            Mode::OffloadShed => {
                Executor::OffloadShed(offload().max_queued(config.queue_bound()).build()?)
            }
        })
    }

    async fn shutdown(self) {
        match self {
            Executor::Offload(pool) | Executor::OffloadShed(pool) => pool.shutdown_async().await,
            // Dropping a rayon pool tells its threads to exit once their
            // queues are empty; it cannot be waited for.
            Executor::Rayon(pool) => drop(pool),
            // tokio's blocking pool is the runtime's.
            Executor::Inline | Executor::SpawnBlocking => {}
        }
    }
}

/// What every connection shares.
struct App {
    executor: Executor,
    iters_per_ms: u64,
    max_work_ms: u64,
    on_job: Option<JobHook>,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// The `ms` of a `/work` query: `ms=N` among `&`-separated pairs, `N` a
/// decimal integer no larger than `max`.
fn parse_ms(query: Option<&str>, max: u64) -> Result<u64, &'static str> {
    let value = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("ms="))
        .ok_or("missing ms: use /work?ms=N\n")?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("ms must be a decimal integer\n");
    }
    match value.parse::<u64>() {
        Ok(ms) if ms <= max => Ok(ms),
        _ => Err("ms is too large\n"),
    }
}

impl App {
    fn emit(&self, event: JobEvent) {
        if let Some(hook) = &self.on_job {
            hook(event);
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/ping") => text(StatusCode::OK, "pong"),
            (&Method::GET, "/work") => match parse_ms(request.uri().query(), self.max_work_ms) {
                Ok(ms) => self.work(ms).await,
                Err(why) => text(StatusCode::BAD_REQUEST, why),
            },
            (_, "/ping" | "/work") => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET"));
                response
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn work(&self, ms: u64) -> Response<Body> {
        let job = Job {
            // `max_work_ms` × a calibrated count stays far below u64::MAX.
            iters: ms.saturating_mul(self.iters_per_ms),
            chunk: (self.iters_per_ms / 10).max(1),
            seed: ms,
            on_job: self.on_job.clone(),
        };
        // `Err(())`: the job's result never came back (a panic, a pool
        // gone, or an offload Task cancelled by a shutdown).
        let result: Result<Option<u64>, ()> = match &self.executor {
            Executor::Inline => {
                self.emit(JobEvent::Submitted);
                Ok(job.run())
            }
            Executor::SpawnBlocking => {
                let handle = tokio::task::spawn_blocking(move || job.run());
                self.emit(JobEvent::Submitted);
                handle.await.map_err(drop)
            }
            Executor::Rayon(pool) => {
                let (tx, rx) = oneshot::channel();
                pool.spawn(move || {
                    // The receiver is gone if the request was dropped.
                    let _ = tx.send(job.run());
                });
                self.emit(JobEvent::Submitted);
                rx.await.map_err(drop)
            }
            Executor::Offload(pool) => {
                let task = pool.spawn(move || job.run());
                self.emit(JobEvent::Submitted);
                task.await.map_err(drop)
            }
            Executor::OffloadShed(pool) => match pool.try_spawn(move || job.run()) {
                Ok(task) => {
                    self.emit(JobEvent::Submitted);
                    task.await.map_err(drop)
                }
                // Full, or shut down: either way, not now.
                Err(_refused) => {
                    self.emit(JobEvent::Shed);
                    return text(StatusCode::SERVICE_UNAVAILABLE, "busy\n");
                }
            },
        };
        match result {
            Ok(Some(hash)) => {
                let mut response = Response::new(Full::new(Bytes::from(format!("{hash:016x}\n"))));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                response
            }
            Ok(None) => text(StatusCode::SERVICE_UNAVAILABLE, "cancelled\n"),
            Err(()) => text(StatusCode::INTERNAL_SERVER_ERROR, "the job failed\n"),
        }
    }
}

/// Serves one connection until it closes, or until `stop` turns true;
/// then lets its request in flight finish and closes it.
async fn connection(stream: TcpStream, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    // Latency is what is measured: no Nagle delay on small responses.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| {
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(app.handle(request).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        // A client that went away mid-request ends the connection with an
        // error; nothing to report.
        _ = conn.as_mut() => return,
        // `Err`: the sender is gone, which only happens once serve returns.
        _ = stop.wait_for(|&stop| stop) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Serves HTTP/1.1 on `listener` with `config` until `shutdown` resolves,
/// then closes every connection (see the module docs) and shuts the pool
/// down, and returns.
///
/// # Errors
/// If the pool cannot be started.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let app = Arc::new(App {
        executor: Executor::start(&config)?,
        iters_per_ms: config.iters_per_ms,
        max_work_ms: config.max_work_ms,
        on_job: config.on_job.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(connection(stream, Arc::clone(&app), stop_rx.clone()));
                }
                Err(err) => {
                    // Out of file descriptors, a connection reset before it
                    // was accepted: not fatal; pause so as not to spin.
                    eprintln!("server: accept: {err}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reap the finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.drain, drain).await.is_err() {
        // Dropping the connections drops their requests' futures: the
        // offload Tasks among them cancel their jobs.
        connections.shutdown().await;
    }
    let app = Arc::into_inner(app).expect("every connection has ended");
    app.executor.shutdown().await;
    Ok(())
}
