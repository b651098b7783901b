//! [`Spares`]: a pool's threads beyond its workers, which run blocking
//! jobs ([`Pool::spawn_blocking`](crate::Pool::spawn_blocking)), stand
//! in for workers blocked in [`blocking`](crate::blocking), and help
//! while the blocking detector sees a job blocked without it
//! ([`super::detect`]).
//!
//! # Protocol
//!
//! Everything here is under one lock, `state`, taken around blocking calls
//! only (a spawn of a blocking job, a worker lending its place, a spare
//! between two pieces of work), never by a CPU job's spawn or join.
//!
//! - A spare thread runs a [`Work`]: a blocking job, a stand-in turn in
//!   a worker's place (until it passes the place on, see
//!   [`baton`](super::baton)), or a helper's turn (until it is not needed,
//!   see [`detect`](super::detect)). Between two pieces of work it takes the
//!   oldest queued blocking job (if fewer than `max` run); else it waits,
//!   listed as idle, for a piece of work in its [`Mailbox`] until
//!   `keep_alive` passes, and then exits.
//! - The two kinds of work are counted apart, each capped at `max`:
//!   `jobs`, the spares running a blocking job, and `turns`, those
//!   standing in or helping. A count goes up under the lock when work is
//!   handed out and down when the spare asks for its next work. So a
//!   stand-in that holds a spare while its lender waits for a blocking job
//!   never keeps that job from a spare of its own: the lender's wait ends
//!   at every `max ≥ 1`. Live spares number at most `2 × max`: a new one
//!   starts only when none is idle, so all others are counted.
//! - Work goes to an idle spare (the most recently idle: the others time
//!   out sooner), else to a new one. Past `max` running blocking jobs a
//!   blocking job joins a FIFO queue (`try_submit` refuses it instead
//!   past `max_queued` queued ones); past `max` turns a stand-in or a
//!   helper is refused (the worker blocks uncompensated).
//! - Each spare runs the user's `on_thread_start` hook before its first
//!   work and `on_thread_stop` after its last, as a worker does: every job
//!   of the pool runs where the user's per-thread set-up ran.
//! - A new thread counts as one of the pool's live threads (`Registry`'s
//!   `live_workers`) before it starts, and stops counting when it exits,
//!   so `shutdown` waits for the spares too. Threads are started only
//!   before `close`, which the registry calls before it lets any worker
//!   exit, or by the blocking detector, itself a live thread until it
//!   exits: a spare never starts after the count could have reached zero.
//! - A thread that cannot be started (`std::thread::Builder::spawn` fails,
//!   or the user's `thread_name` panics) is uncounted again; its work goes
//!   back: a blocking job to the queue if another spare will serve it,
//!   else to the pool's workers, so nothing is lost; a stand-in is
//!   refused. The first such failure of a pool is reported on stderr.
//! - `close` refuses new work; spares finish what they run and what is
//!   queued (or cancel the queue, for `shutdown_now`: [`Spares::take_queued`]
//!   takes the jobs no spare has started), then exit.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::observe::metrics::Tally;
use crate::sched::parker::Parker;
use crate::sched::priority::{self, WorkerPriority};
use crate::sched::registry::Registry;
use crate::sched::worker::{run_hook, WorkerThread};
use crate::sync::{lock, mutant, thread, Arc, AtomicBool, Mutex, Ordering, StdArc};
use crate::task::job::{JobRef, Mode};

/// Names thread `i` of a pool.
pub(crate) type NameFn = Box<dyn Fn(usize) -> String + Send + Sync>;

/// How spare threads are made: the builder's settings.
pub(crate) struct SpareConfig {
    /// The most spare threads at once (`Builder::max_blocking_threads`).
    pub(crate) max: usize,
    /// How long an idle spare waits for work (`Builder::blocking_keep_alive`).
    pub(crate) keep_alive: Duration,
    /// The builder's `thread_name`; spares take the indices from `threads`.
    pub(crate) name: Option<NameFn>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) priority: WorkerPriority,
    /// The most blocking jobs queued for `try_submit`
    /// (`Builder::max_queued_blocking`); `None`: unbounded.
    pub(crate) max_queued: Option<usize>,
}

/// Why [`Spares::try_submit`] refused a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_queued` blocking jobs wait for a spare.
    Full,
    /// The pool is shutting down.
    Shutdown,
}

