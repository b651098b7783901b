//! A small HTTP service, end to end, as you would write it with offload:
//! one event loop (tokio's current-thread runtime) that only does I/O, and
//! every piece of work that could hold it up sent to the offload pool.
//!
//! ```text
//! cargo run --example service          # on 127.0.0.1:3000; `-- IP:PORT` for another
//! curl -d secret '127.0.0.1:3000/hash?rounds=1000000'  # CPU work, on a worker
//! curl '127.0.0.1:3000/city?name=Paris'  # a SQLite query, on a spare thread
//! curl 127.0.0.1:3000/metrics            # the pool's and the loop's figures
//! curl '127.0.0.1:3000/stall?ms=300'     # blocks the loop on purpose: see the log
//! ```
//!
//! What it shows, route by route:
//! - `POST /hash?rounds=N`: CPU work (key stretching, as a password hash
//!   does). A queue slot is reserved with `try_reserve` *before* the body is
//!   read, so a refused request (503) costs no upload; the job checks
//!   `offload::stop_if_cancelled()`, so a client that leaves or a request
//!   that times out (504) stops it.
//! - `GET /city?name=X`: a blocking call (a `rusqlite` query) through
//!   `try_spawn_blocking`, on a spare thread, never on a worker; 503 when
//!   the queue of blocking jobs is full.
//! - `GET /metrics`: `Metrics` and `LoopStats` as plain text.
//! - `GET /stall?ms=N`: the bug that `LoopWatch` exists for, a blocking call
//!   on the loop; the watch reports it through `tracing` while it happens.
//!
//! `tests/service.rs` runs every route, the 503s, the cancellations and a
//! stall report against this file's `serve`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// What `serve` needs besides the listener and the pool.
#[derive(Clone, Debug)]
pub struct Config {
    /// The SQLite file `/city` reads ([`create_database`] makes one).
    pub database: PathBuf,
    /// How long a request may wait for its job before it gets a 504 (and
    /// the job is cancelled).
    pub timeout: Duration,
    /// The loop's stall threshold: asyncio warns at 100 ms; a service
    /// that wants a short tail would pick 10–20 ms.
    pub stall_threshold: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs on stderr; the stall reports are `WARN` events.
    tracing_subscriber::fmt().with_thread_names(true).init();

    // The global pool (the one `offload::spawn` uses), configured once,
    // before any use: a worker per core, at most 64 CPU jobs waiting, at
    // most 8 queries at once and 32 more waiting. Past those bounds the
    // service answers 503 at once instead of queueing without end.
    offload::Pool::builder()
        .max_queued(64)
        .max_blocking_threads(8)
        .max_queued_blocking(32)
        .build_global()?;
    let pool = offload::Pool::global();

    let database = std::env::temp_dir().join("offload-service-example.sqlite");
    create_database(&database)?;
    let config = Config {
        database,
        timeout: Duration::from_secs(10),
        stall_threshold: Duration::from_millis(100),
    };
    let addr = std::env::args().nth(1);
    let listener = TcpListener::bind(addr.as_deref().unwrap_or("127.0.0.1:3000")).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, pool.clone(), config, ctrl_c).await;
    // Let the jobs still queued finish (`shutdown_now_async` would cancel them).
    pool.shutdown_async().await;
    Ok(())
}

/// Serves `listener` until `shutdown` resolves, running the work on `pool`.
/// Requests still in flight then are dropped, which cancels their jobs.
pub async fn serve(
    listener: TcpListener,
    pool: offload::Pool,
    config: Config,
    shutdown: impl Future<Output = ()>,
) {
    // The stall detector: a future that the loop must poll now and then.
    // A watcher thread notices when it does not, and reports the loop
    // thread's stack while the loop is still stuck. (With offload's cargo
    // feature `tracing`, `.on_stall(offload::Stall::trace)` is a ready-made
    // `report_stall`: WARN while the stall lasts, INFO once it is over.)
    let watch = offload::LoopWatch::new(config.stall_threshold).on_stall(report_stall);
    let app = Arc::new(App {
        pool,
        loop_stats: watch.stats(),
        config,
    });
    let watching = tokio::spawn(watch);

    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    // Out of file descriptors, say: not fatal; a pause
                    // keeps the loop from spinning on it.
                    Err(err) => {
                        tracing::warn!("accept: {err}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let app = Arc::clone(&app);
                let service = service_fn(move |request| {
                    let app = Arc::clone(&app);
                    async move { Ok::<_, Infallible>(app.handle(request).await) }
                });
                // When the client goes away mid-request, hyper drops the
                // request's future, and with it the offload `Task` it
                // awaits: dropping a Task cancels its job.
                connections.spawn(async move {
                    if let Err(err) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!("connection: {err}");
                    }
                });
            }
            // Reap the connections that have ended.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    watching.abort();
}

/// Logs a stall: once while the loop is stuck, with the loop thread's
/// own frames (`Display`), and once more when it is back.
fn report_stall(stall: &offload::Stall) {
    let duration_ms = stall.duration().as_millis() as u64;
    let thread = stall.thread_name().unwrap_or("?");
    if stall.is_ongoing() {
        tracing::warn!(thread, duration_ms, ongoing = true, "{stall}");
    } else {
        tracing::warn!(thread, duration_ms, ongoing = false, "{}", stall.summary());
    }
}

