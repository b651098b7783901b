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
//! - The reporter runs on a thread of its watch's own, never on the loop
//!   or the watcher: a reporter that blocks delays no capture and no other
//!   watch's report. A panic in it is caught and the watch goes on.
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
/// see [`Stall::stack`]) and what it did with its time
/// ([`Stall::cause`]), and again with the final duration when the loop
/// polls the watch again. The default reporter writes to stderr, in the
/// spirit of asyncio's debug mode: the [summary](Stall::summary) and at
/// most 8 of the application's own frames (`{:#}` of a `Stall` prints
/// every frame):
///
/// ```text
/// event loop on thread 'main' blocked for 30 ms and still blocked (running) in stall::render_report
///    0: stall::render_report
///              at examples/stall.rs:53
///    7: stall::serve::{{closure}}
///              at examples/stall.rs:95
///    ...
/// event loop on thread 'main' was blocked for 50 ms (running) in stall::render_report
/// ```
///
/// Taking the stack is safe beside the program's own signal handling: a
/// loop thread in a system call is never signalled (its stack is read
/// through `/proc`, so the call is not interrupted), and a running one
/// only after checks (the signal's action still offload's, not blocked,
/// not pending, the same thread); the handler only copies. Where a check
/// fails, the stall comes without a stack, and
/// [`Stall::no_stack_reason`] says why.
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
    ///
    /// See the example on [`LoopWatch`].
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
    ///
    /// ```
    /// use std::time::Duration;
    /// let watch = offload::LoopWatch::new(Duration::from_millis(50))
    ///     .period(Duration::from_millis(10));
    /// assert_eq!(watch.threshold(), Duration::from_millis(50));
    /// ```
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
    ///
    /// See the example on [`LoopWatch`].
    pub fn on_stall(mut self, report: impl Fn(&Stall) + Send + Sync + 'static) -> Self {
        self.configure(|watched| *lock(&watched.reporter) = Arc::new(report));
        self
    }

    /// A handle on this watch's figures, readable from any thread, that
    /// outlives the watch.
    ///
    /// See the example on [`LoopWatch`].
    pub fn stats(&self) -> LoopStats {
        LoopStats {
            lags: self.watched.lags.clone(),
        }
    }

    /// The threshold this watch was made with.
    ///
    /// ```
    /// use std::time::Duration;
    /// let watch = offload::LoopWatch::new(Duration::from_millis(50))
    ///     .period(Duration::from_millis(10));
    /// assert_eq!(watch.threshold(), Duration::from_millis(50));
    /// ```
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
/// reporter. Its `Display` is the [`summary`](Self::summary) line followed
/// by at most 8 of the application's own frames; the alternate form
/// (`{:#}`) prints the whole stack (one frame a line, innermost first).
///
/// ```
/// use std::sync::mpsc;
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let (tx, stalls) = mpsc::channel();
/// let watch = offload::LoopWatch::new(Duration::from_millis(20)).on_stall(move |stall| {
///     if stall.is_ongoing() {
///         let _ = tx.send(stall.clone());
///     }
/// });
/// rt.block_on(async {
///     let watching = tokio::spawn(watch);
///     tokio::task::yield_now().await; // the watch's first poll
///     // Waiting on the channel blocks the loop: that is the stall.
///     let stall: offload::Stall = stalls.recv().unwrap();
///     assert!(stall.is_ongoing());
///     assert!(stall.duration() >= Duration::from_millis(20));
///     assert_eq!(stall.thread_id(), std::thread::current().id());
///     println!("{}", stall.summary());
///     println!("thread {:?}, cause {:?}", stall.thread_name(), stall.cause());
///     println!("on a CPU {:?}, waiting for one {:?}", stall.on_cpu(), stall.waited_for_cpu());
///     match stall.stack() {
///         Some(frames) => {
///             for frame in frames {
///                 let (function, file) = (frame.function(), frame.file());
///                 println!("{:#x} {function:?} {file:?}:{:?}", frame.address(), frame.line());
///             }
///             println!("culprit: {:?}", stall.application_frame());
///         }
///         None => println!("no stack: {}", stall.no_stack_reason().unwrap()),
///     }
///     watching.abort();
/// });
/// ```
#[derive(Clone)]
pub struct Stall {
    thread: Arc<LoopThread>,
    duration: Duration,
    ongoing: bool,
    stack: Result<Arc<[Frame]>, Arc<str>>,
    /// What taking the stack cost, where one was taken.
    cost: Option<stack::StackCost>,
    cpu: Option<CpuFigures>,
}

