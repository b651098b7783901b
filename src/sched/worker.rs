//! A worker thread: its deques, its place in the pool, and the ways code
//! running on it waits.
//!
//! Each worker owns a LIFO deque. It looks for work in this order (the loop
//! itself is [`crate::sched::worker_loop`], which this module's [`WorkerThread`] drives
//! through [`Queues`]):
//! 1. its own deque (the most recently pushed job: hot in cache);
//! 2. the injector (submissions from outside, first come first served),
//!    moving a batch to its deque;
//! 3. the other workers' deques, starting at a random victim, stealing a
//!    batch.
//!
//! Steps 2 and 3 are taken only as a spinner (see [`crate::sched::sleep`]).
//!
//! A thread-local pointer tells pool code whether it runs on a worker, and
//! of which pool: spawns from a worker go to its own deque, and `join` /
//! `scope` run on the current worker.
//!
//! # Join halves and share requests
//!
//! The second half of a `join` near the root of a recursion is *published*:
//! pushed on the worker's deque, with a sleeper woken for it
//! ([`WorkerThread::publish`]), so that any worker that goes idle while the
//! first half runs can steal it (see [`crate::join`]). Deeper joins run
//! inline, and work is shared from them on demand (after Acar, Charguéraud
//! and Rainey's private deques with steal requests, PPoPP 2013, and in the
//! spirit of heartbeat scheduling):
//!
//! - a worker that finds no work raises the `share_requested` flag of every
//!   other worker (a load first, so a raised flag is not written again);
//! - every [`SHARE_CHECK_EVERY`]th inline join checks its own flag (one
//!   Relaxed load of a cache line that only changes when somebody is
//!   idle); if raised, it clears it and makes that join a shared one;
//! - a half published on request that comes back unstolen does not raise
//!   the flag again: publishing woke a sleeper, and a worker still idle
//!   raises it itself at its next idle step. (Raising it again for it
//!   would make a busy worker publish a small half every
//!   [`SHARE_CHECK_EVERY`] joins for nobody.)
//!
//! A flag is only a hint: losing one costs parallelism, never a job, since
//! a published half is always run by its owner when nobody took it.

use std::cell::Cell;
use std::ptr;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::blocking::baton::Baton;
use crate::blocking::runner::Runner;
use crate::blocking::spares::Place;
use crate::blocking::thread_state::ThreadUsage;
use crate::job_priority::Priority;
use crate::sched::deque::{Steal, Stealer, Worker};
use crate::sched::injector::MAX_BATCH;
use crate::sched::lanes::ESCAPE_EVERY;
use crate::sched::parker::Parker;
use crate::sched::registry::Registry;
use crate::sched::sleep::{Sleep, Spinning};
use crate::sched::spin_budget::SpinLearner;
use crate::sched::worker_loop::{self, Queues};
use crate::sync::{self, mutant, Arc, StdArc};
use crate::task::completions::{self, MAX_HELD, WINDOW};
use crate::task::job::JobRef;
use crate::unwind::drop_quietly;

// The bounds of a worker's private join stack (see `crate::join`'s costs).
/// Below this many published halves, every join is a shared join.
pub(crate) const SHARED_DEPTH: usize = 3;

/// With [`SHARED_DEPTH`] halves published, one inline join in this many
/// looks for a share request.
pub(crate) const SHARE_CHECK_EVERY: u32 = 64;

sync::thread_local! {
    static CURRENT: Cell<*const WorkerThread> = const { Cell::new(ptr::null()) };
}

// Set while the thread, back early from `blocking`, finishes its job without
// its place (see `WorkerThread::blocking`).
sync::thread_local! {
    static PLACELESS: Cell<Option<Placeless>> = const { Cell::new(None) };
}

/// What a thread back early from `blocking` needs to take its place back
/// where its frames touch it again ([`WorkerThread::hold`]).
#[derive(Clone, Copy)]
struct Placeless {
    /// Whether it holds the place as a stand-in (else as the home thread).
    stand_in: bool,
    /// The pool reached by the free functions off a worker, to put back
    /// then.
    away: *const Arc<Registry>,
    /// The call was timed and shorter than [`LONG_CALL`]: once back, the
    /// place's next marked call goes to the detector.
    short_call: bool,
}

// The pool of the thread while it runs user code away from a worker's place
// (inside `blocking`) or a blocking job on a spare: where the free functions
// go when no worker runs on the thread. Null elsewhere.
sync::thread_local! {
    static AWAY: Cell<*const Arc<Registry>> = const { Cell::new(ptr::null()) };
}

/// The state of one worker thread, on that thread's stack.
pub(crate) struct WorkerThread {
    index: usize,
    registry: Arc<Registry>,
    /// The `Normal` lane's deque.
    deque: Worker<JobRef>,
    /// The `High` and `Low` lanes' deques (see [`crate::sched::lanes`]).
    lane_deques: [Worker<JobRef>; 2],
    /// The priority of the job this place runs now (`Normal` between
    /// jobs): what the jobs it makes inherit (see [`crate::sched::lanes`]).
    running: Cell<Priority>,
    /// Starts in a row that passed over a job of a less urgent lane, for
    /// the starvation bound (see [`crate::sched::lanes`]), and whose turn
    /// the next escape is: `Low`'s if set, else `Normal`'s.
    passed_over: Cell<u32>,
    low_turn: Cell<bool>,
    /// Join halves this worker published to `deque` and has not taken
    /// back yet, stolen or not: the depth of its shared joins (see
    /// [`crate::join`]).
    published: Cell<usize>,
    /// Inline joins so far, to pick the ones that look for a share request.
    joins: Cell<u32>,
    rng: Cell<u64>,
    /// Jobs this worker has executed, and when it last took a batch from
    /// the injector with how many it had executed then: the pace that
    /// sizes its next batch ([`WorkerThread::injector_batch`]).
    jobs_run: Cell<u64>,
    last_batch: Cell<Option<(Instant, u64)>>,
    /// How long this place's holder spins when idle (see [`crate::sched::spin_budget`]).
    spin: SpinLearner,
    /// Whether the holder is a stand-in (else the home thread): a stand-in
    /// counts its jobs' ends apart (see `PoolStats::stand_in`).
    stand_in_holds: Cell<bool>,
    /// The completion wake-ups this place holds back, and since when (see
    /// [`crate::task::completions`]): a copy of the list's length kept by its
    /// holder, which alone adds to it.
    held: Cell<usize>,
    held_since: Cell<Option<Instant>>,
    /// Whether the last timed call on this place lasted [`LONG_CALL`] or
    /// more and blocked ([`WorkerThread::blocking_marked`], [`CallTimer`]):
    /// the next one lends the place at once if jobs wait (see
    /// [`WorkerThread::blocking`]).
    long_calls: Cell<bool>,
}

