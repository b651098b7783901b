//! The detector's state, which the scheduler owns: a [`Runner`] per thread
//! that runs jobs (each worker's place, each helper), the counts of blocked
//! runners and helpers ([`Compensation`], with its flag protocol), and the
//! pool's [`Detector`] that holds them. A worker touches its runner after
//! each job; the detector thread and the helpers (`super::detect`) read
//! and flag them. What the fields mean and why the flag protocol is sound:
//! `blocking/detect.rs`'s module docs, "Who counts what" and "The flag
//! protocol". Imports only the ground.

// Under loom there is no detector thread: some readers go unused.
#![cfg_attr(loom, allow(dead_code))]

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::{
    fence, mutant, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, StatCounter, StdArc,
};

/// A thread that runs jobs, as the detector sees it (module docs).
pub(crate) struct Runner {
    /// Jobs started, bumped by a helper's thread only (a place's progress
    /// is its Task count in the metrics).
    progress: StatCounter,
    /// When a helper started its current job, in nanoseconds since the
    /// detector's epoch, plus one (0: unknown). Helpers run only while
    /// something is blocked, so they can afford the clock: the detector
    /// then reads them exactly when their job crosses the threshold.
    started_at: StatCounter,
    /// The OS id of the thread that runs it (0: unknown).
    tid: StatCounter,
    /// A place's home thread (its worker thread, which lives as long as
    /// the pool): the one thread whose `/proc` file the detector keeps
    /// open (0: none, a helper's runner).
    home: StatCounter,
    /// While a place's holder is inside a marked call
    /// ([`crate::blocking`](mod@crate::blocking), detection on): when the
    /// call started, in nanoseconds since the detector's epoch, plus one
    /// (0: no marked call). The detector reads the thread from the call's
    /// threshold on, and takes the call's word for it where `/proc` cannot
    /// be read (see "Marked calls" in `super::detect`).
    marked: AtomicU64,
    /// The detector's last reading of the marked call the runner is in:
    /// 0 none yet, [`RUNNING`] or [`BLOCKED`] (a hint for the call's end:
    /// whether the place's next call should lend the place at once).
    verdict: StatCounter,
    /// The detector's verdict: blocked inside a job (the flag protocol).
    blocked: AtomicBool,
}

/// A time since the detector's epoch as a stamp: nanoseconds plus one, so
/// that 0 can mean "none" ([`from_stamp`]).
fn to_stamp(since_epoch: Duration) -> u64 {
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX - 1) + 1
}

/// The instant a [`to_stamp`] stamp stands for (`None` for 0).
fn from_stamp(epoch: Instant, stamp: u64) -> Option<Instant> {
    stamp
        .checked_sub(1)
        .map(|nanos| epoch + Duration::from_nanos(nanos))
}

/// [`Runner::verdict`]: the marked call was last read on a CPU.
const RUNNING: u64 = 1;
/// [`Runner::verdict`]: the marked call was last read off the CPU.
const BLOCKED: u64 = 2;

impl Runner {
    pub(crate) fn new() -> Self {
        Self {
            progress: StatCounter::new(0),
            started_at: StatCounter::new(0),
            tid: StatCounter::new(0),
            home: StatCounter::new(0),
            marked: AtomicU64::new(0),
            verdict: StatCounter::new(0),
            blocked: AtomicBool::new(false),
        }
    }

    /// The place's holder enters a marked call, `since_epoch` after the
    /// detector's epoch.
    #[inline]
    pub(crate) fn mark(&self, since_epoch: Duration) {
        // Relaxed: a hint, read by the same thread at the call's end.
        self.verdict.store(0, Ordering::Relaxed);
        // Relaxed: a hint for when to look; the flag's re-check in
        // `Compensation::flag_marked` orders what matters.
        self.marked.store(to_stamp(since_epoch), Ordering::Relaxed);
    }

    /// The detector read the thread of the marked call `token`: off the
    /// CPU (`blocked`), or on it.
    pub(crate) fn set_verdict(&self, token: u64, blocked: bool) {
        // Relaxed: a hint; a reading that lands in the next call (the
        // token changed between the check and the store) costs one call
        // lent, or marked, that the other way would have suited better.
        if self.marked.load(Ordering::Relaxed) == token {
            let verdict = if blocked { BLOCKED } else { RUNNING };
            self.verdict.store(verdict, Ordering::Relaxed);
        }
    }

    /// At the end of a marked call, on its thread: the detector's last
    /// reading of it (`Some(true)`: off the CPU), if it read it at all (it
    /// reads only while jobs wait).
    pub(crate) fn verdict(&self) -> Option<bool> {
        // Relaxed: a hint (see `set_verdict`).
        match self.verdict.load(Ordering::Relaxed) {
            RUNNING => Some(false),
            BLOCKED => Some(true),
            _ => None,
        }
    }