/// What the stalled thread did with its time, by the scheduler's figures
/// over the stall ([`Stall::cause`]).
///
/// ```
/// use offload::StallCause;
/// fn advice(cause: StallCause) -> &'static str {
///     match cause {
///         StallCause::Blocked => "move the blocking call to offload::spawn_blocking",
///         StallCause::Running => "move the computation to offload::spawn",
///         StallCause::StarvedOfCpu => "the machine is overloaded",
///         _ => "see the stack", // the enum is non-exhaustive
///     }
/// }
/// assert_eq!(StallCause::Blocked.to_string(), "blocked");
/// assert!(advice(StallCause::Running).contains("offload::spawn"));
/// ```
///
/// The cause of a real stall: see the example on [`Stall`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StallCause {
    /// Most of the stall was spent off the CPU and not waiting for one:
    /// sleeping or blocked in the kernel (a blocking call on the loop).
    Blocked,
    /// Most of the stall was spent running: code on the loop that computes
    /// for too long.
    Running,
    /// Most of the stall was spent runnable but waiting for a CPU: the
    /// machine is overloaded, or other threads (the pool's, say) share the
    /// loop's cores. The stack then shows where the thread was preempted,
    /// not a culprit.
    StarvedOfCpu,
}

impl fmt::Display for StallCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StallCause::Blocked => "blocked",
            StallCause::Running => "running",
            StallCause::StarvedOfCpu => "starved of CPU",
        })
    }
}

/// The loop thread's scheduler figures over a stall.
#[derive(Clone, Copy, Debug)]
struct CpuFigures {
    /// The span they cover.
    span: Duration,
    on_cpu: Duration,
    waiting_for_cpu: Duration,
}

impl CpuFigures {
    fn cause(&self) -> StallCause {
        if self.waiting_for_cpu * 2 > self.span {
            StallCause::StarvedOfCpu
        } else if self.on_cpu * 2 > self.span {
            StallCause::Running
        } else {
            StallCause::Blocked
        }
    }
}

impl Stall {
    /// The blocked thread's name, if it has one.
    ///
    /// See the example on [`Stall`].
    pub fn thread_name(&self) -> Option<&str> {
        self.thread.name.as_deref()
    }

    /// The blocked thread's id.
    ///
    /// See the example on [`Stall`].
    pub fn thread_id(&self) -> ThreadId {
        self.thread.id
    }

    /// How long the loop has been blocked (while ongoing) or was blocked:
    /// the time since it last polled the watch, so at least the stall's
    /// length and at most one period more.
    ///
    /// See the example on [`Stall`].
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Whether the loop is still blocked: `true` for the report made when
    /// the threshold is crossed, `false` for the one made when it is back.
    ///
    /// See the example on [`Stall`].
    pub fn is_ongoing(&self) -> bool {
        self.ongoing
    }

    /// The blocked thread's stack when the stall was noticed, innermost
    /// frame first. Linux on x86_64 and aarch64 only (see the
    /// `offload::observe` notes in `ARCHITECTURE.md`); `None` elsewhere, or
    /// when it could not be taken safely: [`no_stack_reason`] says why.
    /// Both reports of one stall carry the same stack.
    ///
    /// [`no_stack_reason`]: Self::no_stack_reason
    ///
    /// See the example on [`Stall`].
    pub fn stack(&self) -> Option<&[Frame]> {
        self.stack.as_deref().ok()
    }

    /// Why [`stack`](Self::stack) is `None`: the platform, or a check
    /// that failed (the program changed the signal's action, the loop
    /// thread blocks it, the thread id was reused, the thread did not
    /// answer, …). `None` when there is a stack.
    ///
    /// See the example on [`Stall`].
    pub fn no_stack_reason(&self) -> Option<&str> {
        self.stack.as_ref().err().map(|why| &**why)
    }

    /// What the thread did over the stall, by the scheduler's figures
    /// (Linux: `/proc/self/task/<tid>/schedstat`, from the loop's last
    /// answered wake-up to the report); `None` where they are not kept.
    ///
    /// See the example on [`Stall`].
    pub fn cause(&self) -> Option<StallCause> {
        self.cpu.as_ref().map(CpuFigures::cause)
    }

