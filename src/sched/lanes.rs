//! The lanes that queue `High` and `Low` jobs beside the `Normal` queues
//! (see [`Priority`]), the order in which a free worker looks at them, the
//! starvation bound, and the running priority that new work inherits.
//!
//! A pool has one lane per priority. The `Normal` lane is the pool's
//! original queues (the injector and one deque per worker); the `High` and
//! `Low` lanes, [`Lanes`], are the same again: an injector each, and a
//! deque each per worker (`WorkerThread`'s `lane_deques`). A job's priority
//! is in its header (see [`crate::task::job`]) and decides its lane when it is
//! pushed: a spawn through [`Pool::with_priority`](crate::Pool::with_priority),
//! or a `join` half, `scope` job or `offload::spawn` made while a job of
//! that priority runs (the *running priority*: a worker's `running` cell,
//! or on a thread that runs jobs without a worker's place, the thread-local
//! [`RUNNING`]).
//!
//! # Which job a free worker starts
//!
//! The highest lane that holds a job, looked at in the order the worker
//! loop uses for one lane (own deque, then the lane's injector, then the
//! other workers' deques of that lane), with one exception that bounds
//! starvation: a worker whose last [`ESCAPE_EVERY`]` - 1` starts in a row
//! each passed over a job of a less urgent lane takes, as its next start,
//! the oldest job of a lane below the most urgent busy one (the lane's
//! injector before the deques), `Normal` and `Low` taking turns (a lane
//! with nothing queued passes its turn on). A start that passes nothing
//! over (the least urgent busy lane's) resets the run.
//!
//! So under a permanent flood of more urgent jobs each less urgent lane
//! still gets at least one start in `2 × ESCAPE_EVERY` of each worker, and
//! one in `ESCAPE_EVERY` when it is the only one waiting; while the more
//! urgent jobs are not a flood (a request now and then beside a batch),
//! the runs stay short, the rule never fires, and an urgent job waits only
//! for the first worker to finish its job. Counting runs rather than every
//! eighth start is what keeps that wait at one job: with a plain count, one
//! urgent job in eight would find its worker's turn taken by the batch.
//!
//! # The fast path: a pool whose jobs are all `Normal`
//!
//! [`Lanes::queued`] counts the jobs in the `High` and `Low` lanes: it is
//! incremented before a push and decremented after a take. While it reads
//! zero a worker looks only at the `Normal` queues, as a pool without
//! priorities does: the price of priorities there is one Relaxed load of a
//! cache line that nobody writes, per look for work.
//!
//! Why a Relaxed load is enough: the count is a hint for where to look
//! first, never the last word on whether work exists. A stale zero costs
//! at most one `Normal` job started before a `High` one. The sleep
//! protocol's re-check ([`crate::sched::sleep`]), which decides whether a worker
//! may park, reads the count after its `fence(SeqCst)`: a pusher increments
//! it before its push and its own fence, so a re-check whose fence follows
//! the pusher's in the total order sees the increment (or a later value),
//! and one whose fence precedes it is the pusher's to wake. Nor can the
//! count read zero while a job waits in a lane: each job's decrement comes
//! after its increment in the count's modification order (the taker saw
//! the job through the queue's Acquire, which the push's Release
//! published, after the increment), so every value from the increment on
//! counts the job until it is taken.
//!
//! # Backpressure
//!
//! [`Builder::max_queued`](crate::Builder::max_queued) bounds the jobs of
//! every lane together: the bound is on the memory and the wait a pool
//! lets pile up, which every queued job costs whatever its priority. A
//! separate bound per lane would let a pool hold three times its bound.

use std::cell::Cell;
use std::fmt;

use crossbeam_utils::CachePadded;

use crate::job_priority::Priority;
use crate::sched::deque::{Steal, Stealer};
use crate::sched::injector::Injector;
use crate::sync::{self, AtomicUsize, Ordering};
use crate::task::job::JobRef;

/// A worker's `ESCAPE_EVERY`th start in a row that would pass over a less
/// urgent job takes that lane's oldest job instead (module docs). 8: a
/// flood of urgent jobs keeps 7 starts in 8, so it loses at most an eighth
/// of its throughput to the batch, while the batch under that flood still
/// advances at one job in 8 (16 for each of two lower lanes) per worker,
/// with 1 ms background jobs at least about 60 a second per worker.
pub(crate) const ESCAPE_EVERY: u32 = 8;

/// The `High` and `Low` lanes' shared queues and their count (module docs).
pub(crate) struct Lanes {
    /// Jobs in the `High` and `Low` lanes' queues. Padded: every worker
    /// reads it at each look for work; only lane pushes and takes write it.
    queued: CachePadded<AtomicUsize>,
    injectors: [Injector; 2],
    /// Per lane, the workers' deques of that lane.
    stealers: [Box<[Stealer<JobRef>]>; 2],
}