/// A marked call this long or longer makes the next marked call on its
/// place lend the place at once rather than wait for the detector: for a
/// call of several milliseconds (a network round trip) the hand-over costs
/// little, and waiting for the detector (its threshold, its wake-up on a
/// busy machine: about 0.5 ms measured) a fraction of the call each time.
/// A shorter call is left to the detector, which costs nothing if the call
/// returns within its threshold or computes.
const LONG_CALL: Duration = Duration::from_millis(10);

/// Times a call made through `blocking` that lent its place, on the clock
/// and on the thread's own usage (the detector does not look at a thread
/// away from its place; next to the hand-over, the two `getrusage` calls
/// cost nothing).
#[derive(Clone, Copy)]
struct CallTimer {
    at: Instant,
    usage: Option<ThreadUsage>,
}

impl CallTimer {
    fn start() -> Self {
        Self {
            at: Instant::now(),
            usage: ThreadUsage::now(),
        }
    }

    /// Whether the call lasted [`LONG_CALL`] or more and blocked: it gave
    /// the CPU up to wait at least once, and spent less than half of its
    /// time on the CPU (where the platform does not say, the call is taken
    /// at its word). A call that computed on a busy machine is preempted,
    /// which is not a wait: it never counts.
    fn was_long_and_blocked(self) -> bool {
        let took = self.at.elapsed();
        if took < LONG_CALL {
            return false;
        }
        match self.usage.zip(ThreadUsage::now()) {
            Some((before, after)) => {
                after.waits > before.waits && after.cpu.saturating_sub(before.cpu) < took / 2
            }
            None => true,
        }
    }
}

/// What a job side calls on a worker's thread when it completes a Task
/// whose waker is registered (see [`crate::task::completions`]).
fn complete_on_current(waker: &Waker) {
    WorkerThread::with_current(|worker| match worker {
        Some(worker) => worker.complete(waker),
        // Away in `blocking`: the place is another thread's.
        None => waker.wake_by_ref(),
    });
}

/// A worker's deques: the `Normal` lane's and the other lanes' (see
/// [`crate::sched::lanes`]).
pub(crate) struct WorkerDeques {
    pub(crate) normal: Worker<JobRef>,
    pub(crate) lanes: [Worker<JobRef>; 2],
}

impl WorkerDeques {
    pub(crate) fn new() -> Self {
        Self {
            normal: Worker::new_lifo(),
            lanes: [Worker::new_lifo(), Worker::new_lifo()],
        }
    }
}

/// The work, in time, that a worker takes from the injector at once. A
/// batch of short jobs saves trips to the shared queue (a burst of tiny
/// jobs runs at a fraction of the cost); a batch of long ones would sit in
/// one worker's deque, in front of nobody but behind its own job, while
/// newer jobs pass them through other workers. Bounding a batch by its
/// work bounds that unfairness to about this much delay per job: a few
/// wake-ups' worth, invisible next to a long job.
const BATCH_WORK: Duration = Duration::from_micros(100);

