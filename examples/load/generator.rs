//! The open-loop load generator: a schedule fixed in advance, sent over a
//! pool of keep-alive HTTP/1.1 connections, timed from each request's
//! intended send time. Runs on one thread (a current-thread tokio runtime
//! inside a `LocalSet`), so its state is `Rc`/`RefCell`, never locked.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[cfg(target_os = "linux")]
use crate::support::clock;

/// The largest latency the histograms hold, in µs (10 minutes).
const MAX_US: u64 = 600_000_000;
/// How far ahead of the first intended send time the schedule starts, so
/// that the first request is not late already.
const SLACK_NS: u64 = 20_000_000;
/// Requests spawned at once, at most, when the generator is behind its
/// schedule, before it lets them start.
const BURST: u32 = 16;

/// A latency histogram in µs, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

fn micros(ns: u64) -> u64 {
    (ns / 1_000).max(1)
}

// ---- the clock ------------------------------------------------------------------

/// `CLOCK_MONOTONIC` in ns: the clock the timerfd pacer sleeps on.
#[cfg(target_os = "linux")]
pub fn now_ns() -> u64 {
    clock::monotonic_ns()
}

/// Nanoseconds since the first call (elsewhere than Linux).
#[cfg(not(target_os = "linux"))]
pub fn now_ns() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Sleeps until an instant of [`now_ns`]'s clock, to the microsecond: a
/// Linux `timerfd` in tokio's reactor (tokio's own timer rounds to whole
/// milliseconds, which would add up to 1 ms to every latency measured from
/// an intended send time).
#[cfg(target_os = "linux")]
struct Pacer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

#[cfg(target_os = "linux")]
impl Pacer {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            fd: clock::timerfd()?,
        })
    }

    async fn sleep_until(&self, deadline_ns: u64) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let raw = self.fd.get_ref().as_raw_fd();
        loop {
            if now_ns() >= deadline_ns {
                return Ok(());
            }
            clock::arm(&self.fd, deadline_ns, 0)?;
            let mut guard = self.fd.readable().await?;
            let mut expirations = 0u64;
            // SAFETY: reads 8 bytes into `expirations` from our timerfd.
            // Its result does not matter: expired and read, or not expired
            // yet (EAGAIN), no expiration is pending afterwards, and the
            // next `arm` sets a new edge; the loop checks the clock.
            unsafe { libc::read(raw, (&mut expirations as *mut u64).cast(), 8) };
            guard.clear_ready();
        }
    }
}

/// tokio's timer (1 ms resolution) where there is no timerfd.
#[cfg(not(target_os = "linux"))]
struct Pacer;

#[cfg(not(target_os = "linux"))]
impl Pacer {
    fn new() -> std::io::Result<Self> {
        Ok(Pacer)
    }

    async fn sleep_until(&self, deadline_ns: u64) -> std::io::Result<()> {
        let now = now_ns();
        if now < deadline_ns {
            tokio::time::sleep(Duration::from_nanos(deadline_ns - now)).await;
        }
        Ok(())
    }
}

// ---- what to send -----------------------------------------------------------------

/// What to send, and when.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `/work` requests per second.
    pub work_rate: f64,
    /// `/ping` requests per `/work` request (0: only `/work`).
    pub ping_per_work: f64,
    /// The `ms` of each `/work?ms=N`.
    pub work_ms: u64,
    /// How long requests are sent for.
    pub secs: f64,
    /// Each request's limit, from the moment its task starts: connect (if
    /// no connection is idle), send, and the whole answer read.
    pub timeout: Duration,
}

impl Plan {
    /// Requests per second, both endpoints.
    pub fn total_rate(&self) -> f64 {
        self.work_rate * (1.0 + self.ping_per_work)
    }

    /// `/ping` requests per second.
    pub fn ping_rate(&self) -> f64 {
        self.work_rate * self.ping_per_work
    }

    fn total(&self) -> u64 {
        (self.total_rate() * self.secs).round() as u64
    }

    /// Whether request `i` of the schedule is a `/work` request: they are
    /// spread evenly, one in every `1 + ping_per_work`.
    fn is_work(&self, i: u64) -> bool {
        let share = 1.0 / (1.0 + self.ping_per_work);
        ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
    }

    fn work_path(&self) -> String {
        format!("/work?ms={}", self.work_ms)
    }

    /// One-second windows of the schedule (the last may be shorter).
    fn windows(&self) -> usize {
        (self.secs.ceil() as usize).max(1)
    }
}

// ---- what was measured ----------------------------------------------------------------

/// Answers by status.
#[derive(Clone, Copy, Default, Debug)]
pub struct Statuses {
    pub ok: u64,
    pub unavailable: u64,
    pub other: u64,
}

/// Requests that got no HTTP answer.
#[derive(Clone, Default, Debug)]
pub struct Errors {
    /// TCP connect or HTTP handshake failed.
    pub connect: u64,
    /// The connection failed while sending or reading.
    pub io: u64,
    /// No answer within the request's timeout.
    pub timeout: u64,
    /// Not sent: no idle connection, and the connection cap was reached.
    pub not_sent: u64,
    /// The first error's message, for the report.
    pub first: Option<String>,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.timeout + self.not_sent
    }
}

