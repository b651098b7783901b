//! `examples/server`, as a test and not a timing: in every mode
//! and on both tokio runtimes the server starts on an ephemeral port,
//! answers `/ping`, `/work`, a bad query, a wrong method and an unknown
//! path, and shuts down cleanly; `offload-shed` answers 503 when its queue
//! is full; an offload job whose client went away is cancelled; a shutdown
//! neither waits for idle keep-alive connections nor for the work of a
//! request in flight beyond its drain time.
//!
//! The server runs in-process, on a thread and runtime of its own, from the
//! example's own `app.rs`. The client is a raw `std::net::TcpStream` that
//! writes requests by hand, so that the test decides when a connection is
//! kept alive and when it is closed. Synchronisation goes through the
//! server's `on_job` hook (a channel of `JobEvent`s), channels and joins;
//! every wait is bounded by [`WAIT`], and nothing sleeps.

#[allow(dead_code)]
#[path = "../examples/server/app.rs"]
mod app;
mod client;

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use app::{Config, Flavor, JobEvent, Mode};
use client::{receive, Reply};

/// The bound on every wait: a server that hangs fails the test instead.
const WAIT: Duration = Duration::from_secs(10);

/// Longer than any test may take: a job of this length only ends early by
/// cancellation.
const LONG_MS: u64 = 60_000;

/// Calibrated once for the whole binary.
fn iters_per_ms() -> u64 {
    static ITERS: OnceLock<u64> = OnceLock::new();
    *ITERS.get_or_init(app::calibrate)
}

/// A server on its own thread and runtime.
struct Server {
    addr: SocketAddr,
    events: mpsc::Receiver<JobEvent>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: mpsc::Receiver<io::Result<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Starts a server in `mode` on a `flavor` runtime with a pool of two
    /// threads, after `tweak` had its say on the configuration.
    fn start(mode: Mode, flavor: Flavor, tweak: impl FnOnce(&mut Config)) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("local address");
        let (event_tx, events) = mpsc::channel();
        let mut config = Config::new(mode, iters_per_ms());
        config.threads = 2;
        config.on_job = Some(Arc::new(move |event| {
            // The receiver is gone once the test has ended.
            let _ = event_tx.send(event);
        }));
        tweak(&mut config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("server-{mode}-{flavor}"))
            .spawn(move || {
                let result = flavor.build().and_then(|runtime| {
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        app::serve(listener, config, async {
                            // An `Err`: the test dropped the sender: stop too.
                            let _ = stopped.await;
                        })
                        .await
                    })
                    // The runtime is dropped here, its blocking pool too.
                });
                let _ = done_tx.send(result);
            })
            .expect("spawn the server's thread");
        Server {
            addr,
            events,
            stop: Some(stop),
            done,
            thread: Some(thread),
        }
    }

    /// Waits until each of `want` has happened (in any order: a job may
    /// start on its worker before the loop reports it submitted), skipping
    /// other events.
    fn wait_for(&self, want: &[JobEvent]) {
        wait_for(&self.events, want);
    }

    /// Triggers the shutdown and checks that `serve` returns `Ok` in time
    /// and its thread ends; returns the job events not yet read.
    fn stop(mut self) -> mpsc::Receiver<JobEvent> {
        let _ = self.stop.take().expect("stopped once").send(());
        let result = self
            .done
            .recv_timeout(WAIT)
            .expect("the server did not shut down in time");
        result.expect("serve failed");
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("the server's thread panicked");
        // (`Server` has a `Drop`: its fields cannot be moved out.)
        std::mem::replace(&mut self.events, mpsc::channel().1)
    }
}

impl Drop for Server {
    /// After a failed assertion: tell the server to stop (dropping the
    /// sender does), without waiting for it.
    fn drop(&mut self) {
        self.stop.take();
    }
}

/// See [`Server::wait_for`]; panics on a `Finished` that is not wanted.
fn wait_for(events: &mpsc::Receiver<JobEvent>, want: &[JobEvent]) {
    let mut left: Vec<JobEvent> = want.to_vec();
    let deadline = Instant::now() + WAIT;
    while !left.is_empty() {
        let time = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(time) {
            Ok(event) => match left.iter().position(|&e| e == event) {
                Some(i) => {
                    left.swap_remove(i);
                }
                None if event == JobEvent::Finished => {
                    panic!("a job finished while waiting for {left:?}")
                }
                None => {}
            },
            Err(err) => panic!("no {left:?} within {WAIT:?}: {err}"),
        }
    }
}