impl Lanes {
    pub(crate) fn new(stealers: [Box<[Stealer<JobRef>]>; 2]) -> Self {
        Self {
            queued: CachePadded::new(AtomicUsize::new(0)),
            injectors: [Injector::new(), Injector::new()],
            stealers,
        }
    }

    /// Whether a job may wait in the `High` or `Low` lane (module docs).
    #[inline]
    pub(crate) fn busy(&self) -> bool {
        // Relaxed: a hint where to look first; the sleep protocol's
        // re-checks read it after their fence (module docs).
        self.queued.load(Ordering::Relaxed) != 0
    }

    /// Counts a job about to be pushed on lane `lane`.
    #[inline]
    pub(crate) fn pushing(&self) {
        // Relaxed: ordered before the push, and for the sleep protocol by
        // the pusher's fence that follows (module docs).
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A lane job taken, if any: uncounts it.
    #[inline]
    pub(crate) fn took(&self, job: Option<JobRef>) -> Option<JobRef> {
        if job.is_some() {
            // Relaxed: the take's Acquire already orders it after the
            // job's increment (module docs); nothing is published through it.
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        job
    }

    /// Lane `lane`'s injector.
    #[inline]
    pub(crate) fn injector(&self, lane: usize) -> &Injector {
        &self.injectors[lane]
    }

    /// Lane `lane`'s deques.
    #[inline]
    pub(crate) fn stealers(&self, lane: usize) -> &[Stealer<JobRef>] {
        &self.stealers[lane]
    }

    /// Queues `job` on lane `lane`'s injector (the caller wakes a worker).
    pub(crate) fn inject(&self, lane: usize, job: JobRef) {
        self.pushing();
        self.injectors[lane].push(job);
    }

    /// [`inject`](Self::inject) for a job taken from a queue before.
    pub(crate) fn inject_again(&self, lane: usize, job: JobRef) {
        self.pushing();
        self.injectors[lane].push_again(job);
    }

    /// Whether lane `lane`'s injector or any of its deques holds a job.
    pub(crate) fn has_work(&self, lane: usize) -> bool {
        !self.injectors[lane].is_empty() || self.stealers[lane].iter().any(|s| !s.is_empty())
    }

    /// Pops lane `lane`'s injector, waiting for its turn (the drains that
    /// must not miss a job).
    pub(crate) fn pop_waiting(&self, lane: usize) -> Option<JobRef> {
        self.took(self.injectors[lane].pop_waiting())
    }

    /// Takes one job of lane `lane`: the injector's oldest, or one stolen
    /// from a deque (looking first at worker `victim % threads`); never a
    /// batch (a helper's take: see `Registry::take_one`).
    pub(crate) fn take_one(&self, lane: usize, victim: usize) -> Option<JobRef> {
        if let Some(job) = self.pop_waiting(lane) {
            return Some(job);
        }
        let stealers = &self.stealers[lane];
        let n = stealers.len();
        for offset in 0..n {
            let stealer = &stealers[(victim + offset) % n];
            loop {
                match stealer.steal() {
                    Steal::Success(job) => return self.took(Some(job)),
                    Steal::Empty => break,
                    Steal::Retry => sync::spin_loop(),
                }
            }
        }
        None
    }
}

impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes")
            // Relaxed: a snapshot for display only.
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// The running priority of a thread that runs jobs without a worker's place
// (a spare running a blocking job, a helper, a thread away from its place
// in `blocking`); `Normal` elsewhere.
sync::thread_local! {
    static RUNNING: Cell<Priority> = const { Cell::new(Priority::Normal) };
}

/// The running priority of the calling thread (module docs): what a `join`
/// half, a `scope` job or `offload::spawn` made now inherits.
pub(crate) fn current() -> Priority {
    super::worker::WorkerThread::with_current(|worker| match worker {
        Some(worker) => worker.running_priority(),
        None => off_worker(),
    })
}

/// The running priority of a thread that is not a worker.
pub(crate) fn off_worker() -> Priority {
    RUNNING.with(Cell::get)
}

/// Runs `f` with `priority` as the calling thread's running priority (off
/// a worker's place), restoring the previous one after, also on unwind.
pub(crate) fn run_as<R>(priority: Priority, f: impl FnOnce() -> R) -> R {
    struct Restore(Priority);
    impl Drop for Restore {
        fn drop(&mut self) {
            RUNNING.with(|running| running.set(self.0));
        }
    }
    let _restore = Restore(RUNNING.with(|running| running.replace(priority)));
    f()
}
