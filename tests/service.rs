//! `examples/service.rs` as a test: its `serve` runs on a free port of
//! 127.0.0.1, on a current-thread runtime of its own thread, with a pool
//! the test builds (so that the test can fill its queues with jobs held
//! behind a gate); a raw `TcpStream` is the client, so that the test
//! decides when a connection closes.
//!
//! Every route answers; a full CPU queue and a full blocking queue are
//! 503s; a client that leaves and a request that times out stop their
//! job; a stall of the loop is reported through `tracing`. The service's
//! `tracing` events reach the test through a global subscriber that hands
//! them to each server's channel; every wait is bounded by [`WAIT`], and
//! nothing sleeps.

mod client;
#[allow(dead_code)]
#[path = "../examples/service.rs"]
mod service;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The bound on every wait: a server that hangs fails the test instead.
const WAIT: Duration = Duration::from_secs(10);

/// Far more hashing than any test may take: such a job only ends early
/// by cancellation.
const FOREVER: u64 = 1 << 40;

// ---- the service's tracing events ----------------------------------------

/// A `tracing` event: the thread it was emitted on, its message, and its
/// other fields as `name=value` strings.
#[derive(Debug, Clone)]
struct Event {
    thread: String,
    message: String,
    fields: Vec<(String, String)>,
}

impl Event {
    fn field(&self, name: &str) -> Option<&str> {
        let (_, value) = self.fields.iter().find(|(n, _)| n == name)?;
        Some(value)
    }
}

/// The channels of the servers alive, each handed every event.
static LISTENERS: Mutex<Vec<mpsc::Sender<Event>>> = Mutex::new(Vec::new());

struct Forward;

impl<S: tracing::Subscriber> Layer<S> for Forward {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Visit<'a>(&'a mut Event);
        impl tracing::field::Visit for Visit<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.record_str(field, &format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0.message = value.to_owned();
                } else {
                    self.0
                        .fields
                        .push((field.name().to_owned(), value.to_owned()));
                }
            }
        }
        let mut seen = Event {
            thread: thread::current().name().unwrap_or("").to_owned(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Visit(&mut seen));
        let mut listeners = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
        listeners.retain(|tx| tx.send(seen.clone()).is_ok());
    }
}

/// Events from this moment on.
fn listen() -> mpsc::Receiver<Event> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Forward))
            .expect("the only global subscriber");
    });
    let (tx, rx) = mpsc::channel();
    LISTENERS.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
    rx
}

// ---- a server --------------------------------------------------------------

/// A service on its own thread and runtime, with its own pool and database.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    pool: offload::Pool,
    events: mpsc::Receiver<Event>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<()>,
    database: PathBuf,
}

impl Server {
    /// Starts the service on a thread named `{name}-loop`, with the pool
    /// `pool` builds (its threads named `{name}-{i}`) and `tweak`'s config.
    fn start(
        name: &'static str,
        pool: offload::Builder,
        tweak: impl FnOnce(&mut service::Config),
    ) -> Server {
        let events = listen();
        let pool = pool
            .thread_name(move |i| format!("{name}-{i}"))
            .build()
            .expect("build the pool");
        let database = std::env::temp_dir().join(format!(
            "offload-service-test-{}-{name}.sqlite",
            std::process::id()
        ));
        service::create_database(&database).expect("create the database");
        let mut config = service::Config {
            database: database.clone(),
            timeout: WAIT * 6,
            stall_threshold: Duration::from_millis(50),
        };
        tweak(&mut config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let serving = pool.clone();
        thread::Builder::new()
            .name(format!("{name}-loop"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listen");
                    service::serve(listener, serving, config, async {
                        // `Err`: the test dropped the sender: stop too.
                        let _ = stopped.await;
                    })
                    .await;
                });
                let _ = done_tx.send(());
            })
            .expect("spawn the server's thread");
        Server {
            name,
            addr,
            pool,
            events,
            stop: Some(stop),
            done,
            database,
        }
    }

    /// Waits for an event that `want` accepts, skipping the others.
    fn wait_for(&self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if want(&event) => return event,
                Ok(_) => {}
                Err(err) => panic!("{}: no {what} within {WAIT:?}: {err}", self.name),
            }
        }
    }

    /// Checks that the pool's one worker is free: a job queued now runs.
    fn assert_worker_free(&self) {
        let mut probe = self.pool.spawn(|| 42);
        let ran = probe.wait_timeout(WAIT).expect("the worker is still busy");
        assert_eq!(ran.expect("the probe ran"), 42);
    }

    /// Stops the service and checks that `serve` returns in time.
    fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        self.done
            .recv_timeout(WAIT)
            .expect("the service did not stop in time");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.take(); // after a failed assertion: tell it to stop
        let _ = std::fs::remove_file(&self.database);
    }
}