    /// How long, over the stall, the thread was runnable but waited for a
    /// CPU (the scheduler's run-queue time); `None` where not known.
    ///
    /// See the example on [`Stall`].
    pub fn waited_for_cpu(&self) -> Option<Duration> {
        self.cpu.map(|cpu| cpu.waiting_for_cpu)
    }

    /// How long, over the stall, the thread ran on a CPU; `None` where not
    /// known.
    ///
    /// See the example on [`Stall`].
    pub fn on_cpu(&self) -> Option<Duration> {
        self.cpu.map(|cpu| cpu.on_cpu)
    }

    /// The first frame of the stack that is the application's own: a Rust
    /// function outside std, core, alloc, the runtimes and executors
    /// (tokio, smol, async-executor, async-io, futures), the server
    /// frameworks (hyper, h2, tower, axum), tracing and offload.
    ///
    /// See the example on [`Stall`].
    pub fn application_frame(&self) -> Option<&Frame> {
        self.stack()
            .unwrap_or_default()
            .iter()
            .find(|frame| stack::is_application(frame))
    }

    /// The report in one line: the thread, the duration, the cause, and
    /// the first frame of the application's own (or why there is none).
    ///
    /// ```text
    /// event loop on thread 'main' blocked for 31 ms and still blocked (running) in app::render_report
    /// event loop on thread 'main' blocked for 130 ms and still blocked (starved of CPU: waited 120 ms for a CPU; the machine is overloaded or other threads share its cores)
    /// ```
    ///
    /// See the example on [`Stall`].
    pub fn summary(&self) -> String {
        struct Summary<'a>(&'a Stall);
        impl fmt::Display for Summary<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.summary_line(f)
            }
        }
        Summary(self).to_string()
    }

    /// A reporter for [`LoopWatch::on_stall`] (cargo feature `tracing`):
    /// one `tracing` event a report, at level `WARN` while the stall lasts
    /// and `INFO` when it is over, with the fields `thread`, `duration_ms`,
    /// `cause` and `summary` (see [`summary`](Self::summary)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let watch = offload::LoopWatch::new(Duration::from_millis(50)).on_stall(offload::Stall::trace);
    /// # drop(watch);
    /// ```
    #[cfg(feature = "tracing")]
    pub fn trace(&self) {
        let thread = match &self.thread.name {
            Some(name) => name.clone(),
            None => format!("{:?}", self.thread.id),
        };
        let duration_ms = self.duration.as_secs_f64() * 1e3;
        let cause = self
            .cause()
            .map_or_else(|| "unknown".to_owned(), |cause| cause.to_string());
        let summary = self.summary();
        if self.ongoing {
            tracing::warn!(thread, duration_ms, cause, summary, "event loop stalled");
        } else {
            tracing::info!(
                thread,
                duration_ms,
                cause,
                summary,
                "event loop stall ended"
            );
        }
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

    fn summary_line(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.headline(f)?;
        if let Some(cpu) = &self.cpu {
            match cpu.cause() {
                StallCause::StarvedOfCpu => write!(
                    f,
                    " (starved of CPU: waited {} ms for a CPU, ran {} ms; the machine is \
                     overloaded or other threads share its cores)",
                    cpu.waiting_for_cpu.as_millis(),
                    cpu.on_cpu.as_millis()
                )?,
                cause => write!(f, " ({cause})")?,
            }
        }
        match (self.application_frame(), &self.stack) {
            (Some(frame), _) => write!(f, " in {}", frame.function().unwrap_or_default()),
            (None, Err(why)) => write!(f, "; no stack: {why}"),
            (None, Ok(_)) => Ok(()),
        }
    }
}