/// What every request shares.
struct App {
    pool: offload::Pool,
    loop_stats: offload::LoopStats,
    config: Config,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

fn busy() -> Reply {
    reply(StatusCode::SERVICE_UNAVAILABLE, "busy, try again later\n")
}

/// The value of `key` in the query string (not percent-decoded).
fn query<'a>(request: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    let query = request.uri().query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

impl App {
    async fn handle(&self, request: Request<Incoming>) -> Reply {
        match (request.method(), request.uri().path()) {
            (&Method::POST, "/hash") => self.hash(request).await,
            (&Method::GET, "/city") => self.city(&request).await,
            (&Method::GET, "/metrics") => reply(
                StatusCode::OK,
                format!("pool: {}\nloop: {}\n", self.pool.metrics(), self.loop_stats),
            ),
            (&Method::GET, "/stall") => {
                match query(&request, "ms").and_then(|ms| ms.parse().ok()) {
                    Some(ms @ 0..=10_000) => {
                        // The mistake on purpose: a blocking call on the loop.
                        // Every other request waits for it; the watch reports it.
                        std::thread::sleep(Duration::from_millis(ms));
                        reply(StatusCode::OK, format!("blocked the loop for {ms} ms\n"))
                    }
                    _ => reply(StatusCode::BAD_REQUEST, "use /stall?ms=0..10000\n"),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// `POST /hash?rounds=N`: the body hashed `N` times over, in hex.
    async fn hash(&self, request: Request<Incoming>) -> Reply {
        let Some(rounds) = query(&request, "rounds").and_then(|n| n.parse().ok()) else {
            return reply(StatusCode::BAD_REQUEST, "use POST /hash?rounds=N\n");
        };
        // Shed before reading the body: a slot in the pool's queue now, or
        // a 503 at once. (With the closure in hand, `pool.try_spawn(job)`
        // does the same; `offload::spawn(job)` queues on the global pool
        // without asking, past any bound.)
        let Ok(permit) = self.pool.try_reserve() else {
            return busy();
        };
        let body = match Limited::new(request.into_body(), 64 << 10).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => return reply(StatusCode::BAD_REQUEST, "at most 64 KiB of body\n"),
        };
        let task = permit.spawn(move || stretch(&body, rounds));
        // A timeout drops the Task, which cancels the job; so does hyper
        // when the client leaves (this future is then dropped mid-await).
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(Ok(hash)) => reply(StatusCode::OK, format!("{hash:016x}\n")),
            Ok(Err(err)) if err.is_cancelled() => busy(), // the pool shut down
            Ok(Err(err)) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            Err(_elapsed) => reply(StatusCode::GATEWAY_TIMEOUT, "took too long\n"),
        }
    }

    /// `GET /city?name=X`: a row of the database.
    async fn city(&self, request: &Request<Incoming>) -> Reply {
        let Some(name) = query(request, "name").map(str::to_owned) else {
            return reply(StatusCode::BAD_REQUEST, "use /city?name=X\n");
        };
        let database = self.config.database.clone();
        // A blocking call: on a spare thread (`max_blocking_threads` of
        // them at most), never on a worker, so CPU jobs never wait behind a
        // slow disk. Refused at once when `max_queued_blocking` jobs wait.
        let Ok(task) = self
            .pool
            .try_spawn_blocking(move || find_city(&database, &name))
        else {
            return busy();
        };
        // On a timeout, a query still queued is cancelled; one running
        // goes on to its end (`rusqlite`'s `InterruptHandle` could stop it).
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(Ok(Ok(Some(city)))) => reply(StatusCode::OK, city + "\n"),
            Ok(Ok(Ok(None))) => reply(StatusCode::NOT_FOUND, "no such city\n"),
            Ok(Ok(Err(err))) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            Ok(Err(err)) if err.is_cancelled() => busy(),
            Ok(Err(err)) => reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            Err(_elapsed) => reply(StatusCode::GATEWAY_TIMEOUT, "took too long\n"),
        }
    }
}

/// CPU work: FNV-1a over `body`, `rounds` times over. Between two rounds it
/// lets itself be stopped: once the request's Task is dropped (the client
/// left, the request timed out), `stop_if_cancelled` unwinds the job (no
/// panic message; destructors run) and the worker takes its next job.
pub fn stretch(body: &[u8], rounds: u64) -> u64 {
    tracing::debug!(rounds, "hashing");
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for round in 0..rounds {
        if round % 1024 == 0 {
            // Cheap (a thread-local and an atomic load), but not free.
            offload::stop_if_cancelled();
        }
        for &byte in body.iter().chain(&round.to_le_bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }
    hash
}

/// A blocking call: one query, on a connection of its own (opening a
/// SQLite file takes microseconds; a server database would want a pool of
/// connections, or one per spare thread in a `thread_local!`).
fn find_city(database: &Path, name: &str) -> rusqlite::Result<Option<String>> {
    let db = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    db.query_row(
        "SELECT name, country, population FROM cities WHERE name = ?1",
        [name],
        |row| {
            let (name, country, population): (String, String, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            Ok(format!("{name}, {country}: {population} inhabitants"))
        },
    )
    .optional()
}

/// Creates (or refills) the database `/city` reads.
pub fn create_database(path: &Path) -> io::Result<()> {
    let fill = || -> rusqlite::Result<()> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS cities (
                 name TEXT PRIMARY KEY, country TEXT NOT NULL, population INTEGER NOT NULL);
             INSERT OR REPLACE INTO cities VALUES
                 ('Paris', 'France', 2102650), ('Lagos', 'Nigeria', 15388000),
                 ('Osaka', 'Japan', 2752412), ('Lima', 'Peru', 10092000);",
        )
    };
    fill().map_err(io::Error::other)
}
