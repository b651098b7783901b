//! [`LoopWatch`]: a future that an event loop polls, and a watcher thread
//! that wakes it at a steady period and times how long the loop takes to
//! poll it. A loop that does not poll it within the threshold is stalled:
//! the watcher takes the loop thread's stack and reports a [`Stall`] while
//! it is still happening, and again with the final duration when the loop
//! comes back.
//!
//! # The tick protocol
//!
//! Three words per watch, all in [`Watched`]:
//! - `woken_at`: the time of the watcher's last wake-up that the loop has not
//!   answered yet (plus one, so that 0 means "answered");
//! - `last_poll`: when the loop last polled the watch;
//! - `ended`: the length of a stall the loop has just come back from, for
//!   the watcher to report (0: none).
//!
//! The loop's poll first registers its waker, then swaps `woken_at` to 0
//! (Release), and turns a non-zero value into a lag sample. The watcher's
//! tick compare-exchanges `woken_at` from 0 to its time (Acquire): success
//! means the loop has answered, so it wakes the registered waker; failure
//! means the loop is late, and late by more than the threshold means
//! stalled. The
//! order on the loop's side is what makes wake-ups never lost: a tick that
//! reads the swap's 0 also sees the waker registered before it (loom model
//! `loop_watch_tick_races_first_poll`, mutant `watch_swap_before_waker`).
//!
//! # Invariants
//! - A stall is counted once, and reported at most twice: once while it is
//!   going on (when the threshold is crossed), once when the loop is back.
//! - The reported duration is the time since the loop last polled the watch,
//!   so it is at least the stall's length and at most one period more.
//! - The reporter runs on the watcher thread, never on the loop; a panic in
//!   it is caught and the watcher goes on.
//! - The watcher thread exists only while some watch is registered (first
//!   polled and not yet dropped); one thread serves every watch.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::histogram::{Histogram, Recorder};
use super::stack::{self, Frame};
use crate::sync::{lock, AtomicU64, Mutex, Ordering, StdArc as Arc};

/// The default period: half the threshold, within these bounds (see
/// [`LoopWatch::period`] for why).
const MIN_DEFAULT_PERIOD: Duration = Duration::from_millis(1);
const MAX_DEFAULT_PERIOD: Duration = Duration::from_millis(100);

/// Watches an event loop for stalls: a future to spawn on the loop.
///
/// A watcher thread wakes it every [`period`](Self::period) and measures
/// how long the loop takes to poll it (its *lag*). A loop that takes longer
/// than the threshold is blocked: the watcher reports a [`Stall`] at once,
/// while the loop is still blocked, with the loop thread's stack (Linux:
/// taken with a signal, see [`Stall::stack`]), and again with the final
/// duration when the loop polls the watch again. The default reporter
/// writes to stderr, in the spirit of asyncio's debug mode:
///
/// ```text
/// event loop on thread 'main' blocked for 30 ms and still blocked
///    0: stall::render_report
///    1: tokio::runtime::scheduler::current_thread::Context::enter
///    ...
///    7: stall::main
/// event loop on thread 'main' was blocked for 50 ms
/// ```
///
/// It works on any executor and needs no timer from it. It runs until it is
/// dropped (or its task aborted); the watcher thread stops when the last
/// watch of the process is gone.
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let (tx, stalled) = mpsc::channel();
/// let watch = offload::LoopWatch::new(Duration::from_millis(20)).on_stall(move |stall| {
///     if stall.is_ongoing() {
///         let _ = tx.send(stall.duration());
///     }
/// });
/// let stats = watch.stats();
/// rt.block_on(async {
///     let watching = tokio::spawn(watch);
///     tokio::task::yield_now().await; // the watch's first poll
///     // A blocking call on the loop: reported while it blocks.
///     let blocked_for = stalled.recv().unwrap();
///     assert!(blocked_for >= Duration::from_millis(20));
///     watching.abort();
/// });
/// assert_eq!(stats.stalls(), 1);
/// ```
///
/// Which thread: the stall names the thread that last polled the watch. On
/// a single-threaded loop (tokio's current-thread runtime, smol's
/// `block_on`, a futures `LocalPool`) that is the loop's thread. On a
/// work-stealing runtime the watch only stalls if the worker it is queued
/// on is blocked, and its task may have moved: the thread named is then
/// the worker that last polled it.
#[must_use = "a LoopWatch does nothing until it is spawned on the loop to watch"]
pub struct LoopWatch {
    watched: Arc<Watched>,
    registered: bool,
}