/// How many application frames `Display` prints (the alternate form prints
/// them all).
const SHORT_STACK: usize = 8;

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.summary_line(f)?;
        let stack = self.stack().unwrap_or_default();
        if f.alternate() {
            for (i, frame) in stack.iter().enumerate() {
                write!(f, "\n  {i:>2}: {frame}")?;
            }
            if let Some(cost) = &self.cost {
                write!(
                    f,
                    "\n  (stack copied through {} in {}, unwound and symbolized in {})",
                    cost.via,
                    Rounded(cost.copy),
                    Rounded(cost.unwind)
                )?;
            }
        } else {
            let mut own = stack
                .iter()
                .enumerate()
                .filter(|(_, frame)| stack::is_application(frame));
            for (i, frame) in own.by_ref().take(SHORT_STACK) {
                write!(f, "\n  {i:>2}: {frame}")?;
            }
            let more = own.count();
            if more > 0 {
                write!(f, "\n      … and {more} more")?;
            }
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
            .field("cpu", &self.cpu)
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
///
/// On a running loop:
///
/// ```
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let watch = offload::LoopWatch::new(Duration::from_millis(50))
///     .period(Duration::from_millis(2));
/// let stats = watch.stats();
/// rt.block_on(async {
///     let watching = tokio::spawn(watch);
///     while stats.samples() < 3 {
///         tokio::task::yield_now().await; // a busy but responsive loop
///     }
///     watching.abort();
/// });
/// assert!(stats.lag_p50() <= stats.lag_p99() && stats.lag_p99() <= stats.lag_max());
/// assert!(stats.lags().count() >= 3);
/// println!("{} samples, {} stalls", stats.samples(), stats.stalls());
/// ```
#[derive(Clone)]
pub struct LoopStats {
    lags: Arc<Lags>,
}

impl LoopStats {
    /// The median lag (see [`Histogram::quantile`] for the precision).
    ///
    /// See the example on [`LoopStats`].
    pub fn lag_p50(&self) -> Duration {
        self.lags().p50()
    }

    /// The 99th percentile of the lag.
    ///
    /// See the example on [`LoopStats`].
    pub fn lag_p99(&self) -> Duration {
        self.lags().p99()
    }

    /// The largest lag seen.
    ///
    /// See the example on [`LoopStats`].
    pub fn lag_max(&self) -> Duration {
        self.lags().max()
    }

    /// How many lags were measured (one per wake-up the loop answered).
    ///
    /// See the example on [`LoopStats`].
    pub fn samples(&self) -> u64 {
        self.lags().count()
    }

    /// How many stalls were seen (lags past the threshold), each counted
    /// once.
    ///
    /// See the example on [`LoopStats`].
    pub fn stalls(&self) -> u64 {
        self.lags.stalls.load(Ordering::Relaxed)
    }

    /// Every lag measured so far, as a histogram.
    ///
    /// See the example on [`LoopStats`].
    pub fn lags(&self) -> Histogram {
        let mut lags = Histogram::new();
        self.lags.recorder.merge_into(&mut lags);
        lags
    }
}

/// One line: the sample count, the lag's median, 99th percentile and
/// maximum as rounded durations (two significant digits: `2.1 ms`), and the
/// stalls.
///
/// ```
/// let watch = offload::LoopWatch::new(std::time::Duration::from_millis(50));
/// let line = watch.stats().to_string();
/// assert!(line.starts_with("0 lag samples"), "{line}");
/// # drop(watch);
/// ```
impl fmt::Display for LoopStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lags = self.lags();
        write!(
            f,
            "{} lag samples: p50 {}, p99 {}, max {}; {} stalls",
            lags.count(),
            Rounded(lags.p50()),
            Rounded(lags.p99()),
            Rounded(lags.max()),
            self.stalls()
        )
    }
}

/// A duration with two significant digits in the largest unit that keeps
/// it at 1 or more: `850 µs`, `2.1 ms`, `31 ms`, `1.2 s`.
struct Rounded(Duration);

impl fmt::Display for Rounded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos() as f64;
        let (value, unit) = match nanos {
            n if n >= 1e9 => (n / 1e9, "s"),
            n if n >= 1e6 => (n / 1e6, "ms"),
            n if n >= 1e3 => (n / 1e3, "µs"),
            n => (n, "ns"),
        };
        if value < 10.0 && unit != "ns" {
            write!(f, "{value:.1} {unit}")
        } else {
            write!(f, "{value:.0} {unit}")
        }
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
    /// Its OS identity and stack bounds, where stacks are taken.
    os: Option<stack::OsThread>,
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
    /// The loop thread's scheduler figures, kept open.
    schedstat: Option<stack::SchedStat>,
    /// Their last sample, at a wake-up the loop had answered: (time, on a
    /// CPU, waiting for one).
    healthy: Option<(u64, u64, u64)>,
    /// The running reporter, fed in order (see [`Reports`]).
    reports: Option<Reports>,
}