impl WorkerThread {
    /// Runs `f` with the worker running on this thread, if any. The
    /// reference lives only for the call: it cannot outlive the worker.
    #[inline]
    pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerThread>) -> R) -> R {
        let ptr = CURRENT.with(Cell::get);
        // SAFETY: CURRENT is non-null only while `WorkerThread::run` is on
        // this thread's stack (`CurrentGuard` clears it when `run` ends,
        // unwinding included), so the worker outlives this call, during
        // which `run` cannot return; the borrow cannot escape `f`, nor the
        // thread (WorkerThread is !Sync via Cell).
        f(unsafe { ptr.as_ref() })
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The priority of the job this place runs now (see
    /// [`crate::sched::lanes`]).
    #[inline]
    pub(crate) fn running_priority(&self) -> Priority {
        self.running.get()
    }

    /// This worker's index in its pool.
    #[inline]
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    pub(crate) fn parker(&self) -> &StdArc<Parker> {
        self.registry.sleep.parker(self.index)
    }

    /// This place's runner, as the blocking detector sees it (see
    /// [`crate::blocking::detect`]).
    fn runner(&self) -> &Runner {
        self.registry.detector().place(self.index)
    }

    /// The place's holder is not blocked in a job (its job ended, or it
    /// falls asleep): clears a flag the detector set meanwhile.
    #[inline]
    fn not_blocked(&self) {
        self.runner()
            .job_ended(self.registry.detector().compensation());
    }

    /// Who holds this worker's place (see [`crate::blocking::baton`]).
    fn baton(&self) -> &Baton {
        self.registry.baton(self.index)
    }

    /// [`crate::blocking`](mod@crate::blocking) on this worker, which holds
    /// the place. In a pool with a detector, unless the place's last timed
    /// call lasted [`LONG_CALL`] or more, the call is marked for the
    /// detector ([`blocking_marked`](Self::blocking_marked)). Otherwise:
    /// lends the place to another thread (a stand-in) while `f`
    /// blocks, if jobs are waiting. When `f` returns, this thread does not
    /// wait for the place: it goes on with its job without it, as a thread
    /// outside the pool (its spawns go to the injector; a `join`, `scope`
    /// or `install` runs on a worker while it waits; a wait parks), while
    /// the stand-in goes on running the place's jobs. It takes the place
    /// back ([`hold`](Self::hold)) only where its frames touch the place
    /// again: the end of the job, or of the `join` or `scope` closure that
    /// called `blocking`, where the user code above has returned (so no
    /// lock it took after `f` is held while it waits there, at most for the
    /// stand-in's current job). If `f` panics, it waits for the place
    /// before the panic goes on.
    pub(crate) fn blocking<R>(&self, f: impl FnOnce() -> R) -> R {
        // `f` may wait for what a held-back wake-up would start.
        if self.held.get() != 0 {
            self.wake_held_now();
        }
        let detecting = self.registry.detector().enabled();
        if detecting && !self.long_calls.get() {
            return self.blocking_marked(f);
        }
        // A join half of the caller's is in its deque: waiting work.
        if !self.has_work() {
            // Jobs may come while `f` blocks: the detector can still see it.
            return self.blocking_unlent(detecting, f);
        }
        // With a detector, time the call: a short one (or one that
        // computed) sends the next call back to the detector.
        let call = detecting.then(CallTimer::start);
        let registry = &self.registry;
        let place = Place(self);
        let stand_in = self.stand_in_holds.get();
        if !self
            .baton()
            .lend(|| registry.spares().stand_in(registry, place))
        {
            // No spare (the cap, a failed start, a shutdown): the detector
            // may still see the call, and times it.
            return self.blocking_unlent(detecting, f);
        }
        // Away: until `hold`, another thread holds the place, and this one
        // touches none of its cells (only the registry, which never
        // changes).
        CURRENT.with(|current| current.set(ptr::null()));
        struct Back<'a>(&'a WorkerThread, bool);
        impl Drop for Back<'_> {
            fn drop(&mut self) {
                // `f` panicked: the frames it unwinds into may use the
                // place, so wait for it here.
                self.0.take_place_back(true, self.1);
            }
        }
        let back = Back(self, stand_in);
        // Away, this thread's spawns keep the job's priority.
        let running = self.running.get();
        let result = crate::sched::lanes::run_as(running, || run_away_from(&self.registry, f));
        std::mem::forget(back);
        let short_call = call.is_some_and(|call| !call.was_long_and_blocked());
        // Back early: without the place until `hold`, as a thread outside
        // the pool that still reaches its pool (the pointer it puts back
        // then).
        let away = replace_away(ptr::from_ref(&self.registry));
        PLACELESS.with(|placeless| {
            placeless.set(Some(Placeless {
                stand_in,
                away,
                short_call,
            }));
        });
        result
    }

    /// A call that does not lend the place: marked, with a detector;
    /// else simply run, uncompensated.
    fn blocking_unlent<R>(&self, detecting: bool, f: impl FnOnce() -> R) -> R {
        if detecting {
            self.blocking_marked(f)
        } else {
            f()
        }
    }

    /// [`crate::blocking`](mod@crate::blocking) on this worker in a pool
    /// with a detector: the call is marked for the detector, which
    /// compensates it as it would an unmarked block (a helper runs queued
    /// jobs while the call is off the CPU), but reads the thread from the
    /// call's threshold on, timed from its start, and more often (see
    /// "Marked calls" in [`crate::blocking::detect`]). A call that returns
    /// within the threshold, or that computes, gets no helper.
    ///
    /// The thread keeps the place, but runs `f` away from it, as a lent
    /// call does: the pool's functions see no worker on it (a spawn goes to
    /// the injector, a `join` or a wait parks this thread, which the
    /// detector then sees blocked, and a nested `blocking` just runs its
    /// closure), so nobody touches the place's cells meanwhile. When `f`
    /// returns or unwinds, the thread is back on its place at once (nobody
    /// else held it) and takes back the flag set for the call. A call that
    /// lasted [`LONG_CALL`] or more, and that the detector last read off
    /// the CPU (or never read), makes the place's next call lend the place
    /// at once.
    fn blocking_marked<R>(&self, f: impl FnOnce() -> R) -> R {
        let runner = self.runner();
        let detector = self.registry.detector();
        let start = Instant::now();
        let at = start.saturating_duration_since(detector.epoch);
        runner.mark(at);
        // Jobs wait: make sure the detector looks when the call is due
        // (a job pushed later pokes it if no worker takes it).
        if detector.looks_later_than(at + crate::blocking::detect::THRESHOLD) && self.has_work() {
            self.registry.sleep.dormancy().wake();
        }
        // Away from the place until `f` is done (see above).
        CURRENT.with(|current| current.set(ptr::null()));
        struct Back<'a>(&'a WorkerThread);
        impl Drop for Back<'_> {
            fn drop(&mut self) {
                // Back on the place, when `f` returns or before its panic
                // goes on.
                CURRENT.with(|current| current.set(self.0));
                let compensation = self.0.registry.detector().compensation();
                self.0.runner().marked_call_ended(compensation);
            }
        }
        let back = Back(self);
        let running = self.running.get();
        let result = crate::sched::lanes::run_as(running, || run_away_from(&self.registry, f));
        drop(back);
        // Long, and blocked as the detector last read it (or never read,
        // since no job waited: taken at its word). Its last reading, not
        // the thread's own usage: a `getrusage` would cost every call, short
        // ones included, more than the rest of the mark.
        let long = start.elapsed() >= LONG_CALL && runner.verdict() != Some(false);
        self.long_calls.set(long);
        result
    }

    /// Makes sure this thread holds the place again before the caller
    /// touches it: a no-op unless user code it called came back early from
    /// `blocking` (then this thread is not the current worker), in which
    /// case it takes the place back, waiting at most for the holder's
    /// current job. Called where pool code resumes on a place after user
    /// code: the end of a job, of a shared `join`'s first half, of a
    /// `scope` body.
    #[inline]
    pub(crate) fn hold(&self) {
        if !ptr::eq(CURRENT.with(Cell::get), self) {
            self.hold_again();
        }
    }

    #[cold]
    #[inline(never)]
    fn hold_again(&self) {
        let placeless = PLACELESS
            .with(Cell::take)
            .expect("offload: a worker's frames resumed off its place, not back from blocking");
        replace_away(placeless.away);
        self.take_place_back(true, placeless.stand_in);
        if placeless.short_call {
            self.long_calls.set(false);
        }
    }

    /// Waits until this thread, away from the place, holds it again; then
    /// it is this thread's current worker once more. `returning`: back from
    /// a blocking call (else it passed the place on from a wait or from its
    /// loop; see `Baton::first_is_returning`); `stand_in`: whether it holds
    /// the place as a stand-in.
    fn take_place_back(&self, returning: bool, stand_in: bool) {
        self.baton()
            .come_back(self.parker(), thread_parker(), returning);
        self.parker().rebind();
        self.runner().bind_current_thread();
        self.stand_in_holds.set(stand_in);
        CURRENT.with(|current| current.set(self));
    }

    /// A spare thread's turn in the place `worker`, lent by a thread away
    /// in `blocking`: runs its jobs until a thread wants the place back
    /// (then passes it on), or until the pool terminates with no work left
    /// (then leaves it).
    ///
    /// # Safety
    /// `worker` was lent to this thread (see [`crate::blocking::baton`]): it
    /// is alive, and no other thread uses it until this one passes it on.
    pub(crate) unsafe fn stand_in(worker: *const WorkerThread) {
        // SAFETY: the caller's contract; the place stays alive until we
        // pass it on or leave it (its lender is counted away until then).
        let worker = unsafe { &*worker };
        CURRENT.with(|current| current.set(worker));
        let _current = CurrentGuard;
        worker.parker().rebind();
        worker.runner().bind_current_thread();
        worker.stand_in_holds.set(true);
        let passed = Cell::new(false);
        let stand_in = LoopQueues::stand_in(worker, &passed);
        worker_loop::run_until_terminated(&stand_in, || worker.registry.is_terminating());
        if !passed.get() {
            worker.baton().leave();
        }
        // The place may be gone from here on: not another touch.
    }

    /// The body of a worker thread.
    pub(crate) fn run(index: usize, registry: Arc<Registry>, deques: WorkerDeques) {
        let seed = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(index as u64 + 1) | 1;
        let worker = WorkerThread {
            index,
            registry,
            deque: deques.normal,
            lane_deques: deques.lanes,
            running: Cell::new(Priority::Normal),
            passed_over: Cell::new(0),
            low_turn: Cell::new(false),
            published: Cell::new(0),
            joins: Cell::new(0),
            rng: Cell::new(seed),
            jobs_run: Cell::new(0),
            last_batch: Cell::new(None),
            spin: SpinLearner::default(),
            stand_in_holds: Cell::new(false),
            held: Cell::new(0),
            held_since: Cell::new(None),
            long_calls: Cell::new(false),
        };
        CURRENT.with(|current| current.set(&worker));
        let _current = CurrentGuard;
        completions::set_completer(complete_on_current);
        worker.runner().bind_home_thread();
        // SAFETY: `worker` holds the registry alive until after this guard.
        let _cancel_scope =
            unsafe { crate::flow::cancel::enter_pool(worker.registry.cancel_flags()) };
        if let Some(hook) = &worker.registry.on_start {
            run_hook(|| hook(index));
        }
        worker_loop::run_until_terminated(&worker, || worker.registry.is_terminating());
        worker.wake_held_now();
        if let Some(hook) = &worker.registry.on_stop {
            run_hook(|| hook(index));
        }
        worker.registry.workers_exited(1, Some(&worker));
    }

    /// Runs jobs until none is left anywhere (the last worker's exit). It
    /// waits for its turn at the injector rather than skip it while another
    /// thread consumes: this drain must see every linked job.
    pub(crate) fn run_until_idle(&self) {
        let steal = || {
            // No other worker is left to wake, so the spin that a steal
            // requires ends without a re-check.
            let spinning = self.registry.sleep.start_spinning();
            let job = self.steal_any(&spinning);
            spinning.stop(|| false);
            job
        };
        while let Some(job) = self
            .pop_any()
            .or_else(|| self.registry.drain_injected())
            .or_else(steal)
        {
            self.execute(job);
        }
    }

    /// Runs other jobs until `done()` holds, sleeping when there are none
    /// (see [`worker_loop::run_until`]). Whoever makes `done()` true must then
    /// unpark this worker's parker.
    pub(crate) fn wait_until(&self, done: impl Fn() -> bool) {
        worker_loop::run_until(self, done);
    }

    /// [`wait_until`](Self::wait_until), giving up at `deadline` (returns
    /// whether `done()` held), and calling `step_out()` before each job it
    /// runs meanwhile and `step_in()` after
    /// (a `Reserve::wait` leaves the line while the worker cannot collect
    /// a slot: see `Acquire::step_out`).
    pub(crate) fn wait_until_deadline_stepping_out(
        &self,
        done: impl Fn() -> bool,
        deadline: Option<Instant>,
        step_out: impl Fn(),
        step_in: impl Fn(),
    ) -> bool {
        let queues = LoopQueues {
            worker: self,
            step_out,
            step_in,
            stand_in: None,
        };
        worker_loop::run_until_deadline(&queues, done, deadline)
    }

    #[inline]
    pub(crate) fn execute(&self, job: JobRef) {
        self.jobs_run.set(self.jobs_run.get().wrapping_add(1));
        let stats = self.registry.stats();
        // A stand-in counts its jobs' ends apart: the thread it stands in
        // for may finish its own job (counted on the place) meanwhile.
        let tally = if self.stand_in_holds.get() {
            stats.stand_in(self.index)
        } else {
            stats.place(self.index)
        };
        let held_before = self.held.get();
        // Jobs never unwind, so the previous priority is always restored
        // (once this thread holds the place again: the cell is the place's).
        let running = self.running.replace(job.priority());
        job.execute(self.registry.execution_mode(), &tally);
        // The job may have come back early from `blocking`: the place
        // first. (The mutant goes on without it: two threads then run the
        // place's loop, and the one away never comes back.)
        if !mutant!("worker_job_end_skips_hold") {
            self.hold();
        }
        self.running.set(running);
        // The Task count in `tally` is this place's progress for the
        // blocking detector; a flag it set while the job ran is ours to
        // clear.
        self.not_blocked();
        let held = self.held.get();
        if held != 0 {
            if held == held_before {
                // This job added nothing to the batch: nothing else awaits
                // here (a loop awaiting one Task at a time), and holding on
                // would only delay the Tasks held.
                self.wake_held();
            } else {
                self.wake_held_if_due();
            }
        }
    }

    /// A Task's job completed on this worker and its waker is registered:
    /// holds the wake-up back if a job waits behind this one and a
    /// detector can wake it should this worker block (see
    /// [`crate::task::completions`]); otherwise wakes what it holds, then
    /// `waker`.
    pub(crate) fn complete(&self, waker: &Waker) {
        let hold = self.registry.detector().enabled()
            && (!self.deque.is_empty() || self.registry.has_injected())
            && self.jobs_are_short();
        if !hold {
            if self.held.get() != 0 {
                self.wake_held();
            }
            waker.wake_by_ref();
            return;
        }
        if self.registry.deferred(self.index).push(waker.clone()) {
            // The list was empty: a new batch, whatever `held` says (the
            // detector may have woken the last one at its tick).
            self.held.set(0);
            self.held_since.set(Some(Instant::now()));
            self.registry.sleep.dormancy().keep_awake();
        }
        self.held.set(self.held.get() + 1);
        if self.held.get() >= MAX_HELD {
            self.wake_held();
        }
    }

    /// Whether this worker's recent jobs took less than half
    /// [`WINDOW`] each (the pace since its last take from the injector,
    /// idleness included): then a wake-up held back now waits about the
    /// window at most, and not behind a long job.
    fn jobs_are_short(&self) -> bool {
        let Some((then, jobs_then)) = self.last_batch.get() else {
            return false;
        };
        let jobs = self.jobs_run.get().wrapping_sub(jobs_then).max(1);
        then.elapsed() / u32::try_from(jobs).unwrap_or(u32::MAX) <= WINDOW / 2
    }

    /// Wakes what this place holds back once the oldest is [`WINDOW`] old.
    #[cold]
    fn wake_held_if_due(&self) {
        if self
            .held_since
            .get()
            .is_none_or(|since| since.elapsed() >= WINDOW)
        {
            self.wake_held();
        }
    }

    /// Wakes every wake-up this place holds back, and those handed over,
    /// from this thread now: it may not run again soon (it blocks, or
    /// exits).
    fn wake_held_now(&self) {
        self.held.set(0);
        self.held_since.set(None);
        self.registry.deferred(self.index).wake_all();
        completions::wake_handed();
    }

    /// Wakes every wake-up this place holds back: the first now, the rest
    /// through the thread that polls its Task (see [`crate::task::completions`]).
    pub(crate) fn wake_held(&self) {
        self.held.set(0);
        self.held_since.set(None);
        let batch = self.registry.deferred(self.index).take();
        if batch.is_empty() {
            completions::wake_handed();
        } else if completions::hand_over(batch) {
            self.registry.sleep.dormancy().keep_awake();
        }
    }

    /// How many jobs to take from the injector now: about [`BATCH_WORK`]
    /// of them, at the pace of the jobs run since the last batch (their
    /// count over the time since). That time includes any idleness, so
    /// after a pause the first take is small and the next one is sized by
    /// the jobs in between. Not adapted under loom, whose executions must
    /// not depend on the clock.
    fn injector_batch(&self, now: Instant) -> usize {
        if cfg!(loom) {
            return MAX_BATCH;
        }
        let Some((then, jobs_then)) = self.last_batch.get() else {
            return MAX_BATCH;
        };
        let jobs = self.jobs_run.get().wrapping_sub(jobs_then).max(1);
        let per_job = now.saturating_duration_since(then).as_nanos() / u128::from(jobs);
        let batch = BATCH_WORK.as_nanos() / per_job.max(1);
        usize::try_from(batch)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH)
    }

    /// Takes the oldest injected job and a batch sized by
    /// [`injector_batch`](Self::injector_batch). Only a spinner may (see
    /// [`crate::sched::worker_loop`]).
    fn take_injected(&self, spinning: &Spinning<'_>) -> Option<JobRef> {
        if !self.registry.has_injected() {
            return None;
        }
        let now = Instant::now();
        let job = self
            .registry
            .steal_injected(&self.deque, self.injector_batch(now), spinning)?;
        self.last_batch.set(Some((now, self.jobs_run.get())));
        Some(job)
    }

    /// Pushes `job` on this worker's deque of its lane and wakes a sleeper
    /// to steal it.
    #[inline]
    pub(crate) fn push(&self, job: JobRef) {
        match job.priority().lane() {
            None => self.deque.push(job),
            Some(lane) => {
                self.registry.lanes().pushing();
                self.lane_deques[lane].push(job);
            }
        }
        self.registry.sleep.notify_one();
    }

    /// Whether the next join runs inline (see [`crate::join`]): not while
    /// fewer than [`SHARED_DEPTH`] halves are published; beyond that, every
    /// [`SHARE_CHECK_EVERY`]th inline join looks for a share request and,
    /// if there is one, takes it and makes this join a shared one.
    #[inline]
    pub(crate) fn next_join_is_inline(&self) -> bool {
        if self.published.get() < SHARED_DEPTH {
            return false;
        }
        let joins = self.joins.get().wrapping_add(1);
        self.joins.set(joins);
        if joins % SHARE_CHECK_EVERY == 0 && self.registry.share_requested(self.index) {
            self.registry.clear_share_request(self.index);
            return false;
        }
        true
    }

    /// Publishes a join half: pushes it on this worker's deque, where any
    /// idle worker can steal it, and wakes a sleeper for it.
    #[inline]
    pub(crate) fn publish(&self, job: JobRef) {
        self.published.set(self.published.get() + 1);
        if mutant!("join_publish_no_wake") {
            // Broken variant: the half is stealable, but a worker asleep
            // since before the push is never told.
            debug_assert!(
                job.priority().lane().is_none(),
                "the model's halves are Normal"
            );
            self.deque.push(job);
        } else {
            self.push(job);
        }
    }

    /// The join whose half was published last is taking it back.
    #[inline]
    pub(crate) fn unpublish(&self) {
        self.published.set(self.published.get() - 1);
    }

    /// Pops the most recent job of this worker's own deque of the running
    /// priority's lane: where the running job's `join` pushed its half.
    #[inline]
    pub(crate) fn pop(&self) -> Option<JobRef> {
        match self.running.get().lane() {
            None => self.deque.pop(),
            Some(lane) => self.pop_lane(lane),
        }
    }

    /// Pops this worker's deque of lane `lane`.
    #[inline]
    fn pop_lane(&self, lane: usize) -> Option<JobRef> {
        self.registry.lanes().took(self.lane_deques[lane].pop())
    }

    /// Pops this worker's own deques, the most urgent lane first (the last
    /// worker's drain, after its fence: the lanes' count is exact there).
    fn pop_any(&self) -> Option<JobRef> {
        if !self.registry.lanes().busy() {
            return self.deque.pop();
        }
        self.pop_lane(0)
            .or_else(|| self.deque.pop())
            .or_else(|| self.pop_lane(1))
    }

    /// Steals from every lane, the most urgent first (the last worker's
    /// drain, as [`pop_any`](Self::pop_any)).
    fn steal_any(&self, spinning: &Spinning<'_>) -> Option<JobRef> {
        if !self.registry.lanes().busy() {
            return self.steal(spinning);
        }
        self.steal_lane(0, spinning)
            .or_else(|| self.steal(spinning))
            .or_else(|| self.steal_lane(1, spinning))
    }

    /// Whether this worker's deques or any shared queue hold a job of a
    /// lane other than `Normal`: exact after a `fence(SeqCst)` (see
    /// [`crate::sched::lanes`]), and one load while the lanes are empty.
    fn lanes_have_work(&self) -> bool {
        let lanes = self.registry.lanes();
        lanes.busy()
            && (0..2).any(|lane| !self.lane_deques[lane].is_empty() || lanes.has_work(lane))
    }

    /// Whether lane `priority` holds a job this worker could take.
    fn lane_has_work(&self, priority: Priority) -> bool {
        match priority.lane() {
            None => {
                !self.deque.is_empty()
                    || self.registry.has_injected()
                    || self.registry.stealers().iter().any(|s| !s.is_empty())
            }
            Some(lane) => {
                !self.lane_deques[lane].is_empty() || self.registry.lanes().has_work(lane)
            }
        }
    }

    /// Takes a job of lane `priority`: from this worker's own deque, else
    /// the lane's injector (with a batch), else another worker's deque of
    /// that lane. Only a spinner may (see [`crate::sched::worker_loop`]).
    fn take_lane(&self, priority: Priority, spinning: &Spinning<'_>) -> Option<JobRef> {
        match priority.lane() {
            None => self
                .deque
                .pop()
                .or_else(|| self.take_injected(spinning))
                .or_else(|| self.steal(spinning)),
            Some(lane) => self
                .pop_lane(lane)
                .or_else(|| self.take_injected_lane(lane, spinning))
                .or_else(|| self.steal_lane(lane, spinning)),
        }
    }

    /// [`take_lane`](Self::take_lane), the oldest job first: the lane's
    /// injector before the deques (the starvation bound's take).
    fn take_lane_oldest(&self, priority: Priority, spinning: &Spinning<'_>) -> Option<JobRef> {
        match priority.lane() {
            None => self
                .take_injected(spinning)
                .or_else(|| self.steal(spinning))
                .or_else(|| self.deque.pop()),
            Some(lane) => self
                .take_injected_lane(lane, spinning)
                .or_else(|| self.steal_lane(lane, spinning))
                .or_else(|| self.pop_lane(lane)),
        }
    }

    /// The look for work while other lanes hold jobs: the most urgent lane
    /// first, except after [`ESCAPE_EVERY`]` - 1` starts in a row that
    /// passed over a less urgent job: then a lower lane's oldest job (see
    /// [`crate::sched::lanes`]).
    fn take_by_priority(&self, spinning: &Spinning<'_>) -> Option<JobRef> {
        let passed = self.passed_over.get();
        if passed + 1 >= ESCAPE_EVERY {
            if let Some(job) = self.take_escape(spinning) {
                self.passed_over.set(0);
                return Some(job);
            }
        }
        for priority in Priority::URGENT_FIRST {
            if let Some(job) = self.take_lane(priority, spinning) {
                let passes_over = Priority::URGENT_FIRST
                    .into_iter()
                    .any(|lower| lower < priority && self.lane_has_work(lower));
                self.passed_over
                    .set(if passes_over { passed + 1 } else { 0 });
                return Some(job);
            }
        }
        None
    }

    /// The starvation bound's take: the oldest job of a lane below the
    /// most urgent one that holds jobs, `Normal` and `Low` taking turns.
    fn take_escape(&self, spinning: &Spinning<'_>) -> Option<JobRef> {
        let top = Priority::URGENT_FIRST
            .into_iter()
            .find(|&priority| self.lane_has_work(priority))?;
        let low_turn = self.low_turn.get();
        self.low_turn.set(!low_turn);
        let turns = if low_turn {
            [Priority::Low, Priority::Normal]
        } else {
            [Priority::Normal, Priority::Low]
        };
        turns
            .into_iter()
            .filter(|&priority| priority < top)
            .find_map(|priority| self.take_lane_oldest(priority, spinning))
    }

    /// Takes the oldest job of lane `lane`'s injector and a batch behind
    /// it. Only a spinner may (see [`crate::sched::worker_loop`]).
    fn take_injected_lane(&self, lane: usize, _spinning: &Spinning<'_>) -> Option<JobRef> {
        let lanes = self.registry.lanes();
        if lanes.injector(lane).is_empty() {
            return None;
        }
        let now = Instant::now();
        let job = lanes
            .injector(lane)
            .try_pop_batch(&self.lane_deques[lane], self.injector_batch(now));
        let job = lanes.took(job)?;
        self.last_batch.set(Some((now, self.jobs_run.get())));
        Some(job)
    }

    /// Steals a batch of lane `lane` from another worker (see
    /// [`steal`](Self::steal)).
    fn steal_lane(&self, lane: usize, _spinning: &Spinning<'_>) -> Option<JobRef> {
        let job = self.steal_from(
            self.registry.lanes().stealers(lane),
            &self.lane_deques[lane],
        );
        self.registry.lanes().took(job)
    }

    /// Steals a batch from another worker, starting at a random victim; the
    /// rest of the batch lands in this worker's deque, so only a spinner
    /// may (see [`crate::sched::worker_loop`]).
    fn steal(&self, _spinning: &Spinning<'_>) -> Option<JobRef> {
        self.steal_from(self.registry.stealers(), &self.deque)
    }

    /// Steals a batch from one of `stealers` into `dest`, starting at a
    /// random victim.
    fn steal_from(&self, stealers: &[Stealer<JobRef>], dest: &Worker<JobRef>) -> Option<JobRef> {
        let n = stealers.len();
        if n <= 1 {
            return None;
        }
        loop {
            let mut retry = false;
            let start = self.next_random() % n;
            for victim in (start..n).chain(0..start) {
                if victim == self.index {
                    continue;
                }
                match stealers[victim].steal_batch_and_pop(dest) {
                    Steal::Success(job) => {
                        self.registry.stats().stole(self.index);
                        return Some(job);
                    }
                    Steal::Empty => {}
                    Steal::Retry => retry = true,
                }
            }
            if !retry {
                return None;
            }
            sync::spin_loop();
        }
    }

    /// xorshift64: a cheap victim picker; quality hardly matters.
    fn next_random(&self) -> usize {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x as usize
    }
}

