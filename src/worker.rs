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

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll, Waker};

use crate::error::JoinError;
use crate::job::{JobRef, StackJob};
use crate::latch::Latch;
use crate::queue::{Steal, Worker};
use crate::registry::Registry;
use crate::sync::{self, Arc, Parker, StdArc};
use crate::task::Task;
use crate::unwind::drop_quietly;

/// Idle rounds before sleeping. Round `r` pauses for `2^min(r, 6)` spin
/// hints, so the whole spin is ~700 hints plus 16 looks for work: a few tens
/// of microseconds. Under loom spinning only multiplies interleavings.
const SPIN_ROUNDS: u32 = if cfg!(loom) { 0 } else { 16 };

sync::thread_local! {
    static CURRENT: Cell<*const WorkerThread> = Cell::new(ptr::null());
}

/// The state of one worker thread, on that thread's stack.
pub(crate) struct WorkerThread {
    index: usize,
    registry: Arc<Registry>,
    deque: Worker<JobRef>,
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
        let mut idle_rounds = 0;
        loop {
            // Read the flag before looking for work, so that a job pushed
            // before termination is found before we give up.
            let terminating = self.registry.is_terminating();
            if let Some(job) = self.find_work() {
                self.execute(job);
                idle_rounds = 0;
            } else if terminating {
                return;
            } else if idle_rounds < SPIN_ROUNDS {
                pause(idle_rounds);
                idle_rounds += 1;
            } else {
                idle_rounds = 0;
                // Notified or not, the loop looks for work next.
                let _notified = self.registry.sleep.sleep(self.index, || {
                    self.has_work() || self.registry.is_terminating()
                });
            }
        }
    }

    /// Runs jobs until none is left anywhere (the last worker's exit).
    pub(crate) fn run_until_idle(&self) {
        while let Some(job) = self.find_work() {
            self.execute(job);
        }
    }

    /// Runs other jobs until `done()` holds, sleeping when there are none.
    /// Whoever makes `done()` true must then unpark this worker's parker.
    pub(crate) fn wait_until(&self, done: impl Fn() -> bool) {
        let mut idle_rounds = 0;
        let mut notified = false;
        while !done() {
            notified = false;
            if let Some(job) = self.find_work() {
                self.execute(job);
                idle_rounds = 0;
            } else if idle_rounds < SPIN_ROUNDS {
                pause(idle_rounds);
                idle_rounds += 1;
            } else {
                idle_rounds = 0;
                notified = self
                    .registry
                    .sleep
                    .sleep(self.index, || done() || self.has_work());
            }
        }
        if notified && self.has_work() {
            // We were chosen for a job but leave without looking for it:
            // hand the wake-up to another sleeper.
            self.registry.sleep.notify_one();
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

    /// Pops the most recent job of this worker's own deque.
    #[inline]
    pub(crate) fn pop(&self) -> Option<JobRef> {
        self.deque.pop()
    }

    fn find_work(&self) -> Option<JobRef> {
        self.pop()
            .or_else(|| self.registry.steal_injected(Some(&self.deque)))
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

/// The growing pause of idle round `round`.
fn pause(round: u32) {
    for _ in 0..1u32 << round.min(6) {
        sync::spin_loop();
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
            let parker = StdArc::new(Parker::new());
            let job = StackJob::new(run_on_worker, Latch::new(&parker));
            // SAFETY: `job` stays on this stack until its latch is set.
            registry.inject(unsafe { job.as_job_ref() });
            while !job.latch.probe() {
                parker.park();
            }
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
        None => StdArc::new(Parker::new()),
    };
    let waker = Waker::from(StdArc::clone(&parker));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut *task).poll(&mut cx) {
            return output;
        }
        match worker {
            Some(worker) => worker.wait_until(|| task.is_finished()),
            None => parker.park(),
        }
    }
}