/// What a spare thread does next.
pub(crate) enum Work {
    /// Run this blocking job.
    Job(JobRef),
    /// Stand in for the worker whose place this is, lent by a thread that
    /// is away in `blocking` (see [`super::baton`]).
    StandIn(Place),
    /// Help: run jobs without a place while a runner is blocked, the
    /// detector's turn (see [`super::detect`]; no detector under loom).
    #[cfg_attr(loom, allow(dead_code))]
    Help(fn(&Arc<Registry>)),
}

/// A worker's place, sent to a stand-in.
pub(crate) struct Place(pub(crate) *const WorkerThread);

// SAFETY: the place is used by one thread at a time, its holder (see
// `super::baton`); lending it to a stand-in transfers it, and the place
// outlives the turn (the lender is counted away until it is back).
unsafe impl Send for Place {}

/// Where an idle spare receives its next piece of work.
struct Mailbox {
    work: Mutex<Option<Work>>,
    parker: StdArc<Parker>,
}

/// The two kinds of work a spare can run, each with its own cap (module
/// docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// A blocking job.
    Job,
    /// A stand-in's or a helper's turn: compensation.
    Turn,
}

impl Work {
    fn kind(&self) -> Kind {
        match self {
            Work::Job(_) => Kind::Job,
            Work::StandIn(_) | Work::Help(_) => Kind::Turn,
        }
    }
}

#[derive(Default)]
struct State {
    /// No new work: the pool is shutting down.
    closed: bool,
    /// Live spare threads, started or about to be.
    threads: usize,
    /// Spares running a blocking job now (at most `max`).
    jobs: usize,
    /// Spares running a stand-in's or a helper's turn now (at most `max`).
    turns: usize,
    /// Spares started so far, to name the next one.
    started: usize,
    /// Idle spares, most recently idle last.
    idle: Vec<StdArc<Mailbox>>,
    /// Blocking jobs waiting for a spare (past `max`), oldest first.
    queue: VecDeque<JobRef>,
}

impl State {
    fn running(&mut self, kind: Kind) -> &mut usize {
        match kind {
            Kind::Job => &mut self.jobs,
            Kind::Turn => &mut self.turns,
        }
    }
}

/// A pool's spare threads (module docs).
pub(crate) struct Spares {
    state: Mutex<State>,
    config: SpareConfig,
    /// The pool's worker count: spare `k` is named `name(threads + k)`.
    workers: usize,
    /// Set once a thread failed to start (reported once).
    failure_reported: AtomicBool,
}