impl Queues for WorkerThread {
    type Job = JobRef;

    fn sleep(&self) -> &Sleep {
        &self.registry.sleep
    }

    fn index(&self) -> usize {
        self.index
    }

    /// While other lanes hold jobs, finds nothing: the choice between
    /// lanes is `take_shared`'s.
    #[inline]
    fn pop_own(&self) -> Option<JobRef> {
        if self.registry.lanes().busy() {
            return None;
        }
        self.deque.pop()
    }

    fn take_shared(&self, spinning: &Spinning<'_>) -> Option<JobRef> {
        if self.registry.lanes().busy() {
            return self.take_by_priority(spinning);
        }
        self.take_injected(spinning)
            .or_else(|| self.steal(spinning))
    }

    fn has_work(&self) -> bool {
        !self.deque.is_empty()
            || self.registry.has_injected()
            || self.registry.stealers().iter().any(|s| !s.is_empty())
            || self.lanes_have_work()
    }

    #[inline]
    fn execute(&self, job: JobRef) {
        WorkerThread::execute(self, job);
    }

    fn on_idle(&self) {
        if self.held.get() != 0 {
            self.wake_held();
        }
        self.registry.request_share(self.index);
    }

    fn on_sleep(&self, asleep: bool) {
        self.registry.stats().sleeping(self.index, asleep);
        if asleep {
            // Not blocked in a job, whatever the detector last saw.
            self.not_blocked();
        }
    }