/// Connects to `addr` with every read and write bounded by [`WAIT`].
fn connect(addr: SocketAddr) -> TcpStream {
    client::connect(addr, WAIT)
}

/// Writes a request for `target`; with `close`, one that asks the server
/// to close the connection after its response.
fn send(stream: &mut TcpStream, method: &str, target: &str, close: bool) {
    let connection = if close { "close" } else { "keep-alive" };
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n"
    )
    .expect("write the request");
}

/// One request on a connection of its own.
fn request(addr: SocketAddr, method: &str, target: &str) -> Reply {
    let mut stream = connect(addr);
    send(&mut stream, method, target, true);
    receive(&mut BufReader::new(stream))
}

fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target)
}

/// A `/work` answer: 200 with a 64-bit hash in hex.
fn assert_hash(reply: &Reply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let hash = reply.body.trim_end();
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{reply:?}"
    );
}

/// Both endpoints, the errors, a keep-alive connection, the job's events,
/// and a clean shutdown.
fn answers_and_shuts_down(mode: Mode, flavor: Flavor) {
    let server = Server::start(mode, flavor, |_| {});
    let addr = server.addr;

    let ping = get(addr, "/ping");
    assert_eq!((ping.status, ping.body.as_str()), (200, "pong"));
    assert_hash(&get(addr, "/work?ms=1"));
    server.wait_for(&[JobEvent::Submitted, JobEvent::Started, JobEvent::Finished]);
    assert_hash(&get(addr, "/work?ms=0"));
    assert_hash(&get(addr, "/work?x=1&ms=2"));

    for bad in [
        "/work",
        "/work?",
        "/work?ms=",
        "/work?ms=abc",
        "/work?ms=-1",
        "/work?ms=1.5",
        "/work?ms=60001",
        "/work?ms=99999999999999999999999",
    ] {
        assert_eq!(get(addr, bad).status, 400, "{bad}");
    }
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(get(addr, "/nope?ms=1").status, 404);
    assert_eq!(request(addr, "POST", "/ping").status, 405);
    assert_eq!(request(addr, "DELETE", "/work?ms=1").status, 405);

    // Three requests on one keep-alive connection, the last one closing it.
    let mut stream = connect(addr);
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    send(&mut stream, "GET", "/ping", false);
    assert_eq!(receive(&mut reader).body, "pong");
    send(&mut stream, "GET", "/work?ms=1", false);
    assert_hash(&receive(&mut reader));
    send(&mut stream, "GET", "/ping", true);
    assert_eq!(receive(&mut reader).body, "pong");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("read to the end");
    assert!(rest.is_empty(), "the server closed the connection");

    server.stop();
}

macro_rules! every_mode_and_runtime {
    ($($name:ident: $mode:expr, $flavor:expr;)*) => {$(
        #[test]
        fn $name() {
            answers_and_shuts_down($mode, $flavor);
        }
    )*};
}

every_mode_and_runtime! {
    inline_current: Mode::Inline, Flavor::Current;
    inline_multi: Mode::Inline, Flavor::Multi;
    spawn_blocking_current: Mode::SpawnBlocking, Flavor::Current;
    spawn_blocking_multi: Mode::SpawnBlocking, Flavor::Multi;
    rayon_current: Mode::Rayon, Flavor::Current;
    rayon_multi: Mode::Rayon, Flavor::Multi;
    offload_current: Mode::Offload, Flavor::Current;
    offload_multi: Mode::Offload, Flavor::Multi;
    offload_shed_current: Mode::OffloadShed, Flavor::Current;
    offload_shed_multi: Mode::OffloadShed, Flavor::Multi;
}

#[test]
fn the_mode_names_round_trip() {
    for mode in Mode::ALL {
        assert_eq!(Mode::from_name(mode.name()), Some(mode));
    }
    for flavor in [Flavor::Current, Flavor::Multi] {
        assert_eq!(Flavor::from_name(flavor.name()), Some(flavor));
    }
    assert_eq!(Mode::from_name("offload_shed"), None);
}