impl Spares {
    pub(crate) fn new(config: SpareConfig, workers: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            config,
            workers,
            failure_reported: AtomicBool::new(false),
        }
    }

    /// The name of worker `index` (spares: `workers + k`).
    pub(crate) fn thread_name(&self, index: usize) -> String {
        match &self.config.name {
            Some(name) => name(index),
            None if index < self.workers => format!("offload-{index}"),
            None => format!("offload-blocking-{}", index - self.workers),
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.config.max
    }

    /// Spare threads alive now, started or about to be.
    pub(crate) fn threads(&self) -> usize {
        lock(&self.state).threads
    }

    /// Runs `job` (a blocking Task's cell) on a spare thread: an idle one,
    /// a new one, or the first to be free (module docs). Cancels it if the
    /// pool is shutting down. Never refused: past `max_queued` it is queued
    /// all the same (and counted, so it delays the next `try_submit`).
    pub(crate) fn submit(&self, registry: &Arc<Registry>, job: JobRef) {
        let state = lock(&self.state);
        if state.closed {
            drop(state);
            job.execute(Mode::Cancel, &registry.tally());
            return;
        }
        self.submit_locked(state, registry, job);
    }

    /// [`submit`](Self::submit) if the queue has room, asking `make` for the
    /// job only then: a refusal allocates nothing and never blocks.
    pub(crate) fn try_submit(
        &self,
        registry: &Arc<Registry>,
        make: impl FnOnce() -> JobRef,
    ) -> Result<(), Refused> {
        let state = lock(&self.state);
        if state.closed {
            return Err(Refused::Shutdown);
        }
        let queues = state.jobs >= self.config.max;
        if queues
            && self
                .config
                .max_queued
                .is_some_and(|bound| state.queue.len() >= bound)
        {
            return Err(Refused::Full);
        }
        // Made under the lock, so that the room it saw is still there: one
        // allocation, no user code (the closure is only moved).
        let job = make();
        self.submit_locked(state, registry, job);
        Ok(())
    }

    /// `submit` past the `closed` check.
    fn submit_locked(
        &self,
        mut state: crate::sync::MutexGuard<'_, State>,
        registry: &Arc<Registry>,
        job: JobRef,
    ) {
        // The mutant counts stand-ins and helpers with the blocking jobs.
        let counted = if mutant!("spares_turns_count_as_jobs") {
            state.jobs + state.turns
        } else {
            state.jobs
        };
        if counted >= self.config.max {
            state.queue.push_back(job);
            return;
        }
        let Err(Work::Job(job)) = self.dispatch(state, registry, Work::Job(job)) else {
            return;
        };
        // No thread could be started: queue the job for a spare that
        // exists, or else give it to the workers.
        let mut state = lock(&self.state);
        if state.closed {
            drop(state);
            job.execute(Mode::Cancel, &registry.tally());
        } else if state.threads > 0 {
            state.queue.push_back(job);
        } else {
            drop(state);
            registry.inject(job);
        }
    }

    /// Takes every queued blocking job out (those no spare has started),
    /// oldest first, for the caller to cancel or run.
    pub(crate) fn take_queued(&self) -> VecDeque<JobRef> {
        std::mem::take(&mut lock(&self.state).queue)
    }

    /// Starts a stand-in for the worker whose place is `place` (an idle
    /// spare, or a new one); returns whether one took it.
    pub(crate) fn stand_in(&self, registry: &Arc<Registry>, place: Place) -> bool {
        let state = lock(&self.state);
        if state.closed || state.turns >= self.config.max {
            return false;
        }
        self.dispatch(state, registry, Work::StandIn(place)).is_ok()
    }

    /// Starts a helper (an idle spare, or a new one); returns whether one
    /// took the turn. Only the detector calls it, also after `close` (a
    /// shutdown drains the queue, and a blocked worker must not hold that
    /// up): the detector is one of the pool's live threads until it has
    /// started its last helper, so the count cannot have reached zero.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn help(&self, registry: &Arc<Registry>, turn: fn(&Arc<Registry>)) -> bool {
        let state = lock(&self.state);
        if state.turns >= self.config.max {
            return false;
        }
        self.dispatch(state, registry, Work::Help(turn)).is_ok()
    }

    /// Gives `work` to an idle spare, or starts a new one (the caller made
    /// sure one of the two is possible); gives it back if no thread could
    /// be started.
    fn dispatch(
        &self,
        mut state: crate::sync::MutexGuard<'_, State>,
        registry: &Arc<Registry>,
        work: Work,
    ) -> Result<(), Work> {
        let kind = work.kind();
        *state.running(kind) += 1;
        if let Some(mailbox) = state.idle.pop() {
            *lock(&mailbox.work) = Some(work);
            drop(state);
            mailbox.parker.unpark();
            return Ok(());
        }
        state.threads += 1;
        let index = self.workers + state.started;
        state.started += 1;
        // Counted live before it exists (module docs).
        registry.add_live_thread();
        drop(state);
        let mailbox = StdArc::new(Mailbox {
            work: Mutex::new(Some(work)),
            parker: StdArc::new(Parker::new()),
        });
        match self.start(registry, index, StdArc::clone(&mailbox)) {
            Ok(()) => Ok(()),
            Err(error) => {
                self.report_failure(&error);
                let mut state = lock(&self.state);
                state.threads -= 1;
                *state.running(kind) -= 1;
                drop(state);
                registry.workers_exited(1, None);
                let work = lock(&mailbox.work).take();
                Err(work.expect("a thread that never started took no work"))
            }
        }
    }

    /// Starts spare thread `index`, which takes its first work from
    /// `mailbox`.
    fn start(
        &self,
        registry: &Arc<Registry>,
        index: usize,
        mailbox: StdArc<Mailbox>,
    ) -> io::Result<()> {
        let registry = Arc::clone(registry);
        let priority = self.config.priority;
        let stack_size = self.config.stack_size;
        // `thread_name` is user code, and std panics on a name with a NUL
        // byte: either is a thread that cannot be started.
        let started = panic::catch_unwind(AssertUnwindSafe(|| {
            let mut builder = thread::Builder::new().name(self.thread_name(index));
            if let Some(bytes) = stack_size {
                builder = builder.stack_size(bytes);
            }
            builder.spawn(move || {
                priority::apply_to_current_thread(priority);
                spare_main(&registry, &mailbox, index);
            })
        }));
        match started {
            Ok(Ok(_handle)) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(payload) => {
                crate::unwind::drop_quietly(payload);
                Err(io::Error::other("the thread_name hook panicked"))
            }
        }
    }

    fn report_failure(&self, error: &io::Error) {
        // Relaxed: only decides who prints; nothing is published.
        if !self.failure_reported.swap(true, Ordering::Relaxed) {
            eprintln!(
                "offload: could not start a thread for blocking work ({error}); \
                 the pool goes on with the threads it has"
            );
        }
    }

    /// The next work of the spare whose mailbox is `mailbox`, which has
    /// just finished work of kind `finished`, waiting for it until
    /// `keep_alive` passes; `None` when the spare should exit (it is
    /// uncounted then).
    fn next(&self, mailbox: &StdArc<Mailbox>, finished: Kind) -> Option<Work> {
        // Set on the first wait; `None` inside for a keep-alive too large
        // for an `Instant` (no expiry).
        let mut deadline: Option<Option<Instant>> = None;
        let mut finished = Some(finished);
        loop {
            let mut state = lock(&self.state);
            if let Some(kind) = finished.take() {
                *state.running(kind) -= 1;
            }
            // Work in the mailbox was counted by whoever put it there.
            if let Some(work) = lock(&mailbox.work).take() {
                return Some(work);
            }
            if state.jobs < self.config.max {
                if let Some(job) = state.queue.pop_front() {
                    state.jobs += 1;
                    return Some(Work::Job(job));
                }
            }
            let listed = state.idle.iter().any(|m| StdArc::ptr_eq(m, mailbox));
            let expired = deadline
                .flatten()
                .is_some_and(|deadline| Instant::now() >= deadline);
            if state.closed || expired {
                // Work is handed out under this lock, and the mailbox is
                // empty: unlisted now, nobody can give this spare work.
                state.idle.retain(|m| !StdArc::ptr_eq(m, mailbox));
                state.threads -= 1;
                return None;
            }
            if !listed {
                state.idle.push(StdArc::clone(mailbox));
            }
            drop(state);
            let until = *deadline.get_or_insert_with(|| {
                // Under loom executions must not depend on the clock: a
                // spare waits until it is given work or the pool closes.
                (!cfg!(loom))
                    .then(|| Instant::now().checked_add(self.config.keep_alive))
                    .flatten()
            });
            match until {
                Some(until) => {
                    mailbox.parker.park_deadline(until);
                }
                None => mailbox.parker.park(),
            }
        }
    }

    /// Refuses new work and wakes the idle spares, which exit; with
    /// `cancel_queued`, cancels the queued blocking jobs (their Tasks
    /// resolve as cancelled), else the spares run them first. Called by
    /// the registry before any worker may exit (module docs).
    pub(crate) fn close(&self, cancel_queued: bool, tally: &Tally<'_>) {
        let idle = {
            let mut state = lock(&self.state);
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        // Closed first: nothing joins the queue after this take.
        let cancelled = if cancel_queued {
            self.take_queued()
        } else {
            VecDeque::new()
        };
        for mailbox in idle {
            mailbox.parker.unpark();
        }
        for job in cancelled {
            job.execute(Mode::Cancel, tally);
        }
    }
}

