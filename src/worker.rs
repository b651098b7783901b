//! The worker loop: find work, run it, spin a little, sleep.
//!
//! Each worker owns a LIFO deque. It looks for work in this order:
//! 1. its own deque (the most recently pushed job: hot in cache);
//! 2. the injector (submissions from outside, first come first served),
//!    moving a batch to its deque;
//! 3. the other workers' deques, starting at a random victim, stealing a
//!    batch.
//!
//! With nothing found it retries for a bounded number of rounds with growing
//! pauses (a few tens of microseconds in all), then sleeps (see
//! [`crate::sleep`]). A worker that waits for something (a `join` half, an
//! `install` on another pool, a Task it `wait`s on) runs the same loop until
//! its condition holds, so waiting never blocks a worker that has work.
//!
//! A thread-local pointer tells pool code whether it runs on a worker, and
//! of which pool: spawns from a worker go to its own deque, and `join` /
//! `scope` run on the current worker.
//!
//! # Private join halves and share requests
//!
//! The second half of a `join` does not go to the shared deque: it goes to
//! the worker's *private* stack, which no other thread reads, so a join
//! costs a few plain memory operations (see [`crate::join`]). Work is shared
//! on demand instead (private deques with steal requests, after Acar,
//! Charguéraud and Rainey, PPoPP 2013, and in the spirit of heartbeat
//! scheduling):
//!
//! - a worker that finds no work raises the `share_requested` flag of every
//!   other worker (a load first, so a raised flag is not written again);
//! - a worker pushing a join half, and every [`SHARE_CHECK_EVERY`]th
//!   inline join, checks its own flag (one Relaxed load of a cache line that only changes when
//!   somebody is idle); if raised, it clears it and moves its **oldest**
//!   private half, the largest piece of work it has, to its shared deque,
//!   waking a sleeper for it;
//! - a worker that must wait (for a stolen half, a scope, a Task) first
//!   moves all its private halves to its shared deque, so none is stranded
//!   behind a blocked worker.
//!
//! A flag is only a hint: losing one costs parallelism, never a job, since a
//! private half is always run by its owner when nobody took it. When every
//! worker is busy nobody asks, and joins stay private.

use std::cell::{Cell, UnsafeCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll, Waker};

use crate::error::JoinError;
use crate::job::{JobRef, StackJob};
use crate::join::{PRIVATE_DEPTH, SHARE_CHECK_EVERY};
use crate::latch::Latch;
use crate::parker::Parker;
use crate::queue::{Steal, Worker};
use crate::registry::Registry;
use crate::sync::{self, Arc, StdArc};
use crate::task::Task;
use crate::unwind::drop_quietly;

/// Idle rounds before sleeping (see [`pause`]): about 10–20 µs on an idle
/// machine. Under loom spinning only multiplies interleavings.
const SPIN_ROUNDS: u32 = if cfg!(loom) { 0 } else { 16 };

/// Rounds that pause with spin hints; later rounds yield the CPU instead.
const SPIN_HINT_ROUNDS: u32 = 7;

sync::thread_local! {
    static CURRENT: Cell<*const WorkerThread> = const { Cell::new(ptr::null()) };
}

/// Where a worker is between finding no work and falling asleep.
#[derive(Debug, Default)]
struct IdleState {
    /// Rounds spun so far.
    rounds: u32,
    /// Whether this worker is counted in the sleep state's spinners.
    spinning: bool,
}

/// The state of one worker thread, on that thread's stack.
pub(crate) struct WorkerThread {
    index: usize,
    registry: Arc<Registry>,
    deque: Worker<JobRef>,
    /// Join halves not shared yet: `private[shared..]`, oldest first. Only
    /// this thread touches it (see module docs).
    private: UnsafeCell<Vec<JobRef>>,
    /// How many of the oldest entries of `private` were moved to `deque`.
    shared: Cell<usize>,
    /// Joins so far, to pick the private ones (see [`crate::join`]).
    joins: Cell<u32>,
    rng: Cell<u64>,
}