impl Side {
    /// Samples the loop thread's scheduler figures at `now`.
    fn sample(&mut self, thread: &LoopThread, now: u64) -> Option<(u64, u64, u64)> {
        let tid = thread.os.as_ref().map(stack::tid_of)?;
        if self.schedstat.as_ref().map(stack::SchedStat::tid) != Some(tid) {
            self.schedstat = stack::SchedStat::open(tid);
            self.healthy = None;
        }
        let (on_cpu, waiting) = self.schedstat.as_ref()?.read()?;
        Some((now, on_cpu, waiting))
    }

    /// The figures since the last healthy sample.
    fn over_stall(&mut self, thread: &LoopThread, now: u64) -> Option<CpuFigures> {
        let (start, on_cpu, waiting) = self.healthy?;
        let (_, on_cpu_now, waiting_now) = self.sample(thread, now)?;
        Some(CpuFigures {
            span: Duration::from_nanos(now.saturating_sub(start)),
            on_cpu: Duration::from_nanos(on_cpu_now.saturating_sub(on_cpu)),
            waiting_for_cpu: Duration::from_nanos(waiting_now.saturating_sub(waiting)),
        })
    }
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
            os: stack::OsThread::current(),
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
            // Bound first: a guard in the `if let` would be held through the
            // capture, and the loop's poll takes this lock.
            let thread = lock(&self.thread).clone();
            if let Some(thread) = thread {
                let (stack, cost, cpu) = match noticed {
                    Some(stall) => (stall.stack, stall.cost, stall.cpu),
                    None => (
                        Err(Arc::from("the stall ended before it was noticed")),
                        None,
                        side.over_stall(&thread, now),
                    ),
                };
                self.report(
                    &mut side,
                    Stall {
                        thread,
                        duration: Duration::from_nanos(ended),
                        ongoing: false,
                        stack,
                        cost,
                        cpu,
                    },
                );
            }
        }
        let pending = if now >= side.next_tick {
            side.next_tick = (side.next_tick + self.period).max(now + 1);
            let pending = self.on_tick(now);
            if pending.is_none() {
                // Bound first: a guard in the `if let` would be held through the
                // capture, and the loop's poll takes this lock.
                let thread = lock(&self.thread).clone();
                if let Some(thread) = thread {
                    side.healthy = side.sample(&thread, now);
                }
            }
            pending
        } else {
            self.pending_since()
        };
        let mut next = side.next_tick;
        if let (Some(since), None) = (pending, &side.ongoing) {
            if now.saturating_sub(since) >= self.threshold {
                // Bound first: a guard in the `if let` would be held through the
                // capture, and the loop's poll takes this lock.
                let thread = lock(&self.thread).clone();
                if let Some(thread) = thread {
                    self.lags.stalls.fetch_add(1, Ordering::Relaxed);
                    // Relaxed: a duration to report, nothing more.
                    let last_poll = self.last_poll.load(Ordering::Relaxed);
                    let duration = Duration::from_nanos(now.saturating_sub(last_poll));
                    let cpu = side.over_stall(&thread, now);
                    let (stack, cost) = match thread.os.as_ref().map(stack::stack_of) {
                        Some(Ok((frames, cost))) => (Ok(Arc::from(frames)), Some(cost)),
                        Some(Err(why)) => (Err(Arc::from(why)), None),
                        None => (Err(Arc::from(stack::NO_THREAD)), None),
                    };
                    let stall = Stall {
                        thread,
                        duration,
                        ongoing: true,
                        stack,
                        cost,
                        cpu,
                    };
                    side.ongoing = Some(stall.clone());
                    self.report(&mut side, stall);
                }
            } else {
                next = next.min(since + self.threshold);
            }
        }
        next
    }

    /// Hands `stall` to the reporter, off the watcher's path (see
    /// [`Reports`]).
    fn report(&self, side: &mut Side, stall: Stall) {
        let reports = side
            .reports
            .get_or_insert_with(|| Reports::new(lock(&self.reporter).clone()));
        reports.send(stall);
    }
}

/// Runs a reporter, containing a panic.
fn run_reporter(reporter: &Reporter, stall: &Stall) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reporter(stall)));
    drop(outcome); // the panic hook has printed it; the watch goes on
}

/// One watch's reporter, on a thread of its own (started at its first
/// stall, gone with the watch): a reporter that blocks holds up its own
/// watch's later reports, never a capture or another watch's report.
/// Reports arrive in order.
#[cfg(not(loom))]
struct Reports {
    queue: std::sync::mpsc::Sender<Stall>,
}