    fn spin_budget(&self) -> Duration {
        self.spin.budget()
    }

    fn spin_gap(&self, gap: Duration) {
        self.spin.record(gap);
    }

    #[inline]
    fn place_wanted(&self) -> bool {
        self.baton().is_wanted()
    }

    #[inline]
    fn place_wanted_by_returning(&self) -> bool {
        self.baton().first_is_returning()
    }

    fn pass_place(&self) -> bool {
        // This thread has frames on the place (it is the home thread, or
        // inside a job): it waits for the place back.
        let stand_in = self.stand_in_holds.get();
        if self.baton().pass(true) {
            self.take_place_back(false, stand_in);
        }
        false
    }

    fn may_leave(&self) -> bool {
        self.baton().nobody_away()
    }
}

/// A worker's queues as one particular loop sees them: with calls around
/// each job it runs and around a wait for the place (see
/// [`WorkerThread::wait_until_deadline_stepping_out`]), or as a stand-in's,
/// for which passing the place on ends the turn (it has no frames on it).
struct LoopQueues<'a, O, I> {
    worker: &'a WorkerThread,
    step_out: O,
    step_in: I,
    /// A stand-in's: set once it passed the place to a thread that wanted
    /// it back.
    stand_in: Option<&'a Cell<bool>>,
}