    /// The marked call the runner is in, as a token for
    /// [`Compensation::flag_marked`] (0: none).
    pub(crate) fn marked_token(&self) -> u64 {
        // Relaxed: a hint; `flag_marked` re-checks it after a fence.
        self.marked.load(Ordering::Relaxed)
    }

    /// When the marked call the runner is in started, if it is in one.
    pub(crate) fn marked_at(&self, epoch: Instant) -> Option<Instant> {
        from_stamp(epoch, self.marked_token())
    }

    /// The marked call returned (or unwound): whoever set the flag for it,
    /// it is cleared, by this thread or by the detector's re-check (the
    /// store-buffering pair of [`Compensation::flag_marked`]).
    #[inline]
    pub(crate) fn marked_call_ended(&self, compensation: &Compensation) {
        // Relaxed: ordered before the look at the flag by the fence below.
        self.marked.store(0, Ordering::Relaxed);
        // SeqCst fence: pairs with the one in `flag_marked`: either this
        // thread sees the detector's flag, or the detector sees the call
        // ended and takes its flag back.
        if !mutant!("marked_end_no_fence") {
            fence(Ordering::SeqCst);
        }
        self.job_ended(compensation);
    }

    /// The calling thread is this place's home thread, and runs its jobs
    /// from now on.
    pub(crate) fn bind_home_thread(&self) {
        let tid = crate::observe::stack::current_tid().unwrap_or(0) as u64;
        // Relaxed: as `bind_current_thread`; a stale read costs one look
        // through a file opened for it alone.
        self.home.store(tid, Ordering::Relaxed);
        self.tid.store(tid, Ordering::Relaxed);
    }

    /// The calling thread runs this runner's jobs from now on.
    pub(crate) fn bind_current_thread(&self) {
        let tid = crate::observe::stack::current_tid().unwrap_or(0) as u64;
        // Relaxed: a hint for the detector, which reads it to look at the
        // thread; a stale one costs one wrong look.
        self.tid.store(tid, Ordering::Relaxed);
    }

    /// The runner's thread starts a job.
    #[inline]
    pub(crate) fn job_started(&self, since_epoch: Duration) {
        // Relaxed: a hint for when to look (a stale one moves a look, the
        // state read decides).
        self.started_at
            .store(to_stamp(since_epoch), Ordering::Relaxed);
        // Relaxed, load and store: one writer (the runner's thread), one
        // reader that only compares.
        let jobs = self.progress.load(Ordering::Relaxed);
        self.progress.store(jobs.wrapping_add(1), Ordering::Relaxed);
    }

    /// When the current job started, if known (helpers).
    pub(crate) fn started_at(&self, epoch: Instant) -> Option<Instant> {
        // Relaxed: see `job_started`.
        from_stamp(epoch, self.started_at.load(Ordering::Relaxed))
    }

    /// The runner's thread ended a job, or (a place's holder) falls
    /// asleep: it is not blocked in a job any more.
    #[inline]
    pub(crate) fn job_ended(&self, compensation: &Compensation) {
        // Relaxed: a fast check of our own flag; `unflag` decides.
        if self.blocked.load(Ordering::Relaxed) {
            compensation.unflag(self);
        }
    }

    pub(crate) fn progress(&self) -> u64 {
        // Relaxed: compared with the last value seen, nothing more.
        self.progress.load(Ordering::Relaxed)
    }

    pub(crate) fn tid(&self) -> u64 {
        // Relaxed: see `bind_current_thread`.
        self.tid.load(Ordering::Relaxed)
    }

    /// Whether `tid` is this runner's home thread (see `home`).
    pub(crate) fn is_home(&self, tid: u64) -> bool {
        // Relaxed: see `bind_home_thread`.
        tid != 0 && self.home.load(Ordering::Relaxed) == tid
    }

    pub(crate) fn is_flagged(&self) -> bool {
        // Relaxed: a hint; flag and unflag decide.
        self.blocked.load(Ordering::Relaxed)
    }
}

/// The counts of blocked runners and of helpers (module docs).
pub(crate) struct Compensation {
    blocked: AtomicUsize,
    helpers: AtomicUsize,
}

impl Compensation {
    pub(crate) fn new() -> Self {
        Self {
            blocked: AtomicUsize::new(0),
            helpers: AtomicUsize::new(0),
        }
    }

    /// The detector flags `runner` as blocked (it is not flagged: only the
    /// detector sets flags).
    pub(crate) fn flag(&self, runner: &Runner) {
        // Relaxed: the Release store below orders it before any decrement.
        self.blocked.fetch_add(1, Ordering::Relaxed);
        // Release: the increment happens before the decrement of whoever
        // swaps the flag back (Acquire), so the count never wraps.
        runner.blocked.store(true, Ordering::Release);
    }