impl LoopWatch {
    /// A watch that reports the loop as stalled once it has not polled the
    /// watch for `threshold` after a wake-up. Python's asyncio uses 100 ms
    /// (`loop.slow_callback_duration`); a server that wants a tail under
    /// 10 ms might use 10–20 ms.
    ///
    /// # Panics
    /// If `threshold` is zero.
    pub fn new(threshold: Duration) -> Self {
        assert!(
            !threshold.is_zero(),
            "LoopWatch::new: the threshold must not be zero"
        );
        Self {
            watched: Arc::new(Watched::new(
                threshold,
                (threshold / 2).clamp(MIN_DEFAULT_PERIOD, MAX_DEFAULT_PERIOD),
                Arc::new(report_to_stderr),
            )),
            registered: false,
        }
    }

    /// How often the watcher wakes the loop. Default: half the threshold,
    /// between 1 ms and 100 ms.
    ///
    /// Each wake-up is one lag sample and costs the loop one poll, and an
    /// idle loop one wake-up of its thread and of the watcher's: about
    /// 75 µs of CPU on the 2-core VM of `BENCHMARKS.md`, so 0.0075 cores at
    /// a 10 ms period and 0.0016 at 50 ms (`examples/stall.rs` measures
    /// it). A stall is reported at most `threshold + period` after it
    /// starts, and a stall shorter than that may end before the threshold
    /// is crossed after a wake-up, unreported. The default keeps that bound
    /// at 1.5 × the threshold.
    ///
    /// # Panics
    /// If `period` is zero.
    pub fn period(mut self, period: Duration) -> Self {
        assert!(
            !period.is_zero(),
            "LoopWatch::period: the period must not be zero"
        );
        self.configure(|watched| watched.period = nanos(period));
        self
    }

    /// Sets the reporter, called on the watcher thread for each [`Stall`]:
    /// once while it is going on ([`Stall::is_ongoing`]), once when the loop
    /// is back. A panic in it is caught; the watch goes on.
    pub fn on_stall(mut self, report: impl Fn(&Stall) + Send + Sync + 'static) -> Self {
        self.configure(|watched| *lock(&watched.reporter) = Arc::new(report));
        self
    }

    /// A handle on this watch's figures, readable from any thread, that
    /// outlives the watch.
    pub fn stats(&self) -> LoopStats {
        LoopStats {
            lags: self.watched.lags.clone(),
        }
    }

    /// The threshold this watch was made with.
    pub fn threshold(&self) -> Duration {
        Duration::from_nanos(self.watched.threshold)
    }

    fn configure(&mut self, set: impl FnOnce(&mut Watched)) {
        let watched =
            Arc::get_mut(&mut self.watched).expect("LoopWatch: configure it before its first poll");
        set(watched);
    }
}

impl Future for LoopWatch {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.registered {
            this.registered = true;
            watcher::register(this.watched.clone());
        }
        this.watched.note_thread();
        this.watched.on_poll(now(), cx.waker());
        Poll::Pending
    }
}

impl Drop for LoopWatch {
    fn drop(&mut self) {
        if self.registered {
            watcher::unregister(&self.watched);
        }
    }
}

