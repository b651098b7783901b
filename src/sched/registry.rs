//! [`Registry`]: the state a pool's handles and workers share — the queues,
//! the sleep state, the lifecycle flags — and the submission and
//! termination protocols.
//!
//! # Lifecycle
//!
//! `Running` → `Terminating` (set by `shutdown`, `shutdown_now` or the drop
//! of the last [`Pool`](crate::Pool) handle; `shutdown_now` also sets
//! `CANCEL_QUEUED`) → every worker has exited. Every Task's job holds a
//! handle until it has run or been dropped, so the last handle goes once
//! the user's handles are gone and no Task's job is left: until then, the
//! jobs that running jobs spawn are accepted and run.
//!
//! While terminating, submissions are refused (their Tasks resolve as
//! cancelled) and a worker exits once it finds no work. The last worker to
//! exit drains the injector one more time.
//!
//! # No job is stranded
//!
//! A submitter checks the flag, pushes, and may race with the last worker's
//! exit. The two sides follow the store-buffering pattern again:
//!
//! - submitter: push to the injector; `fence(SeqCst)`; load `live_workers`;
//!   if it is zero, drain the injector itself, cancelling what it finds;
//! - last worker: decrement `live_workers` to zero; `fence(SeqCst)`; drain
//!   the injector.
//!
//! Both drains wait for their turn at the injector rather than skip it
//! while another thread consumes (see [`crate::sched::injector`]).
//!
//! One of the two drains sees the job, so every accepted job is run or
//! cancelled and every Task resolves. (A spawn that races with shutdown may
//! therefore still run; one that starts after shutdown returned is cancelled.)
//!
//! # `shutdown_now` does not wait for a worker
//!
//! After setting `CANCEL_QUEUED`, the thread that calls `shutdown_now`
//! sweeps the queues itself: it pops every job from both injectors and
//! steals every job from each worker's deque, resolves each Task's job as
//! cancelled on the spot (the cell's own protocol decides, as for any
//! `Mode::Cancel`), and pushes the other jobs (join halves, scope jobs,
//! install bodies, which their callers wait for) back onto the injectors.
//! So every Task queued before the call resolves before it returns, even
//! while every worker is stuck in a job.
//!
//! A batch that a worker is moving from the injector or another deque into
//! its own at that moment is in no queue for an instant. Store-buffering
//! once more: the taker lands the batch, ends its spin with a
//! `fence(SeqCst)` (only a spinner takes a batch: see [`crate::sched::worker_loop`]),
//! and only then reads the execution mode for the batch's first job; the
//! sweep sets `CANCEL_QUEUED`, fences, then looks at the deques. So either
//! the sweep finds the batch in the taker's deque, or the taker executes
//! its first job in cancel mode and cancels the rest as it reaches them:
//! it does not get stuck in a job with Tasks of the batch behind it. (The
//! loom stand-in for the deques steals under a lock, which would order the
//! two sides by itself, so no model checks this pair.) The blocking queue
//! is emptied by `Spares::close`, and the reserve line by `Slots::close`.

use std::fmt;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::blocking::baton::Baton;
use crate::blocking::runner::Detector;
use crate::blocking::spares::{SpareConfig, Spares};
use crate::flow::cancel;
use crate::flow::slots::Slots;
use crate::observe::metrics::Metrics;
use crate::observe::metrics::{PoolFigures, PoolStats, Tally};
use crate::sched::deque::{Steal, Stealer};
use crate::sched::injector::Injector;
use crate::sched::lanes::Lanes;
use crate::sched::sleep::{Sleep, Spinning};
use crate::sched::worker::WorkerThread;
use crate::sync::{
    fence, lock, mutant, park_timeout, thread, Arc, AtomicBool, AtomicUsize, Mutex, Ordering,
    StdArc,
};
use crate::task::completions::Deferred;
use crate::task::job::{JobRef, Mode};
use crate::unwind::wake_quietly;
use crossbeam_utils::CachePadded;

/// Refuse submissions; workers exit when they run out of work.
const TERMINATING: usize = 1 << 0;
/// Resolve queued cancellable jobs as cancelled instead of running them,
/// and ask running ones to stop: `cancel::STOP`, which `is_cancelled` reads.
const CANCEL_QUEUED: usize = cancel::STOP;

#[derive(Debug, Default)]
struct Exit {
    done: bool,
    /// Woken once `done` is set: the parkers of threads in `shutdown`
    /// (as wakers) and the tasks awaiting a [`Shutdown`](crate::Shutdown).
    waiters: Vec<Waker>,
}