impl WorkerThread {
    /// The worker running on this thread, if any.
    #[inline]
    pub(crate) fn current<'a>() -> Option<&'a WorkerThread> {
        let ptr = CURRENT.with(Cell::get);
        // SAFETY: CURRENT is set only while `WorkerThread::run` is on this
        // thread's stack (it clears it before returning), and the reference
        // cannot leave the thread (WorkerThread is !Sync via Cell).
        unsafe { ptr.as_ref() }
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub(crate) fn parker(&self) -> &StdArc<Parker> {
        self.registry.sleep.parker(self.index)
    }

    /// The body of a worker thread.
    pub(crate) fn run(index: usize, registry: Arc<Registry>, deque: Worker<JobRef>) {
        let seed = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(index as u64 + 1) | 1;
        let worker = WorkerThread {
            index,
            registry,
            deque,
            private: UnsafeCell::new(Vec::with_capacity(64)),
            shared: Cell::new(0),
            joins: Cell::new(0),
            rng: Cell::new(seed),
        };
        CURRENT.with(|current| current.set(&worker));
        if let Some(hook) = &worker.registry.on_start {
            run_hook(|| hook(index));
        }
        worker.main_loop();
        if let Some(hook) = &worker.registry.on_stop {
            run_hook(|| hook(index));
        }
        worker.registry.workers_exited(1, Some(&worker));
        CURRENT.with(|current| current.set(ptr::null()));
    }

    fn main_loop(&self) {
        let mut idle = IdleState::default();
        loop {
            // Read the flag before looking for work, so that a job pushed
            // before termination is found before we give up.
            let terminating = self.registry.is_terminating();
            if let Some(job) = self.find_work() {
                self.end_idle(&mut idle);
                self.execute(job);
            } else if terminating {
                self.end_idle(&mut idle);
                return;
            } else {
                self.idle_step(&mut idle, || self.registry.is_terminating());
            }
        }
    }

    /// Runs jobs until none is left anywhere (the last worker's exit). It
    /// waits for its turn at the injector rather than skip it while another
    /// thread consumes: this drain must see every linked job.
    pub(crate) fn run_until_idle(&self) {
        while let Some(job) = self
            .pop()
            .or_else(|| self.registry.drain_injected())
            .or_else(|| self.steal())
        {
            self.execute(job);
        }
    }

    /// Runs other jobs until `done()` holds, sleeping when there are none.
    /// Whoever makes `done()` true must then unpark this worker's parker.
    pub(crate) fn wait_until(&self, done: impl Fn() -> bool) {
        self.share_all_private();
        let mut idle = IdleState::default();
        while !done() {
            if let Some(job) = self.find_work() {
                self.end_idle(&mut idle);
                self.execute(job);
            } else {
                self.idle_step(&mut idle, &done);
            }
        }
        // A notifier may have counted on this worker (woken it, or skipped
        // a wake-up because it spun) for a job it now leaves behind: ending
        // the spin hands that job on (see `Sleep::stop_spinning`).
        self.end_idle(&mut idle);
    }

    /// One step of idleness: a round of spinning or, once the spin is over,
    /// a sleep until woken (unless the queues or `wake()` show something
    /// after the worker announced itself). Either way the worker is still a
    /// spinner afterwards, until [`end_idle`](Self::end_idle).
    fn idle_step(&self, idle: &mut IdleState, wake: impl Fn() -> bool) {
        if !idle.spinning {
            idle.spinning = true;
            self.registry.sleep.start_spinning();
        }
        self.registry.request_share(self.index);
        #[allow(clippy::absurd_extreme_comparisons)] // SPIN_ROUNDS is 0 under loom
        if idle.rounds < SPIN_ROUNDS {
            pause(idle.rounds);
            idle.rounds += 1;
        } else {
            idle.rounds = 0;
            self.registry
                .sleep
                .sleep(self.index, || wake() || self.has_work());
        }
    }

    /// Leaves idleness: found work, or the awaited condition holds.
    #[inline]
    fn end_idle(&self, idle: &mut IdleState) {
        idle.rounds = 0;
        if idle.spinning {
            idle.spinning = false;
            self.registry.sleep.stop_spinning(|| self.has_work());
        }
    }

    #[inline]
    pub(crate) fn execute(&self, job: JobRef) {
        job.execute(self.registry.execution_mode());
    }

    /// Pushes `job` on this worker's deque and wakes a sleeper to steal it.
    #[inline]
    pub(crate) fn push(&self, job: JobRef) {
        self.deque.push(job);
        self.registry.sleep.notify_one();
    }

    /// Whether the next join runs inline (see [`crate::join`]). Every
    /// [`SHARE_CHECK_EVERY`]th inline join looks for a share request and,
    /// if there is one, shares the oldest private half and makes this join
    /// a private one instead.
    #[inline]
    pub(crate) fn next_join_is_inline(&self) -> bool {
        // SAFETY: as in `push_private`.
        let private = unsafe { (*self.private.get()).len() } - self.shared.get();
        if private < PRIVATE_DEPTH {
            return false;
        }
        let joins = self.joins.get().wrapping_add(1);
        self.joins.set(joins);
        if joins % SHARE_CHECK_EVERY == 0 && self.registry.share_requested(self.index) {
            self.share_oldest_private();
            return false;
        }
        true
    }

    /// Pushes a join half on the private stack; shares the oldest private
    /// half if an idle worker asked (see module docs).
    #[inline]
    pub(crate) fn push_private(&self, job: JobRef) {
        // SAFETY: `private` is touched only by this thread, and by none of
        // our callees while this borrow lives.
        unsafe { (*self.private.get()).push(job) };
        if self.registry.share_requested(self.index) {
            self.share_oldest_private();
        }
    }

    /// Takes `job` back from the private stack if it is still there (on
    /// top). If it is not, it was shared, and so was everything older: the
    /// private stack is then empty.
    #[inline]
    pub(crate) fn pop_private(&self, job: JobRef) -> bool {
        // SAFETY: as in `push_private`.
        let private = unsafe { &mut *self.private.get() };
        if private.len() > self.shared.get() && private.last() == Some(&job) {
            private.pop();
            true
        } else {
            debug_assert_eq!(private.len(), self.shared.get(), "join halves out of order");
            private.clear();
            self.shared.set(0);
            false
        }
    }

    #[cold]
    fn share_oldest_private(&self) {
        self.registry.clear_share_request(self.index);
        // SAFETY: as in `push_private`.
        let private = unsafe { &*self.private.get() };
        let oldest = self.shared.get();
        if let Some(&job) = private.get(oldest) {
            self.shared.set(oldest + 1);
            self.push(job);
        }
    }

    /// Raises this worker's share request again (see
    /// [`Registry::restore_share_request`]).
    #[cold]
    pub(crate) fn restore_share_request(&self) {
        self.registry.restore_share_request(self.index);
    }

    /// Moves every private join half to the shared deque (before waiting).
    fn share_all_private(&self) {
        // SAFETY: as in `push_private`.
        let private = unsafe { &*self.private.get() };
        let first = self.shared.get();
        if first == private.len() {
            return;
        }
        for &job in &private[first..] {
            self.deque.push(job);
        }
        self.shared.set(private.len());
        self.registry.sleep.notify_one();
    }

    /// Pops the most recent job of this worker's own deque.
    #[inline]
    pub(crate) fn pop(&self) -> Option<JobRef> {
        self.deque.pop()
    }

    fn find_work(&self) -> Option<JobRef> {
        self.pop()
            .or_else(|| self.registry.steal_injected(&self.deque))
            .or_else(|| self.steal())
    }

    /// Steals a batch from another worker, starting at a random victim.
    fn steal(&self) -> Option<JobRef> {
        let stealers = self.registry.stealers();
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
                match stealers[victim].steal_batch_and_pop(&self.deque) {
                    Steal::Success(job) => return Some(job),
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

    /// Whether any queue this worker looks in has a job (sleep re-check).
    fn has_work(&self) -> bool {
        !self.deque.is_empty()
            || self.registry.has_injected()
            || self.registry.stealers().iter().any(|s| !s.is_empty())
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

/// Runs a user hook, containing its panic: a hook failure must not take a
/// worker (and the pool's thread count) down. The default panic hook has
/// already reported it.
fn run_hook(hook: impl FnOnce()) {
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

/// Waits outside the pool until `done()`: spins as an idle worker does (a
/// short job's result often arrives within microseconds, sooner than a
/// futex wake-up), then parks on `parker`, which the completion unparks.
fn spin_then_park(parker: &Parker, done: impl Fn() -> bool) {
    #[allow(clippy::reversed_empty_ranges)] // SPIN_ROUNDS is 0 under loom
    for round in 0..SPIN_ROUNDS {
        if done() {
            return;
        }
        pause(round);
    }
    while !done() {
        parker.park();
    }
}

/// The pause of idle round `round`: `2^round` spin hints for the first
/// [`SPIN_HINT_ROUNDS`] rounds (127 hints in all), then a `yield_now` per
/// round, so that a spinning thread on an oversubscribed machine lets the
/// thread it waits for run.
fn pause(round: u32) {
    if round < SPIN_HINT_ROUNDS {
        for _ in 0..1u32 << round {
            sync::spin_loop();
        }
    } else {
        sync::thread::yield_now();
    }
}

/// Runs `op` on a worker of `registry` and returns its result, blocking the
/// caller (or, on a worker of another pool, running that pool's jobs) until
/// it is done. Panics in `op` are re-raised here.
pub(crate) fn in_worker<OP, R>(registry: &Arc<Registry>, op: OP) -> R
where
    OP: FnOnce(&WorkerThread) -> R + Send,
    R: Send,
{
    let current = WorkerThread::current();
    if let Some(worker) = current {
        if worker.registry().is(registry) {
            return op(worker);
        }
    }
    assert!(
        !registry.is_terminating(),
        "offload: the pool has been shut down"
    );
    // If the pool shuts down before a worker takes the job, the submitter
    // itself cancels it (see `Registry::inject`) and this panics on its
    // thread, which re-raises the panic to the caller below.
    let target = Arc::clone(registry);
    let run_on_worker = move || {
        let worker = WorkerThread::current()
            .filter(|worker| worker.registry().is(&target))
            .expect("offload: the pool was shut down before this operation could run");
        op(worker)
    };
    match current {
        // On a worker of another pool: keep that worker busy while we wait.
        Some(worker) => {
            let job = StackJob::new(run_on_worker, Latch::new(worker.parker()));
            // SAFETY: `job` stays on this stack until its latch is set.
            registry.inject(unsafe { job.as_job_ref() });
            worker.wait_until(|| job.latch.probe());
            job.into_result()
        }
        // On any other thread: park until done.
        None => {
            let parker = thread_parker();
            let job = StackJob::new(run_on_worker, Latch::new(&parker));
            // SAFETY: `job` stays on this stack until its latch is set.
            registry.inject(unsafe { job.as_job_ref() });
            spin_then_park(&parker, || job.latch.probe());
            job.into_result()
        }
    }
}

/// Blocks until `task` resolves (see [`Task::wait`]).
pub(crate) fn block_on<T>(task: &mut Task<T>) -> Result<T, JoinError> {
    if let Some(output) = task.try_take() {
        return output;
    }
    let worker = WorkerThread::current();
    let parker = match worker {
        Some(worker) => StdArc::clone(worker.parker()),
        None => thread_parker(),
    };
    let waker = Waker::from(StdArc::clone(&parker));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut *task).poll(&mut cx) {
            return output;
        }
        match worker {
            Some(worker) => worker.wait_until(|| task.is_finished()),
            None => spin_then_park(&parker, || task.is_finished()),
        }
    }
}