impl<'a> LoopQueues<'a, fn(), fn()> {
    fn stand_in(worker: &'a WorkerThread, passed: &'a Cell<bool>) -> Self {
        LoopQueues {
            worker,
            step_out: || {},
            step_in: || {},
            stand_in: Some(passed),
        }
    }
}

impl<O: Fn(), I: Fn()> Queues for LoopQueues<'_, O, I> {
    type Job = JobRef;

    fn sleep(&self) -> &Sleep {
        self.worker.sleep()
    }

    fn index(&self) -> usize {
        self.worker.index
    }

    fn pop_own(&self) -> Option<JobRef> {
        Queues::pop_own(self.worker)
    }

    fn take_shared(&self, spinning: &Spinning<'_>) -> Option<JobRef> {
        self.worker.take_shared(spinning)
    }

    fn has_work(&self) -> bool {
        self.worker.has_work()
    }

    fn execute(&self, job: JobRef) {
        (self.step_out)();
        self.worker.execute(job);
        (self.step_in)();
    }

    fn on_idle(&self) {
        self.worker.on_idle();
    }

    fn on_sleep(&self, asleep: bool) {
        self.worker.on_sleep(asleep);
    }

    fn spin_budget(&self) -> Duration {
        self.worker.spin_budget()
    }

    fn spin_gap(&self, gap: Duration) {
        self.worker.spin_gap(gap);
    }

    fn place_wanted(&self) -> bool {
        self.worker.place_wanted()
    }

    fn place_wanted_by_returning(&self) -> bool {
        self.worker.place_wanted_by_returning()
    }

    fn pass_place(&self) -> bool {
        if let Some(passed) = self.stand_in {
            let left = self.worker.baton().pass(false);
            passed.set(left);
            return left;
        }
        // Away from the place, this thread cannot collect a queue slot.
        (self.step_out)();
        self.worker.pass_place();
        (self.step_in)();
        false
    }
}