/// Wakes a thread blocked in [`park_timeout`] (`shutdown_timeout`).
struct ThreadWaker(thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: StdArc<Self>) {
        self.0.unpark();
    }
}

/// A hook run on each worker thread with its index.
pub(crate) type Hook = Box<dyn Fn(usize) + Send + Sync>;

pub(crate) struct Registry {
    injector: Injector,
    /// Jobs that need a worker's place to run (an `install` body, a `join`
    /// or `scope` called from outside the pool: see
    /// [`crate::fork_join::parts::in_worker`]): the workers take them as they take
    /// the injector's, but a helper, which has no place, never does (see
    /// [`crate::blocking::detect`]).
    place_jobs: Injector,
    stealers: Box<[Stealer<JobRef>]>,
    /// The `High` and `Low` lanes: `injector` and `stealers` are the
    /// `Normal` one's (see [`crate::sched::lanes`]).
    lanes: Lanes,
    pub(crate) sleep: Sleep,
    flags: AtomicUsize,
    live_workers: AtomicUsize,
    /// Set once every worker has exited, with the parkers of the threads
    /// waiting for that.
    exit: Mutex<Exit>,
    /// Per worker: an idle worker asks it to publish a join half (see
    /// [`crate::sched::worker`]). Padded: each is read often by its worker (every
    /// 64th inline join).
    share_requested: Box<[CachePadded<AtomicBool>]>,
    /// Live [`Pool`](crate::Pool) handles, counting one held by each
    /// Task's job until it has run or been dropped (see
    /// `crate::pool::keeping_alive`); the last one to go terminates.
    handles: AtomicUsize,
    /// The queue slots of a bounded pool (`Builder::max_queued`).
    slots: Option<Arc<Slots>>,
    /// Per worker: who holds its place (see [`crate::blocking`](mod@crate::blocking)).
    batons: Box<[Baton]>,
    /// The spare threads: blocking jobs, stand-ins and helpers.
    spares: Spares,
    /// Blocking detection: the runners, the counts of blocked ones and of
    /// helpers (see [`crate::blocking::detect`]).
    detector: Detector,
    /// The counters behind `Pool::metrics`.
    stats: PoolStats,
    /// Per worker place: the completion wake-ups it holds back while the
    /// pool is backlogged (see [`crate::task::completions`]).
    deferred: Box<[CachePadded<Deferred>]>,
    pub(crate) on_start: Option<Hook>,
    pub(crate) on_stop: Option<Hook>,
}