impl fmt::Debug for LoopWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopWatch")
            .field("threshold", &Duration::from_nanos(self.watched.threshold))
            .field("period", &Duration::from_nanos(self.watched.period))
            .field("stalls", &self.watched.lags.stalls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A stall of a watched loop, as given to [`LoopWatch::on_stall`]'s
/// reporter. Its `Display` is the report line, followed by the stack (one
/// frame a line, innermost first) where one was taken.
#[derive(Clone)]
pub struct Stall {
    thread: Arc<LoopThread>,
    duration: Duration,
    ongoing: bool,
    stack: Option<Arc<[Frame]>>,
}

impl Stall {
    /// The blocked thread's name, if it has one.
    pub fn thread_name(&self) -> Option<&str> {
        self.thread.name.as_deref()
    }

    /// The blocked thread's id.
    pub fn thread_id(&self) -> ThreadId {
        self.thread.id
    }

    /// How long the loop has been blocked (while ongoing) or was blocked:
    /// the time since it last polled the watch, so at least the stall's
    /// length and at most one period more.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether the loop is still blocked: `true` for the report made when
    /// the threshold is crossed, `false` for the one made when it is back.
    pub fn is_ongoing(&self) -> bool {
        self.ongoing
    }

    /// The blocked thread's stack when the stall was noticed, innermost
    /// frame first. Linux only (taken with a signal; see the
    /// `offload::observe` notes in `ARCHITECTURE.md`); `None` elsewhere, or
    /// if the thread did not answer the signal within 100 ms, or no
    /// real-time signal was free. Both reports of one stall carry the same
    /// stack.
    pub fn stack(&self) -> Option<&[Frame]> {
        self.stack.as_deref()
    }

    fn headline(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.duration.as_secs_f64() * 1e3;
        match &self.thread.name {
            Some(name) => write!(f, "event loop on thread '{name}'")?,
            None => write!(f, "event loop on thread {:?}", self.thread.id)?,
        }
        if self.ongoing {
            write!(f, " blocked for {millis:.0} ms and still blocked")
        } else {
            write!(f, " was blocked for {millis:.0} ms")
        }
    }
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.headline(f)?;
        for (i, frame) in self.stack().unwrap_or_default().iter().enumerate() {
            write!(f, "\n  {i:>2}: {frame}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stall")
            .field("thread_name", &self.thread.name)
            .field("thread_id", &self.thread.id)
            .field("duration", &self.duration)
            .field("ongoing", &self.ongoing)
            .field(
                "stack_frames",
                &self.stack.as_ref().map(|stack| stack.len()),
            )
            .finish()
    }
}

/// The figures of one [`LoopWatch`] ([`LoopWatch::stats`]): lag is how long
/// the loop took to poll the watch after the watcher woke it. Cheap to
/// clone, `Send + Sync`, readable while the loop runs.
///
/// ```
/// let watch = offload::LoopWatch::new(std::time::Duration::from_millis(50));
/// let stats = watch.stats();
/// assert_eq!((stats.samples(), stats.stalls()), (0, 0));
/// # drop(watch);
/// ```
#[derive(Clone)]
pub struct LoopStats {
    lags: Arc<Lags>,
}

impl LoopStats {
    /// The median lag (see [`Histogram::quantile`] for the precision).
    pub fn lag_p50(&self) -> Duration {
        self.lags().p50()
    }

    /// The 99th percentile of the lag.
    pub fn lag_p99(&self) -> Duration {
        self.lags().p99()
    }

    /// The largest lag seen.
    pub fn lag_max(&self) -> Duration {
        self.lags().max()
    }

    /// How many lags were measured (one per wake-up the loop answered).
    pub fn samples(&self) -> u64 {
        self.lags().count()
    }

    /// How many stalls were seen (lags past the threshold), each counted
    /// once.
    pub fn stalls(&self) -> u64 {
        self.lags.stalls.load(Ordering::Relaxed)
    }

    /// Every lag measured so far, as a histogram.
    pub fn lags(&self) -> Histogram {
        let mut lags = Histogram::new();
        self.lags.recorder.merge_into(&mut lags);
        lags
    }
}

impl fmt::Debug for LoopStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopStats")
            .field("samples", &self.samples())
            .field("lag_p50", &self.lag_p50())
            .field("lag_p99", &self.lag_p99())
            .field("lag_max", &self.lag_max())
            .field("stalls", &self.stalls())
            .finish()
    }
}

/// The lag figures: relaxed counters, a statistic nothing else depends on.
pub(crate) struct Lags {
    /// Written by whichever thread polls the watch (shared: the loop may
    /// move between threads on a work-stealing runtime).
    recorder: Recorder,
    stalls: AtomicU64,
}

type Reporter = Arc<dyn Fn(&Stall) + Send + Sync>;

/// The thread that polled a watch last.
struct LoopThread {
    id: ThreadId,
    name: Option<String>,
    /// Its OS id, where the platform can signal it.
    tid: Option<usize>,
}

/// The state of one watch that the loop and the watcher share: see the
/// module docs for the protocol.
pub(crate) struct Watched {
    /// Time of the unanswered wake-up, plus one; 0: answered.
    woken_at: AtomicU64,
    /// Time of the loop's latest poll.
    last_poll: AtomicU64,
    /// Length of a stall the loop came back from, not yet reported; 0: none.
    ended: AtomicU64,
    waker: Mutex<Option<Waker>>,
    thread: Mutex<Option<Arc<LoopThread>>>,
    threshold: u64,
    period: u64,
    reporter: Mutex<Reporter>,
    lags: Arc<Lags>,
    /// The watcher thread's own bookkeeping.
    side: Mutex<Side>,
}