/// The life of a spare thread: run the work it was started with, then
/// whatever comes next, until it is idle for `keep_alive` or the pool
/// closes.
fn spare_main(registry: &Arc<Registry>, mailbox: &StdArc<Mailbox>, index: usize) {
    // SAFETY: `registry` (an Arc this thread holds) outlives the guard.
    let _cancel_scope = unsafe { crate::flow::cancel::enter_pool(registry.cancel_flags()) };
    // The user's set-up runs before any job of the pool on this thread,
    // and its tear-down after the last, as on a worker.
    if let Some(hook) = &registry.on_start {
        run_hook(|| hook(index));
    }
    let spares = registry.spares();
    let mut work = lock(&mailbox.work).take();
    while let Some(next) = work {
        let kind = next.kind();
        match next {
            Work::Job(job) => {
                crate::sched::worker::run_away_from(registry, || {
                    job.execute(registry.execution_mode(), &registry.tally());
                });
            }
            // SAFETY: the place was lent to this thread (see `Place`).
            Work::StandIn(place) => unsafe { WorkerThread::stand_in(place.0) },
            Work::Help(turn) => turn(registry),
        }
        work = spares.next(mailbox, kind);
    }
    if let Some(hook) = &registry.on_stop {
        run_hook(|| hook(index));
    }
    registry.workers_exited(1, None);
}

impl fmt::Debug for Spares {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Spares")
            .field("threads", &state.threads)
            .field("jobs", &state.jobs)
            .field("turns", &state.turns)
            .field("idle", &state.idle.len())
            .field("queued", &state.queue.len())
            .field("max", &self.config.max)
            .field("closed", &state.closed)
            .finish()
    }
}