/// Clears the thread's current worker when [`WorkerThread::run`] ends,
/// however it ends. Ending by unwinding is a bug in offload (jobs and hooks
/// run under `catch_unwind`), after which the pool's counts cannot be
/// trusted and `shutdown` could wait for ever: so it aborts the process, as
/// rayon does. (Not under loom, where a model's failure unwinds from here.)
struct CurrentGuard;

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(ptr::null()));
        if !cfg!(loom) && std::thread::panicking() {
            eprintln!("offload: a worker's loop panicked, which is a bug in offload; aborting");
            std::process::abort();
        }
    }
}

/// Runs a user hook, containing its panic: a hook failure must not take a
/// worker (and the pool's thread count) down. The default panic hook has
/// already reported it.
pub(crate) fn run_hook(hook: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)) {
        drop_quietly(payload);
    }
}

/// The calling thread's parker, for a thread outside every pool that must
/// block (`Task::wait`, `install`, `join` from outside, `shutdown`): made
/// once per thread, so blocking allocates nothing. A token left on it by a
/// wake-up that came after an earlier wait ended only makes one later
/// `park` return early; every caller re-checks its condition in a loop.
pub(crate) fn thread_parker() -> StdArc<Parker> {
    #[cfg(not(loom))]
    {
        std::thread_local! {
            static PARKER: StdArc<Parker> = StdArc::new(Parker::for_current_thread());
        }
        // During thread-local destruction, fall back to a fresh parker. Its
        // first `park` records the thread with `thread::current()`, which
        // std supports in `thread_local!` destructors since 2024
        // (rust-lang/rust#127912; `tests/wait.rs` waits from one).
        PARKER
            .try_with(StdArc::clone)
            .unwrap_or_else(|_| StdArc::new(Parker::new()))
    }
    // Under loom a parker holds loom primitives, which must not outlive
    // one execution: make a fresh one each time.
    #[cfg(loom)]
    StdArc::new(Parker::new())
}