/// Everything one run measured. Latencies are in µs, from each request's
/// intended send time to the moment its whole answer was read.
pub struct Outcome {
    /// `/ping` answered 200.
    pub ping: Histogram<u64>,
    /// `/work` answered 200.
    pub work: Histogram<u64>,
    /// The same, by the second of the schedule the request was due in.
    pub work_by_second: Vec<Histogram<u64>>,
    /// `/work` answered 503 (shed).
    pub shed: Histogram<u64>,
    /// How late each request's task started, after its intended time: the
    /// generator's own lag (its loop busy, or its thread preempted).
    pub late: Histogram<u64>,
    pub ping_status: Statuses,
    pub work_status: Statuses,
    pub errors: Errors,
    /// `/work` answered 200 within the sending window.
    pub work_done_in_window: u64,
    /// Requests due, and answered or failed.
    pub due: u64,
    /// The sending window, s.
    pub secs: f64,
    /// From the end of the window to the last answer (or failure), s.
    pub drain_secs: f64,
    /// The most connections open at once.
    pub peak_conns: usize,
    /// `/work` and `/ping` requests per second offered.
    pub work_rate: f64,
    pub ping_rate: f64,
}

impl Outcome {
    fn new(plan: &Plan) -> Self {
        Self {
            ping: histogram(),
            work: histogram(),
            work_by_second: (0..plan.windows()).map(|_| histogram()).collect(),
            shed: histogram(),
            late: histogram(),
            ping_status: Statuses::default(),
            work_status: Statuses::default(),
            errors: Errors::default(),
            work_done_in_window: 0,
            due: 0,
            secs: plan.secs,
            drain_secs: 0.0,
            peak_conns: 0,
            work_rate: plan.work_rate,
            ping_rate: plan.ping_rate(),
        }
    }

    /// `/work` answered 200 within the window, per second of it.
    pub fn work_throughput(&self) -> f64 {
        self.work_done_in_window as f64 / self.secs
    }