#[cfg(not(loom))]
impl Reports {
    fn new(reporter: Reporter) -> Reports {
        let (queue, stalls) = std::sync::mpsc::channel::<Stall>();
        let spawned = std::thread::Builder::new()
            .name("offload-stall-report".into())
            .spawn(move || {
                for stall in stalls {
                    run_reporter(&reporter, &stall);
                }
            });
        if let Err(error) = spawned {
            eprintln!("offload: LoopWatch cannot start its reporter thread: {error}");
        }
        Reports { queue }
    }

    fn send(&self, stall: Stall) {
        // An error: the reporter thread could not start; the stall is
        // counted in the stats all the same.
        let _ = self.queue.send(stall);
    }
}

/// Under loom: the reporter runs in place.
#[cfg(loom)]
struct Reports {
    reporter: Reporter,
}

#[cfg(loom)]
impl Reports {
    fn new(reporter: Reporter) -> Reports {
        Reports { reporter }
    }

    fn send(&self, stall: Stall) {
        run_reporter(&self.reporter, &stall);
    }
}

/// The default reporter: asyncio-style lines on stderr, the summary and
/// at most 8 application frames in the first report of a stall, the
/// summary alone when it ends.
fn report_to_stderr(stall: &Stall) {
    if stall.is_ongoing() {
        eprintln!("{stall}");
    } else {
        eprintln!("{}", stall.summary());
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn rounded_durations_keep_two_significant_digits() {
        let shown = |nanos| Rounded(Duration::from_nanos(nanos)).to_string();
        assert_eq!(shown(2_130_000), "2.1 ms");
        assert_eq!(shown(31_400_000), "31 ms");
        assert_eq!(shown(850_000), "850 µs");
        assert_eq!(shown(1_240_000_000), "1.2 s");
        assert_eq!(shown(420), "420 ns");
    }

    #[test]
    fn a_stall_is_starved_when_most_of_it_waited_for_a_cpu() {
        let figures = |on_cpu, waiting| CpuFigures {
            span: Duration::from_millis(100),
            on_cpu: Duration::from_millis(on_cpu),
            waiting_for_cpu: Duration::from_millis(waiting),
        };
        assert_eq!(figures(20, 70).cause(), StallCause::StarvedOfCpu);
        assert_eq!(figures(90, 5).cause(), StallCause::Running);
        assert_eq!(figures(3, 2).cause(), StallCause::Blocked);
    }

    #[cfg(feature = "tracing")]
    #[test]
    fn the_tracing_reporter_emits_one_event_with_the_fields() {
        use std::sync::Mutex as StdMutex;
        use tracing::field::{Field, Visit};

        /// Records the fields of every event.
        #[derive(Default)]
        struct Fields(StdMutex<Vec<Vec<(String, String)>>>);
        struct Visitor(Vec<(String, String)>);
        impl Visit for Visitor {
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                self.0.push((field.name().to_owned(), format!("{value:?}")));
            }
        }
        impl tracing::Subscriber for &'static Fields {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let mut visitor = Visitor(Vec::new());
                event.record(&mut visitor);
                self.0.lock().unwrap().push(visitor.0);
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }

        let fields: &'static Fields = Box::leak(Box::default());
        let current = std::thread::current();
        let stall = Stall {
            thread: Arc::new(LoopThread {
                id: current.id(),
                name: Some("loop".into()),
                os: None,
            }),
            duration: Duration::from_millis(42),
            ongoing: true,
            stack: Err(Arc::from("no stack here")),
            cost: None,
            cpu: Some(CpuFigures {
                span: Duration::from_millis(40),
                on_cpu: Duration::from_millis(38),
                waiting_for_cpu: Duration::ZERO,
            }),
        };
        tracing::subscriber::with_default(fields, || stall.trace());
        let events = fields.0.lock().unwrap();
        assert_eq!(events.len(), 1);
        let names: Vec<&str> = events[0].iter().map(|(name, _)| name.as_str()).collect();
        for field in ["thread", "duration_ms", "cause", "summary"] {
            assert!(names.contains(&field), "{names:?}");
        }
        assert!(
            events[0].contains(&("cause".into(), "\"running\"".into())),
            "{events:?}"
        );
    }
}