// ---- a client --------------------------------------------------------------

fn connect(addr: SocketAddr) -> TcpStream {
    client::connect(addr, WAIT)
}

/// Writes a request, kept alive so that hyper watches the connection
/// for the client's departure while the request runs.
fn send(stream: &mut TcpStream, method: &str, target: &str, body: &str) {
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write the request");
}

/// Reads one response.
fn receive(stream: TcpStream) -> Reply {
    client::receive(&mut BufReader::new(stream))
}

use client::Reply;

fn request(addr: SocketAddr, method: &str, target: &str, body: &str) -> Reply {
    let mut stream = connect(addr);
    send(&mut stream, method, target, body);
    receive(stream)
}

fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target, "")
}

/// A one-worker pool whose jobs may be held behind a gate: detection off,
/// or a helper would run the queued jobs while the gated one waits.
fn one_worker() -> offload::Builder {
    offload::Pool::builder().threads(1).detect_blocking(false)
}

/// Holds the caller's side of a gate: jobs that wait on it end when it is
/// dropped.
fn gated(started: &mpsc::Sender<()>, gate: &std::sync::Arc<Mutex<()>>) -> impl FnOnce() + Send {
    let (started, gate) = (started.clone(), std::sync::Arc::clone(gate));
    move || {
        let _ = started.send(());
        drop(gate.lock());
    }
}

// ---- the tests -------------------------------------------------------------