    fn error(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        let e = &mut self.errors;
        match kind {
            ErrorKind::Connect => e.connect += 1,
            ErrorKind::Io => e.io += 1,
            ErrorKind::Timeout => e.timeout += 1,
            ErrorKind::NotSent => e.not_sent += 1,
        }
        if e.first.is_none() {
            e.first = Some(message());
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ErrorKind {
    Connect,
    Io,
    Timeout,
    NotSent,
}

// ---- connections -------------------------------------------------------------------

/// Counts an open (or opening) connection while it lives.
struct OpenGuard(Rc<Cell<usize>>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// One keep-alive connection.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    _open: OpenGuard,
}

/// A pool of keep-alive connections to one server: an idle one is reused
/// (the most recently used first); with none idle, a request opens a new
/// one rather than wait, up to `max_conns` open at once.
pub struct Client {
    addr: SocketAddr,
    host: String,
    idle: RefCell<Vec<Conn>>,
    open: Rc<Cell<usize>>,
    max_conns: usize,
}

impl Client {
    pub fn new(addr: SocketAddr, max_conns: usize) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            idle: RefCell::new(Vec::new()),
            open: Rc::new(Cell::new(0)),
            max_conns,
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// A slot for a new connection, unless the cap is reached.
    fn reserve(&self) -> Option<OpenGuard> {
        let open = self.open.get();
        (open < self.max_conns).then(|| {
            self.open.set(open + 1);
            OpenGuard(Rc::clone(&self.open))
        })
    }

    async fn connect(&self, slot: OpenGuard) -> Result<Conn, (ErrorKind, String)> {
        let failed = |e: &dyn std::fmt::Display| (ErrorKind::Connect, format!("connect: {e}"));
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| failed(&e))?;
        stream.set_nodelay(true).map_err(|e| failed(&e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        // Drives the connection; ends when the sender is dropped or the
        // server closes it (or with the `LocalSet`).
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        Ok(Conn {
            sender,
            _open: slot,
        })
    }

    /// Connections open now, in use or idle.
    pub fn open(&self) -> usize {
        self.open.get()
    }
}

// ---- one run ---------------------------------------------------------------------------

/// A run's shared state: the figures, and the requests not yet finished.
struct Run {
    outcome: RefCell<Outcome>,
    outstanding: Cell<u64>,
    all_done: Notify,
    origin_ns: u64,
    window_end_ns: u64,
    last_done_ns: Cell<u64>,
}

impl Run {
    fn finish(&self, done_ns: u64) {
        self.last_done_ns.set(self.last_done_ns.get().max(done_ns));
        let left = self.outstanding.get() - 1;
        self.outstanding.set(left);
        if left == 0 {
            self.all_done.notify_one();
        }
    }
}

/// Sends `plan`'s schedule through `client`, and returns once every request
/// is answered or has failed. Must run inside a `LocalSet`.
pub async fn run(client: &Rc<Client>, plan: &Plan) -> std::io::Result<Outcome> {
    let pacer = Pacer::new()?;
    let total = plan.total();
    let interval_ns = 1e9 / plan.total_rate();
    let origin_ns = now_ns() + SLACK_NS;
    let run = Rc::new(Run {
        outcome: RefCell::new(Outcome::new(plan)),
        outstanding: Cell::new(0),
        all_done: Notify::new(),
        origin_ns,
        window_end_ns: origin_ns + (plan.secs * 1e9) as u64,
        last_done_ns: Cell::new(origin_ns),
    });
    let work_path: Rc<str> = plan.work_path().into();
    let ping_path: Rc<str> = "/ping".into();

    let mut due_at_once = 0;
    for i in 0..total {
        let intended_ns = origin_ns + (i as f64 * interval_ns) as u64;
        // Never waits for the server: only for the schedule.
        if now_ns() < intended_ns {
            due_at_once = 0;
            pacer.sleep_until(intended_ns).await?;
        } else {
            // Behind the schedule: every request due goes out now, but the
            // ones already spawned get to start (and be timed) meanwhile.
            due_at_once += 1;
            if due_at_once % BURST == 0 {
                tokio::task::yield_now().await;
            }
        }
        let is_work = plan.is_work(i);
        let path = if is_work { &work_path } else { &ping_path };
        run.outstanding.set(run.outstanding.get() + 1);
        tokio::task::spawn_local(request(
            Rc::clone(client),
            Rc::clone(&run),
            Rc::clone(path),
            is_work,
            intended_ns,
            plan.timeout,
        ));
    }
    while run.outstanding.get() > 0 {
        run.all_done.notified().await;
    }

    let mut outcome = run.outcome.replace(Outcome::new(plan));
    outcome.due = total;
    outcome.drain_secs = run.last_done_ns.get().saturating_sub(run.window_end_ns) as f64 / 1e9;
    Ok(outcome)
}

/// One request: an idle connection or a new one, the request, its whole
/// answer; recorded into `run`.
async fn request(
    client: Rc<Client>,
    run: Rc<Run>,
    path: Rc<str>,
    is_work: bool,
    intended_ns: u64,
    timeout: Duration,
) {
    let started_ns = now_ns();
    {
        let mut o = run.outcome.borrow_mut();
        o.late
            .saturating_record(micros(started_ns.saturating_sub(intended_ns)));
    }
    let conn = match client.take_idle() {
        Some(conn) => Ok(conn),
        None => match client.reserve() {
            Some(slot) => Err(slot),
            None => {
                let max = client.max_conns;
                run.outcome.borrow_mut().error(ErrorKind::NotSent, || {
                    format!("not sent: {max} connections open, none idle")
                });
                run.finish(started_ns);
                return;
            }
        },
    };
    {
        let mut o = run.outcome.borrow_mut();
        o.peak_conns = o.peak_conns.max(client.open());
    }
    let exchange = async {
        let io = |e: hyper::Error| (ErrorKind::Io, format!("{e}"));
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(slot) => client.connect(slot).await?,
        };
        conn.sender.ready().await.map_err(io)?;
        let request = hyper::Request::get(&*path)
            .header(hyper::header::HOST, &client.host)
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let response = conn.sender.send_request(request).await.map_err(io)?;
        let status = response.status().as_u16();
        response.into_body().collect().await.map_err(io)?;
        Ok::<_, (ErrorKind, String)>((status, conn))
    };
    let result = tokio::time::timeout(timeout, exchange).await;
    let done_ns = now_ns();
    {
        let mut o = run.outcome.borrow_mut();
        match result {
            Ok(Ok((status, conn))) => {
                let latency = micros(done_ns.saturating_sub(intended_ns));
                let statuses = if is_work {
                    &mut o.work_status
                } else {
                    &mut o.ping_status
                };
                match status {
                    200 => statuses.ok += 1,
                    503 => statuses.unavailable += 1,
                    _ => statuses.other += 1,
                }
                match (is_work, status) {
                    (false, 200) => o.ping.saturating_record(latency),
                    (true, 200) => {
                        o.work.saturating_record(latency);
                        let second =
                            (intended_ns.saturating_sub(run.origin_ns) / 1_000_000_000) as usize;
                        let last = o.work_by_second.len() - 1;
                        o.work_by_second[second.min(last)].saturating_record(latency);
                        if done_ns <= run.window_end_ns {
                            o.work_done_in_window += 1;
                        }
                    }
                    (true, 503) => o.shed.saturating_record(latency),
                    _ => {}
                }
                client.idle.borrow_mut().push(conn);
            }
            Ok(Err((kind, message))) => o.error(kind, || message),
            Err(_) => o.error(ErrorKind::Timeout, || {
                format!("timeout: no answer within {} s", timeout.as_secs_f64())
            }),
        }
    }
    run.finish(done_ns);
}