/// What only the watcher thread reads and writes.
#[derive(Default)]
struct Side {
    next_tick: u64,
    /// The stall reported as ongoing, until the loop is back.
    ongoing: Option<Stall>,
}

impl Watched {
    pub(crate) fn new(threshold: Duration, period: Duration, reporter: Reporter) -> Self {
        Self {
            woken_at: AtomicU64::new(0),
            last_poll: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            waker: Mutex::new(None),
            thread: Mutex::new(None),
            threshold: nanos(threshold),
            period: nanos(period),
            reporter: Mutex::new(reporter),
            lags: Arc::new(Lags {
                recorder: Recorder::new(),
                stalls: AtomicU64::new(0),
            }),
            side: Mutex::new(Side::default()),
        }
    }

    /// The loop's side of the tick protocol, at time `now`: returns the lag
    /// if this poll answers a wake-up.
    pub(crate) fn on_poll(&self, now: u64, waker: &Waker) -> Option<u64> {
        if crate::sync::mutant!("watch_swap_before_waker") {
            let woken = self.woken_at.swap(0, Ordering::Release);
            self.register(waker);
            return self.answer(now, woken);
        }
        self.register(waker);
        // Release: a tick that reads this 0 sees the waker registered above.
        let woken = self.woken_at.swap(0, Ordering::Release);
        self.answer(now, woken)
    }

    fn register(&self, waker: &Waker) {
        let mut slot = lock(&self.waker);
        if !slot.as_ref().is_some_and(|old| old.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    fn answer(&self, now: u64, woken: u64) -> Option<u64> {
        // Relaxed: only the watcher reads it, for a duration it reports.
        let previous = self.last_poll.swap(now, Ordering::Relaxed);
        if woken == 0 {
            return None;
        }
        let lag = now.saturating_sub(woken - 1);
        self.lags.recorder.record(lag, false);
        if lag >= self.threshold {
            // Release: nothing to publish beyond the value; kept symmetric
            // with the watcher's Acquire swap for readability.
            self.ended
                .store(now.saturating_sub(previous).max(1), Ordering::Release);
        }
        Some(lag)
    }

    /// The watcher's tick at time `now`: wakes the loop if it answered the
    /// last wake-up and returns `None`; otherwise returns when that
    /// unanswered wake-up was.
    pub(crate) fn on_tick(&self, now: u64) -> Option<u64> {
        // One RMW, not a load and a store: the tick arms only if the loop has
        // answered. Acquire (both ways): pairs with the poll's Release swap,
        // so the waker it registered before answering is the one woken.
        if let Err(woken) =
            self.woken_at
                .compare_exchange(0, now + 1, Ordering::Acquire, Ordering::Acquire)
        {
            return Some(woken - 1);
        }
        let waker = lock(&self.waker).clone();
        if let Some(waker) = waker {
            waker.wake();
        }
        None
    }

    /// The unanswered wake-up's time, if any.
    fn pending_since(&self) -> Option<u64> {
        // Acquire: as in `on_tick`.
        match self.woken_at.load(Ordering::Acquire) {
            0 => None,
            woken => Some(woken - 1),
        }
    }

    /// Records the polling thread, when it changed.
    fn note_thread(&self) {
        let current = std::thread::current();
        let mut thread = lock(&self.thread);
        if thread
            .as_ref()
            .is_some_and(|known| known.id == current.id())
        {
            return;
        }
        *thread = Some(Arc::new(LoopThread {
            id: current.id(),
            name: current.name().map(str::to_owned),
            tid: stack::current_tid(),
        }));
    }

    /// The watcher's whole visit at time `now`: reports a stall that ended,
    /// ticks if a period has passed, reports a stall that crossed the
    /// threshold. Returns when it next needs a visit.
    fn visit(&self, now: u64) -> u64 {
        let mut side = lock(&self.side);
        // Acquire: pairs with the poll's Release store (see `answer`).
        let ended = self.ended.swap(0, Ordering::Acquire);
        if ended != 0 {
            let noticed = side.ongoing.take();
            if noticed.is_none() {
                self.lags.stalls.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(thread) = lock(&self.thread).clone() {
                self.report(&Stall {
                    thread,
                    duration: Duration::from_nanos(ended),
                    ongoing: false,
                    stack: noticed.and_then(|stall| stall.stack),
                });
            }
        }
        let pending = if now >= side.next_tick {
            side.next_tick = (side.next_tick + self.period).max(now + 1);
            self.on_tick(now)
        } else {
            self.pending_since()
        };
        let mut next = side.next_tick;
        if let (Some(since), None) = (pending, &side.ongoing) {
            if now.saturating_sub(since) >= self.threshold {
                if let Some(thread) = lock(&self.thread).clone() {
                    self.lags.stalls.fetch_add(1, Ordering::Relaxed);
                    // Relaxed: a duration to report, nothing more.
                    let last_poll = self.last_poll.load(Ordering::Relaxed);
                    let duration = Duration::from_nanos(now.saturating_sub(last_poll));
                    let stack = thread.tid.and_then(stack::stack_of).map(Arc::from);
                    let stall = Stall {
                        thread,
                        duration,
                        ongoing: true,
                        stack,
                    };
                    self.report(&stall);
                    side.ongoing = Some(stall);
                }
            } else {
                next = next.min(since + self.threshold);
            }
        }
        next
    }

    /// Runs the reporter, containing a panic.
    fn report(&self, stall: &Stall) {
        let reporter = lock(&self.reporter).clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reporter(stall)));
        drop(outcome); // the panic hook has printed it; the watch goes on
    }
}

/// The default reporter: asyncio-style lines on stderr, the stack only in
/// the first report of a stall.
fn report_to_stderr(stall: &Stall) {
    if stall.is_ongoing() {
        eprintln!("{stall}");
    } else {
        struct Headline<'a>(&'a Stall);
        impl fmt::Display for Headline<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.headline(f)
            }
        }
        eprintln!("{}", Headline(stall));
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds on a monotonic clock shared by every watch.
pub(crate) fn now() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    nanos(EPOCH.get_or_init(Instant::now).elapsed())
}