#[test]
fn offload_at_a_lower_priority_serves() {
    // `--priority nice`. (Not `Idle`: its workers may starve while the
    // other tests keep the cores busy.)
    let server = Server::start(Mode::Offload, Flavor::Current, |config| {
        config.priority = offload::WorkerPriority::Nice(10);
    });
    assert_eq!(get(server.addr, "/ping").body, "pong");
    assert_hash(&get(server.addr, "/work?ms=1"));
    server.stop();
}

/// On one worker with a queue of one: a long request holds the worker, a
/// second one fills the queue, a third is shed with a 503 at once. Then the
/// first client leaves, which cancels its job, and the queued request is
/// served.
fn sheds_when_full(flavor: Flavor) {
    let server = Server::start(Mode::OffloadShed, flavor, |config| {
        config.threads = 1;
        config.max_queued = Some(1);
    });
    let addr = server.addr;

    // Keep-alive, so that hyper watches the connection for an EOF while the
    // request is in flight.
    let mut running = connect(addr);
    send(&mut running, "GET", &format!("/work?ms={LONG_MS}"), false);
    server.wait_for(&[JobEvent::Submitted, JobEvent::Started]);

    // It took the queue's one slot: its job cannot start while the first
    // one runs.
    let mut queued = connect(addr);
    send(&mut queued, "GET", "/work?ms=1", false);
    server.wait_for(&[JobEvent::Submitted]);

    let shed = get(addr, "/work?ms=1");
    assert_eq!((shed.status, shed.body.as_str()), (503, "busy\n"));
    server.wait_for(&[JobEvent::Shed]);
    // The loop still answers at once.
    assert_eq!(get(addr, "/ping").body, "pong");

    drop(running);
    server.wait_for(&[JobEvent::Cancelled]);
    assert_hash(&receive(&mut BufReader::new(queued)));
    // The queue has room again.
    assert_hash(&get(addr, "/work?ms=1"));
    server.stop();
}

#[test]
fn offload_shed_answers_503_when_full_current() {
    sheds_when_full(Flavor::Current);
}

#[test]
fn offload_shed_answers_503_when_full_multi() {
    sheds_when_full(Flavor::Multi);
}

/// A client that leaves mid-request cancels its offload job; the worker is
/// free for the next request.
fn cancels_a_departed_clients_job(flavor: Flavor) {
    let server = Server::start(Mode::Offload, flavor, |config| config.threads = 1);
    let mut stream = connect(server.addr);
    send(&mut stream, "GET", &format!("/work?ms={LONG_MS}"), false);
    server.wait_for(&[JobEvent::Submitted, JobEvent::Started]);
    drop(stream);
    server.wait_for(&[JobEvent::Cancelled]);
    assert_hash(&get(server.addr, "/work?ms=1"));
    server.stop();
}

#[test]
fn offload_cancels_the_job_of_a_client_that_left_current() {
    cancels_a_departed_clients_job(Flavor::Current);
}

#[test]
fn offload_cancels_the_job_of_a_client_that_left_multi() {
    cancels_a_departed_clients_job(Flavor::Multi);
}

/// A shutdown does not wait for idle keep-alive connections: with a drain
/// time longer than [`WAIT`], `stop` would fail if it did.
#[test]
fn shutdown_closes_idle_keep_alive_connections() {
    for flavor in [Flavor::Current, Flavor::Multi] {
        let server = Server::start(Mode::Offload, flavor, |config| {
            config.drain = WAIT * 6;
        });
        let mut stream = connect(server.addr);
        let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
        send(&mut stream, "GET", "/ping", false);
        assert_eq!(receive(&mut reader).body, "pong");
        server.stop();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).expect("read to the end");
        assert!(rest.is_empty(), "the server closed the connection");
    }
}

/// A shutdown lets a request in flight run for the drain time, then drops
/// its connection, which cancels its offload job; the pool then shuts down.
#[test]
fn shutdown_cancels_offload_work_in_flight_after_the_drain() {
    for mode in [Mode::Offload, Mode::OffloadShed] {
        let server = Server::start(mode, Flavor::Current, |config| {
            config.threads = 1;
            config.drain = Duration::from_millis(10);
        });
        let mut stream = connect(server.addr);
        send(&mut stream, "GET", &format!("/work?ms={LONG_MS}"), false);
        server.wait_for(&[JobEvent::Submitted, JobEvent::Started]);
        let events = server.stop();
        wait_for(&events, &[JobEvent::Cancelled]);
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "no response to a dropped request");
    }
}