    /// The detector flags `runner`, which it found blocked in the marked
    /// call `token` ([`Runner::marked_token`]); takes the flag back if the
    /// call has ended meanwhile. Returns whether the flag stays.
    pub(crate) fn flag_marked(&self, runner: &Runner, token: u64) -> bool {
        self.flag(runner);
        // SeqCst fence: pairs with the one in `Runner::marked_call_ended`.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence.
        if runner.marked.load(Ordering::Relaxed) == token {
            return true;
        }
        self.unflag(runner);
        false
    }

    /// Clears `runner`'s flag if it is set; exactly one of racing callers
    /// takes its count back. Returns whether this call did.
    pub(crate) fn unflag(&self, runner: &Runner) -> bool {
        let was = if mutant!("unflag_load_then_store") {
            // Broken variant: two threads can both see `true`.
            let was = runner.blocked.load(Ordering::Acquire);
            runner.blocked.store(false, Ordering::Relaxed);
            was
        } else {
            // Acquire: see `flag`.
            runner.blocked.swap(false, Ordering::Acquire)
        };
        if was {
            // Relaxed: a count; nothing is published through it.
            self.blocked.fetch_sub(1, Ordering::Relaxed);
        }
        was
    }

    /// Runners flagged now.
    pub(crate) fn blocked(&self) -> usize {
        // Relaxed: a count read for a decision that the next tick revisits.
        self.blocked.load(Ordering::Relaxed)
    }

    /// Helpers alive now.
    pub(crate) fn helpers(&self) -> usize {
        // Relaxed: as above.
        self.helpers.load(Ordering::Relaxed)
    }

    /// The detector counts one more helper, before it starts one; returns
    /// false (counting nothing) if there are as many as blocked runners.
    pub(crate) fn add_helper(&self) -> bool {
        // Relaxed: a count (see `blocked`).
        self.helpers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |helpers| {
                (helpers < self.blocked()).then_some(helpers + 1)
            })
            .is_ok()
    }

    /// A helper that could not be started, or that found no job, is
    /// uncounted.
    pub(crate) fn remove_helper(&self) {
        // Relaxed: a count.
        self.helpers.fetch_sub(1, Ordering::Relaxed);
    }

    /// A helper between two jobs: retires (uncounted, returns false) if
    /// there are more helpers than blocked runners.
    pub(crate) fn helper_stays(&self) -> bool {
        // Relaxed: a count.
        self.helpers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |helpers| {
                (helpers > self.blocked()).then(|| helpers - 1)
            })
            .is_err()
    }
}

/// What a pool keeps for detection: the runners, the counts.
pub(crate) struct Detector {
    /// Whether this pool has a detector thread (`Builder::detect_blocking`).
    pub(crate) enabled: bool,
    pub(crate) places: Box<[CachePadded<Runner>]>,
    /// The helpers' runners, while they help. The detector flags a helper
    /// only under this lock, so a helper that left the list is never
    /// flagged again.
    pub(crate) helpers: Mutex<Vec<StdArc<Runner>>>,
    compensation: Compensation,
    /// The origin of the helpers' job start times and of marked calls.
    pub(crate) epoch: Instant,
    /// When the detector looks next, in nanoseconds since `epoch`
    /// (`u64::MAX` while it sleeps until poked): a marked call that is due
    /// sooner wakes it ([`Detector::looks_later_than`]).
    next_look: StatCounter,
}

impl Detector {
    pub(crate) fn new(workers: usize, enabled: bool) -> Self {
        Self {
            enabled,
            places: (0..workers)
                .map(|_| CachePadded::new(Runner::new()))
                .collect(),
            helpers: Mutex::new(Vec::new()),
            compensation: Compensation::new(),
            epoch: Instant::now(),
            next_look: StatCounter::new(u64::MAX),
        }
    }

    /// The detector sleeps until `at` (`None`: until poked).
    pub(crate) fn set_next_look(&self, at: Option<Instant>) {
        let nanos = at.map_or(u64::MAX, |at| {
            u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
        });
        // Relaxed: a hint; a stale one costs one early or late look.
        self.next_look.store(nanos, Ordering::Relaxed);
    }

    /// Whether the detector's next look comes after `due` (since `epoch`):
    /// a marked call due then wakes it.
    pub(crate) fn looks_later_than(&self, due: Duration) -> bool {
        let due = u64::try_from(due.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: see `set_next_look`.
        self.next_look.load(Ordering::Relaxed) > due
    }

    /// Whether this pool has a detector thread.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The runner of worker place `index`.
    #[inline]
    pub(crate) fn place(&self, index: usize) -> &Runner {
        &self.places[index]
    }

    pub(crate) fn compensation(&self) -> &Compensation {
        &self.compensation
    }
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("enabled", &self.enabled)
            .field("blocked", &self.compensation.blocked())
            .field("helpers", &self.compensation.helpers())
            .finish_non_exhaustive()
    }
}