#[test]
fn every_route_answers() {
    let server = Server::start("routes", offload::Pool::builder().threads(2), |_| {});
    let addr = server.addr;

    let hash = request(addr, "POST", "/hash?rounds=1000", "secret");
    assert_eq!(hash.status, 200, "{hash:?}");
    let expected = service::stretch(b"secret", 1000);
    assert_eq!(hash.body, format!("{expected:016x}\n"));
    assert_eq!(request(addr, "POST", "/hash", "secret").status, 400);
    assert_eq!(request(addr, "POST", "/hash?rounds=x", "").status, 400);

    let city = get(addr, "/city?name=Paris");
    assert_eq!(
        (city.status, city.body.as_str()),
        (200, "Paris, France: 2102650 inhabitants\n")
    );
    assert_eq!(get(addr, "/city?name=Atlantis").status, 404);
    assert_eq!(get(addr, "/city").status, 400);

    assert_eq!(get(addr, "/stall?ms=0").status, 200);
    assert_eq!(get(addr, "/stall?ms=10001").status, 400);
    assert_eq!(get(addr, "/nope").status, 404);
    assert_eq!(get(addr, "/hash").status, 404, "GET is not POST");

    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.starts_with("pool: 2 threads"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("jobs: 3 spawned, 3 completed"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("\nloop: "), "{}", metrics.body);
    assert!(metrics.body.contains("lag samples"), "{}", metrics.body);
    server.stop();
}

/// One worker held by a gated job and the queue's one slot taken by
/// another: `/hash` is refused at once, before its body is read; once the
/// gate opens it is served again.
#[test]
fn a_full_cpu_queue_is_a_503() {
    let server = Server::start("shed-cpu", one_worker().max_queued(1), |_| {});
    let (started_tx, started) = mpsc::channel();
    let gate = std::sync::Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let mut running = server.pool.spawn(gated(&started_tx, &gate));
    started.recv_timeout(WAIT).expect("the gated job started");
    let mut queued = server
        .pool
        .try_spawn(gated(&started_tx, &gate))
        .expect("the queue's one slot is free");

    let shed = request(server.addr, "POST", "/hash?rounds=1", "secret");
    assert_eq!(
        (shed.status, shed.body.as_str()),
        (503, "busy, try again later\n")
    );
    assert_eq!(server.pool.metrics().refused(), 1);
    // The loop still answers.
    assert_eq!(get(server.addr, "/city?name=Lima").status, 200);

    drop(held);
    running.wait_timeout(WAIT).expect("released").unwrap();
    queued.wait_timeout(WAIT).expect("released").unwrap();
    assert_eq!(
        request(server.addr, "POST", "/hash?rounds=1", "secret").status,
        200
    );
    server.stop();
}

/// The one blocking thread held and the one place in its queue taken:
/// `/city` is refused at once.
#[test]
fn a_full_blocking_queue_is_a_503() {
    let pool = one_worker().max_blocking_threads(1).max_queued_blocking(1);
    let server = Server::start("shed-db", pool, |_| {});
    let (started_tx, started) = mpsc::channel();
    let gate = std::sync::Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let mut running = server.pool.spawn_blocking(gated(&started_tx, &gate));
    started.recv_timeout(WAIT).expect("the gated job started");
    let mut queued = server
        .pool
        .try_spawn_blocking(gated(&started_tx, &gate))
        .expect("the queue's one place is free");

    assert_eq!(get(server.addr, "/city?name=Paris").status, 503);
    // CPU work does not wait for the blocking jobs.
    assert_eq!(
        request(server.addr, "POST", "/hash?rounds=1", "").status,
        200
    );

    drop(held);
    running.wait_timeout(WAIT).expect("released").unwrap();
    queued.wait_timeout(WAIT).expect("released").unwrap();
    assert_eq!(get(server.addr, "/city?name=Paris").status, 200);
    server.stop();
}

/// A client that leaves while its job runs: hyper drops the request, the
/// Task with it, and the job stops at its next `stop_if_cancelled`.
#[test]
fn a_client_that_leaves_stops_its_job() {
    let server = Server::start("leave", one_worker(), |_| {});
    let mut stream = connect(server.addr);
    send(&mut stream, "POST", &format!("/hash?rounds={FOREVER}"), "x");
    server.wait_for("job start", |event| {
        event.thread.starts_with("leave-") && event.message == "hashing"
    });
    drop(stream);
    // The job would hold the one worker for hours: the probe runs only if
    // it stopped.
    server.assert_worker_free();
    let metrics = server.pool.metrics();
    assert_eq!(
        (metrics.stopped(), metrics.completed()),
        (1, 1),
        "{metrics}"
    );
    server.stop();
}

/// A request that outlives its timeout gets a 504, and its job stops (or,
/// on a busy machine, never starts).
#[test]
fn a_request_that_times_out_stops_its_job() {
    let server = Server::start("timeout", one_worker(), |config| {
        config.timeout = Duration::from_millis(100);
    });
    let late = request(server.addr, "POST", &format!("/hash?rounds={FOREVER}"), "x");
    assert_eq!((late.status, late.body.as_str()), (504, "took too long\n"));
    server.assert_worker_free();
    let metrics = server.pool.metrics();
    assert_eq!(metrics.stopped() + metrics.cancelled(), 1, "{metrics}");
    server.stop();
}

/// `/stall` blocks the loop for 300 ms: the watch reports it through
/// `tracing` while it lasts, and again with its length once it is over.
#[test]
fn a_stalled_loop_is_reported() {
    let server = Server::start("stall", offload::Pool::builder().threads(1), |_| {});
    let reply = get(server.addr, "/stall?ms=300");
    assert_eq!(reply.status, 200);
    // The loop thread's stalls only (a loaded machine may add short ones).
    let of_the_loop = |event: &Event, ongoing: &str| {
        event.field("thread") == Some("stall-loop") && event.field("ongoing") == Some(ongoing)
    };
    let during = server.wait_for("report while stalled", |e| of_the_loop(e, "true"));
    assert!(
        during
            .message
            .starts_with("event loop on thread 'stall-loop' blocked for"),
        "{during:?}"
    );
    let after = server.wait_for("report of the 300 ms stall", |event| {
        let ms = event
            .field("duration_ms")
            .and_then(|ms| ms.parse::<u64>().ok());
        of_the_loop(event, "false") && ms >= Some(300)
    });
    assert!(after.message.contains("was blocked for"), "{after:?}");
    server.stop();
}