impl Registry {
    // One argument per setting of the `Builder` that the registry keeps.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        stealers: Box<[Stealer<JobRef>]>,
        lane_stealers: [Box<[Stealer<JobRef>]>; 2],
        on_start: Option<Hook>,
        on_stop: Option<Hook>,
        max_queued: Option<usize>,
        spares: SpareConfig,
        detect_blocking: bool,
        sample_every: u64,
    ) -> Self {
        let num_threads = stealers.len();
        Self {
            injector: Injector::new(),
            place_jobs: Injector::new(),
            sleep: Sleep::new(num_threads),
            stealers,
            lanes: Lanes::new(lane_stealers),
            flags: AtomicUsize::new(0),
            live_workers: AtomicUsize::new(num_threads),
            exit: Mutex::new(Exit::default()),
            share_requested: (0..num_threads)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
            handles: AtomicUsize::new(0),
            slots: max_queued.map(|max| Arc::new(Slots::new(max))),
            batons: (0..num_threads).map(|_| Baton::new()).collect(),
            spares: Spares::new(spares, num_threads),
            detector: Detector::new(num_threads, detect_blocking),
            stats: PoolStats::sampling(num_threads, sample_every),
            deferred: (0..num_threads)
                .map(|_| CachePadded::new(Deferred::new()))
                .collect(),
            on_start,
            on_stop,
        }
    }

    pub(crate) fn num_threads(&self) -> usize {
        self.stealers.len()
    }

    pub(crate) fn stealers(&self) -> &[Stealer<JobRef>] {
        &self.stealers
    }

    /// The `High` and `Low` lanes (see [`crate::sched::lanes`]).
    #[inline]
    pub(crate) fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    /// Who holds worker `index`'s place.
    #[inline]
    pub(crate) fn baton(&self, index: usize) -> &Baton {
        &self.batons[index]
    }

    /// The wake-ups worker place `index` holds back (see
    /// [`crate::task::completions`]).
    #[inline]
    pub(crate) fn deferred(&self, index: usize) -> &Deferred {
        &self.deferred[index]
    }

    /// Whether a place holds a wake-up back (the detector's look, after
    /// its dormancy fence).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn any_deferred(&self) -> bool {
        self.deferred.iter().any(|deferred| deferred.is_pending())
    }

    /// Wakes every wake-up held back by any place (the detector's tick).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn wake_deferred(&self) {
        for deferred in self.deferred.iter() {
            if deferred.is_pending() {
                deferred.wake_all();
            }
        }
    }

    /// The spare threads.
    pub(crate) fn spares(&self) -> &Spares {
        &self.spares
    }

    /// The counters behind `Pool::metrics`.
    #[inline]
    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// The calling thread's counters in this pool: its place's if it holds
    /// a place of this pool, else its own (see [`crate::observe::metrics`]).
    #[inline]
    pub(crate) fn tally(&self) -> Tally<'_> {
        WorkerThread::with_current(|worker| match worker {
            Some(worker) if worker.registry().is(self) => self.stats.place(worker.index()),
            _ => self.stats.this_thread(),
        })
    }

    /// A snapshot of the counters and of the blocking and flow-control
    /// figures.
    pub(crate) fn metrics(&self) -> Metrics {
        self.stats.snapshot(PoolFigures {
            blocked: self.batons.iter().map(Baton::away).sum(),
            detected_blocked: self.detector.compensation().blocked(),
            spare_threads: self.spares.threads(),
            reserve_waiters: self.slots.as_ref().map_or(0, |slots| slots.waiters()),
        })
    }

    /// Blocking detection's state (see [`crate::blocking::detect`]).
    #[inline]
    pub(crate) fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Live threads of the pool: workers, spares, the blocking detector (a
    /// snapshot).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn live_threads(&self) -> usize {
        // Relaxed: a snapshot, which the detector polls; nothing is read
        // through it.
        self.live_workers.load(Ordering::Relaxed)
    }

    /// Counts one more live thread (a spare about to start, the blocking
    /// detector): `shutdown` waits for it. Only while the count cannot be
    /// zero: before termination, or from the detector, itself counted (see
    /// [`crate::blocking::spares`]).
    pub(crate) fn add_live_thread(&self) {
        // Relaxed: the count is at least one (a worker that has not exited),
        // and its decrements are ordered by `workers_exited`'s fence.
        self.live_workers.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `self` is the registry at `other`.
    pub(crate) fn is(&self, other: &Registry) -> bool {
        std::ptr::eq(self, other)
    }

    // ---- lifecycle ------------------------------------------------------

    pub(crate) fn is_terminating(&self) -> bool {
        // Acquire: pairs with the Release in `terminate`, so a worker that
        // sees the flag also sees every job pushed before `shutdown` was
        // called on the same thread.
        self.flags.load(Ordering::Acquire) & TERMINATING != 0
    }

    /// The word whose `cancel::STOP` bit says that `shutdown_now` asked the
    /// running jobs to stop (see [`crate::is_cancelled`]): a worker's
    /// cancellation scope holds it.
    #[inline]
    pub(crate) fn cancel_flags(&self) -> &AtomicUsize {
        &self.flags
    }

    /// The queue slots, if the pool is bounded.
    #[inline]
    pub(crate) fn slots(&self) -> Option<&Arc<Slots>> {
        self.slots.as_ref()
    }

    /// The mode in which a worker executes the jobs it pops now.
    pub(crate) fn execution_mode(&self) -> Mode {
        // Relaxed: cancelling a job a little early or late is equally valid;
        // the cell's own state decides what happens to it.
        if cancel::stop_requested(&self.flags) {
            Mode::Cancel
        } else {
            Mode::Run
        }
    }

    /// Starts termination: refuse submissions; workers exit once idle.
    pub(crate) fn terminate(&self, cancel_queued: bool) {
        // The spares first: no spare thread may start once a worker can
        // have exited (see `crate::blocking::spares`).
        self.spares.close(cancel_queued, &self.tally());
        let bits = if cancel_queued {
            TERMINATING | CANCEL_QUEUED
        } else {
            TERMINATING
        };
        // Release: see `is_terminating`.
        self.flags.fetch_or(bits, Ordering::Release);
        // Waiters for a queue slot resolve: no slot will be worth having.
        if let Some(slots) = &self.slots {
            slots.close();
        }
        if cancel_queued {
            self.cancel_queued_tasks();
        }
        // Wake every sleeper (its fence pairs with theirs): it will see the
        // flag and exit, or run what is left first.
        self.sleep.notify_all();
        // And the blocking detector, which exits.
        self.sleep.dormancy().wake();
    }

    /// Blocks until every worker has exited. On a worker of another pool,
    /// that worker runs its own pool's jobs meanwhile (one of them may be
    /// what this pool's last running job waits for).
    pub(crate) fn wait_until_exited(&self) {
        WorkerThread::with_current(|worker| {
            let parker = match worker {
                Some(worker) => StdArc::clone(worker.parker()),
                None => crate::sched::worker::thread_parker(),
            };
            if self.exited_or_register(&Waker::from(StdArc::clone(&parker))) {
                return;
            }
            let exited = || lock(&self.exit).done;
            match worker {
                Some(worker) => worker.wait_until(exited),
                None => {
                    while !exited() {
                        parker.park();
                    }
                }
            }
        });
    }

    /// Blocks until every worker has exited or `deadline` passed; returns
    /// whether they all exited. Parks the calling thread, also on a worker
    /// of another pool, which runs none of its jobs meanwhile (its join
    /// halves are in its deque, where other workers can take them).
    pub(crate) fn wait_until_exited_or(&self, deadline: Instant) -> bool {
        let waker = Waker::from(StdArc::new(ThreadWaker(thread::current())));
        if self.exited_or_register(&waker) {
            return true;
        }
        loop {
            if lock(&self.exit).done {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                // Unregister, so that repeated timed waits do not pile up
                // wakers until the pool exits.
                lock(&self.exit).waiters.retain(|w| !w.will_wake(&waker));
                return false;
            }
            park_timeout(deadline - now);
        }
    }

    /// Ready once every worker has exited; else registers `cx`'s waker.
    pub(crate) fn poll_exited(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.exited_or_register(cx.waker()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Whether every worker has exited; if not, `waker` is woken when they
    /// have (registered once, however often this is called with it).
    fn exited_or_register(&self, waker: &Waker) -> bool {
        let mut exit = lock(&self.exit);
        if exit.done {
            return true;
        }
        if !exit.waiters.iter().any(|w| w.will_wake(waker)) {
            exit.waiters.push(waker.clone());
        }
        false
    }

    /// Records that `count` workers are gone (exited, or never started). The
    /// last one drains the injector (see module docs) and signals
    /// [`wait_until_exited`](Self::wait_until_exited).
    pub(crate) fn workers_exited(&self, count: usize, last_worker: Option<&WorkerThread>) {
        // Relaxed: ordered for submitters by the fence below.
        if self.live_workers.fetch_sub(count, Ordering::Relaxed) != count {
            return;
        }
        // SeqCst fence: pairs with the submitters' fence (module docs).
        fence(Ordering::SeqCst);
        match last_worker {
            _ if mutant!("exit_no_drain") => {}
            Some(worker) => worker.run_until_idle(),
            None => self.cancel_injected(),
        }
        let waiters = {
            let mut exit = lock(&self.exit);
            exit.done = true;
            std::mem::take(&mut exit.waiters)
        };
        // A waker from an executor is user code: neither its `wake` nor its
        // drop may unwind out of a worker.
        for waiter in waiters {
            wake_quietly(waiter);
        }
    }

    // ---- submission -----------------------------------------------------

    /// Queues `job` (a Task's cell) as [`push`](Self::push) does; after
    /// termination the job is cancelled instead.
    pub(crate) fn submit(&self, job: JobRef) {
        if self.is_terminating() {
            job.execute(Mode::Cancel, &self.tally());
            return;
        }
        self.push(job);
    }

    /// The one routing of a new job: on the current worker's deque if it is
    /// one of ours, else on the injector; either way a sleeper is woken for
    /// it. Also during termination: the workers run what is queued before
    /// they exit, and if every one has exited, `inject` executes it in
    /// cancel mode, which resolves a Task's job as cancelled and runs any
    /// other job in place. A scope's job, which must run whatever happens
    /// (its scope waits for it), comes here directly, skipping `submit`'s
    /// termination check.
    pub(crate) fn push(&self, job: JobRef) {
        WorkerThread::with_current(|current| match current {
            Some(worker) if worker.registry().is(self) => worker.push(job),
            _ => self.inject(job),
        });
    }

    /// Pushes `job` on its lane's injector and wakes a worker for it; if
    /// every worker has already exited, cancels what is left there.
    pub(crate) fn inject(&self, job: JobRef) {
        match job.priority().lane() {
            None => self.injector.push(job),
            Some(lane) if mutant!("lane_counted_after_wake") => {
                // Broken variant: the job is counted only after the fence
                // and the wake-up, so a spinner going to sleep can miss it
                // (see `crate::sched::lanes`).
                self.lanes.injector(lane).push(job);
                self.after_inject();
                self.lanes.pushing();
                return;
            }
            Some(lane) => self.lanes.inject(lane, job),
        }
        self.after_inject();
    }

    /// [`inject`](Self::inject) for a job that only a worker can run (see
    /// `place_jobs`).
    pub(crate) fn inject_for_worker(&self, job: JobRef) {
        self.place_jobs.push(job);
        self.after_inject();
    }

    /// What follows a push on either injector.
    fn after_inject(&self) {
        // SeqCst fence: orders the push before the loads below, for both the
        // sleep protocol and the last worker's drain (module docs).
        fence(Ordering::SeqCst);
        // Relaxed: the fence above provides the ordering.
        if self.live_workers.load(Ordering::Relaxed) == 0 && !mutant!("exit_no_drain") {
            self.cancel_injected();
        } else {
            self.sleep.notify_one_after_fence();
        }
    }

    /// Pops the oldest injected job and moves a batch behind it to `dest`;
    /// `None` also when another thread is consuming the injector (the
    /// caller looks elsewhere, and `has_injected` keeps it from sleeping).
    /// Only a spinner may: the batch is invisible to other workers until it
    /// lands in `dest` (see [`crate::sched::worker_loop`]).
    pub(crate) fn steal_injected(
        &self,
        dest: &crate::sched::deque::Worker<JobRef>,
        limit: usize,
        _spinning: &Spinning<'_>,
    ) -> Option<JobRef> {
        // A job for a worker's place, one at a time: they are rare.
        self.injector
            .try_pop_batch(dest, limit)
            .or_else(|| self.place_jobs.try_pop_batch(dest, 1))
    }

    /// Pops the oldest injected job (either injector), waiting for its turn
    /// if another thread is consuming: for the drains that must not miss a
    /// job (module docs).
    /// Both drains follow a `fence(SeqCst)`, after which the lanes' count
    /// is exact (see [`crate::sched::lanes`]): the lanes are looked at only
    /// if it says they hold jobs.
    pub(crate) fn drain_injected(&self) -> Option<JobRef> {
        if !self.lanes.busy() {
            return self
                .injector
                .pop_waiting()
                .or_else(|| self.place_jobs.pop_waiting());
        }
        self.lanes
            .pop_waiting(0)
            .or_else(|| self.injector.pop_waiting())
            .or_else(|| self.place_jobs.pop_waiting())
            .or_else(|| self.lanes.pop_waiting(1))
    }

    /// Whether either injector holds a job (exact: see [`crate::sched::injector`]).
    pub(crate) fn has_injected(&self) -> bool {
        !self.injector.is_empty() || !self.place_jobs.is_empty()
    }

    /// Whether a job that a helper could run waits in the injector or in a
    /// worker's deque (the blocking detector's question: see
    /// [`crate::blocking::detect`]).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn has_waiting_jobs(&self) -> bool {
        !self.injector.is_empty()
            || self.stealers.iter().any(|stealer| !stealer.is_empty())
            || self.lanes.busy()
    }

    /// Takes one job, the injector's oldest or else one from a worker's
    /// deque (looking first at worker `victim % threads`), for a helper
    /// that runs it without a place: one job, never a batch, so nothing
    /// is hidden from the sleep protocol's re-checks (see
    /// [`crate::sched::sleep`]).
    /// While other lanes hold jobs, it takes the most urgent one it finds
    /// (see [`crate::sched::lanes`]; a helper is a stopgap, so it keeps no
    /// count of its own for the starvation bound).
    pub(crate) fn take_one(&self, victim: usize) -> Option<JobRef> {
        if !self.lanes.busy() {
            return self.take_one_normal(victim);
        }
        self.lanes
            .take_one(0, victim)
            .or_else(|| self.take_one_normal(victim))
            .or_else(|| self.lanes.take_one(1, victim))
    }

    /// [`take_one`](Self::take_one) in the `Normal` lane.
    fn take_one_normal(&self, victim: usize) -> Option<JobRef> {
        if let Some(job) = self.injector.pop_waiting() {
            return Some(job);
        }
        let n = self.stealers.len();
        for offset in 0..n {
            let stealer = &self.stealers[(victim + offset) % n];
            loop {
                match stealer.steal() {
                    Steal::Success(job) => return Some(job),
                    Steal::Empty => break,
                    Steal::Retry => crate::sync::spin_loop(),
                }
            }
        }
        None
    }

    /// `shutdown_now`'s sweep, on the calling thread: resolves every Task
    /// queued on the injectors and the workers' deques as cancelled now,
    /// even while every worker is stuck in a job (module docs). The other
    /// jobs found there are parts of computations already running (join
    /// halves, scope jobs, install bodies), which must run: they go back to
    /// the injector they came from (a deque's to the shared one, which
    /// helpers may take from as they may from a deque), for the workers.
    fn cancel_queued_tasks(&self) {
        // SeqCst fence: pairs with the fence that ends a taker's spin, after
        // its batch landed and before it reads the execution mode (module
        // docs): either this sweep sees the batch in the taker's deque, or
        // the taker sees `CANCEL_QUEUED` and cancels the batch itself.
        fence(Ordering::SeqCst);
        let tally = self.tally();
        let mut parts = Vec::new();
        let mut place_parts = Vec::new();
        let mut lane_parts = Vec::new();
        let sort = |job: JobRef, parts: &mut Vec<JobRef>| {
            if job.is_task() {
                job.execute(Mode::Cancel, &tally);
            } else {
                parts.push(job);
            }
        };
        while let Some(job) = self.injector.pop_waiting() {
            sort(job, &mut parts);
        }
        while let Some(job) = self.place_jobs.pop_waiting() {
            sort(job, &mut place_parts);
        }
        for stealer in self.stealers.iter() {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => sort(job, &mut parts),
                    Steal::Empty => break,
                    Steal::Retry => crate::sync::spin_loop(),
                }
            }
        }
        // After the fence above the lanes' count is exact (see
        // `crate::sched::lanes`): an all-`Normal` pool skips the lanes.
        for lane in 0..2 {
            while self.lanes.busy() {
                match self.lanes.take_one(lane, 0) {
                    Some(job) => sort(job, &mut lane_parts),
                    None => break,
                }
            }
        }
        for job in lane_parts {
            let lane = job.priority().lane().expect("taken from a lane");
            self.lanes.inject_again(lane, job);
            self.after_inject();
        }
        for job in parts {
            self.injector.push_again(job);
            self.after_inject();
        }
        for job in place_parts {
            self.place_jobs.push_again(job);
            self.after_inject();
        }
    }

    /// Cancels every job left on the injectors (no worker will run them).
    fn cancel_injected(&self) {
        let tally = self.tally();
        while let Some(job) = self.drain_injected() {
            job.execute(Mode::Cancel, &tally);
        }
    }

    // ---- share requests -------------------------------------------------

    /// Whether an idle worker asked worker `index` to share.
    #[inline]
    pub(crate) fn share_requested(&self, index: usize) -> bool {
        // Relaxed: a hint; the shared job is published by the deque push.
        self.share_requested[index].load(Ordering::Relaxed)
    }

    pub(crate) fn clear_share_request(&self, index: usize) {
        // Relaxed: a hint (see `share_requested`).
        self.share_requested[index].store(false, Ordering::Relaxed);
    }

    /// Asks every worker but `index` to publish a join half.
    pub(crate) fn request_share(&self, index: usize) {
        for (other, flag) in self.share_requested.iter().enumerate() {
            // Relaxed: a hint. Load first: a raised flag is not written
            // again, so its cache line stays shared with its owner.
            if other != index && !flag.load(Ordering::Relaxed) {
                flag.store(true, Ordering::Relaxed);
            }
        }
    }

    // ---- handles --------------------------------------------------------

    pub(crate) fn add_handle(&self) {
        // Relaxed: as for `Arc::clone`, a new handle comes from an existing one.
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns `true` if this was the last handle.
    pub(crate) fn remove_handle(&self) -> bool {
        // AcqRel: as for `Arc::drop`, all uses through other handles happen
        // before the last one terminates the pool.
        self.handles.fetch_sub(1, Ordering::AcqRel) == 1
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("threads", &self.num_threads())
            // Relaxed: a snapshot for display only.
            .field("live_workers", &self.live_workers.load(Ordering::Relaxed))
            .field("terminating", &self.is_terminating())
            .field("slots", &self.slots)
            .field("spares", &self.spares)
            .field("detector", &self.detector)
            .finish_non_exhaustive()
    }
}