/// Waits outside the pool until `done()` or `deadline`: spins `rounds`
/// rounds of [`worker_loop::pause`] (a short job's result often arrives
/// within microseconds, sooner than a futex wake-up), then parks on
/// `parker`, which the completion unparks. A Task's waiter spins
/// [`worker_loop::SPIN_ROUNDS`] (spin hints only, never a yield); a fork-join caller
/// [`worker_loop::FORK_JOIN_SPIN_ROUNDS`] (hints, then yields, as an idle
/// worker does).
pub(crate) fn spin_then_park(
    parker: &Parker,
    done: impl Fn() -> bool,
    deadline: Option<Instant>,
    rounds: u32,
) {
    for round in 0..rounds {
        if done() {
            return;
        }
        worker_loop::pause(round);
    }
    park_until(parker, done, deadline);
}

/// Parks on `parker` until `done()` or `deadline`.
fn park_until(parker: &Parker, done: impl Fn() -> bool, deadline: Option<Instant>) {
    while !done() {
        match deadline {
            None => parker.park(),
            Some(deadline) if Instant::now() >= deadline => return,
            Some(deadline) => {
                parker.park_deadline(deadline);
            }
        }
    }
}

/// Runs `f` with `registry` as the pool that the free functions reach when
/// no worker runs on this thread (module docs); puts the previous one back
/// afterwards, also on a panic.
pub(crate) fn run_away_from<R>(registry: &Arc<Registry>, f: impl FnOnce() -> R) -> R {
    struct Restore(*const Arc<Registry>);
    impl Drop for Restore {
        fn drop(&mut self) {
            replace_away(self.0);
        }
    }
    let _restore = Restore(replace_away(registry));
    f()
}

/// Sets the pool that the free functions reach when no worker runs on
/// this thread (null: none), and returns the previous one: for a thread
/// back early from `blocking`, until it is on its place again (see
/// [`WorkerThread::blocking`]). The caller keeps `registry` alive until it
/// puts the previous one back.
fn replace_away(registry: *const Arc<Registry>) -> *const Arc<Registry> {
    AWAY.with(|away| away.replace(registry))
}

/// The pool of the thread away from it, if any (see [`run_away_from`]).
pub(crate) fn with_away<R>(f: impl FnOnce(Option<&Arc<Registry>>) -> R) -> R {
    let away = AWAY.with(Cell::get);
    // SAFETY: AWAY is non-null only inside `run_away_from`, whose caller
    // keeps the registry alive (a `WorkerThread` on this thread's stack, or
    // a spare's own handle) for the call, or between `replace_away` calls
    // of a thread back early from `blocking`, whose `WorkerThread` (which
    // holds the registry) outlives them (the thread has frames on it); and
    // this borrow cannot escape `f`.
    f(unsafe { away.as_ref() })
}