/// The one watcher thread of the process and the watches it serves.
#[cfg(not(loom))]
mod watcher {
    use super::*;
    use crate::sync::thread;

    struct Watcher {
        watches: Vec<Arc<Watched>>,
        thread: Option<thread::Thread>,
    }

    static WATCHER: Mutex<Watcher> = Mutex::new(Watcher {
        watches: Vec::new(),
        thread: None,
    });

    /// Adds a watch; starts the thread if there is none.
    pub(super) fn register(watched: Arc<Watched>) {
        let mut watcher = lock(&WATCHER);
        watcher.watches.push(watched);
        if let Some(thread) = &watcher.thread {
            thread.unpark();
            return;
        }
        match thread::Builder::new()
            .name("offload-loop-watch".into())
            .spawn(run)
        {
            Ok(handle) => watcher.thread = Some(handle.thread().clone()),
            Err(error) => {
                eprintln!("offload: LoopWatch cannot start its watcher thread: {error}");
            }
        }
    }

    /// Removes a watch; the thread exits when none is left.
    pub(super) fn unregister(watched: &Arc<Watched>) {
        let mut watcher = lock(&WATCHER);
        watcher.watches.retain(|other| !Arc::ptr_eq(other, watched));
        if let Some(thread) = &watcher.thread {
            thread.unpark();
        }
    }

    fn run() {
        loop {
            let watches = {
                let mut watcher = lock(&WATCHER);
                if watcher.watches.is_empty() {
                    watcher.thread = None;
                    return;
                }
                watcher.watches.clone()
            };
            let now = now();
            let next = watches
                .iter()
                .map(|watched| watched.visit(now))
                .min()
                .unwrap_or(now);
            drop(watches);
            let now = super::now();
            if next > now {
                crate::sync::park_timeout(Duration::from_nanos(next - now));
            }
        }
    }
}

/// Under loom the models drive [`Watched`] directly; no watcher thread.
#[cfg(loom)]
mod watcher {
    use super::*;

    pub(super) fn register(_watched: Arc<Watched>) {}
    pub(super) fn unregister(_watched: &Arc<Watched>) {}
}

/// The reporter a model gives [`Watched::new`].
#[cfg(loom)]
pub(crate) fn silent_reporter() -> Reporter {
    Arc::new(|_: &Stall| {})
}

/// Under loom, the figures a model checks.
#[cfg(loom)]
impl Watched {
    pub(crate) fn samples(&self) -> u64 {
        let mut lags = Histogram::new();
        self.lags.recorder.merge_into(&mut lags);
        lags.count()
    }
}
