//! Fork-join: [`join`](crate::join) runs two closures, potentially in
//! parallel, and returns both results.
//!
//! # Cost
//!
//! Most joins are two plain calls. A join makes its second half `b`
//! available to other workers only near the root of a recursion, where the
//! halves are large:
//!
//! - **Inline join** (the common case): `a()` then `b()`, guarded so that
//!   `b` still runs if `a` panics. No atomic operation, no allocation, no
//!   `catch_unwind` on the way.
//! - **Shared join**: `b` is *published* (pushed on the worker's deque, and
//!   a sleeping worker woken for it: [`WorkerThread::publish`]); then
//!   `a()`; then the worker pops its deque, and finds `b` on top (nobody
//!   took it: it runs `b` inline), or jobs that `a` pushed above it (it
//!   runs them first), or nothing (`b` was stolen: it waits for `b`'s
//!   latch, running other jobs meanwhile). A worker makes a shared join
//!   whenever fewer than [`SHARED_DEPTH`](crate::sched::worker::SHARED_DEPTH) of its halves are published, so
//!   the largest pending pieces of a recursion, those near its root, are
//!   always where an idle worker can take them.
//!
//! So **a worker that goes idle while `a` runs takes `b`**, whatever it
//! was doing when the join began (not started yet, spinning, asleep, busy
//! with another job) and whether or not `a` ever joins again: the half is
//! in a shared queue from the start, and the sleep protocol
//! ([`crate::sched::sleep`]) loses no wake-up for it. A shared join costs a push,
//! the notifier's fence and a pop (with its fence): a few tens of
//! nanoseconds, paid by about one join in two thousand of a fine-grained
//! recursion (fib(30): 680 of 1.35M).
//!
//! Beyond [`SHARED_DEPTH`](crate::sched::worker::SHARED_DEPTH), joins run inline, and work reaches idle workers
//! on demand, as in heartbeat scheduling: an idle worker raises a *share
//! request* on every other worker (see [`crate::sched::worker`]), and every
//! [`SHARE_CHECK_EVERY`](crate::sched::worker::SHARE_CHECK_EVERY)th inline join looks for one (one Relaxed load)
//! and, if raised, makes itself a shared join. A long recursion below the
//! published halves thus offers work within a few dozen joins; a half of a
//! join that runs inline is never stolen.
//!
//! # Panics
//!
//! Both closures always run to completion before `join` returns or unwinds.
//! If `a` panics, `b` is still run (from a drop guard, with its own panic
//! caught and dropped) and `a`'s panic continues; if only `b` panics, its
//! panic is re-raised after `a` finished. So `a`'s panic wins, as in rayon.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};

use crate::fork_join::latch::Latch;
use crate::fork_join::parts::{in_worker, JobResult, StackJob};
use crate::job_priority::Priority;
use crate::sched::registry::Registry;
use crate::sched::worker::WorkerThread;
use crate::sync::Arc;
use crate::task::job::JobRef;
use crate::unwind::drop_quietly;

/// `join` on the worker it runs on.
#[inline]
pub(crate) fn join_on_worker<A, B, RA, RB>(worker: &WorkerThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if worker.next_join_is_inline() {
        join_inline(a, b)
    } else {
        join_shared(worker, a, b)
    }
}

/// `join` on `registry` from any thread: on one of its workers, there; on
/// one of its helpers (which has no place to share halves from, see
/// [`crate::blocking::detect`]), both halves in turn on the helper; else on
/// a worker, the caller waiting.
pub(crate) fn join_in<A, B, RA, RB>(
    registry: &Arc<Registry>,
    priority: Priority,
    a: A,
    b: B,
) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if crate::blocking::detect::is_helping(registry) {
        return join_inline(a, b);
    }
    in_worker(registry, priority, |worker| join_on_worker(worker, a, b))
}

/// `a()` then `b()`; if `a` panics, `b` runs while the panic unwinds.
#[inline]
fn join_inline<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA,
    B: FnOnce() -> RB,
{
    struct RunOnUnwind<B: FnOnce() -> RB, RB>(ManuallyDrop<B>);

    impl<B: FnOnce() -> RB, RB> Drop for RunOnUnwind<B, RB> {
        fn drop(&mut self) {
            // Only reached while `a` unwinds (the happy path forgets us).
            // SAFETY: taken once, here; the guard is never used again.
            let b = unsafe { ManuallyDrop::take(&mut self.0) };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(b)) {
                drop_quietly(payload);
            }
        }
    }

    let guard = RunOnUnwind(ManuallyDrop::new(b));
    let ra = a();
    let mut guard = ManuallyDrop::new(guard);
    // SAFETY: the guard is disarmed (never dropped) and `b` taken once.
    let b = unsafe { ManuallyDrop::take(&mut guard.0) };
    (ra, b())
}

/// A join whose `b` is published: stealable by any worker until `a` is
/// done (see module docs).
#[inline(never)]
fn join_shared<A, B, RA, RB>(worker: &WorkerThread, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    /// Takes `b` back (runs it, or waits for its thief) if `a` unwinds.
    struct ReclaimOnUnwind<'a, B: FnOnce() -> RB + Send, RB: Send> {
        worker: &'a WorkerThread,
        job_b: &'a StackJob<B, RB>,
        job_b_ref: JobRef,
    }

    impl<B: FnOnce() -> RB + Send, RB: Send> Drop for ReclaimOnUnwind<'_, B, RB> {
        fn drop(&mut self) {
            // `a` may have come back early from `blocking` before it panicked.
            self.worker.hold();
            self.worker.unpublish();
            let popped = self.worker.pop();
            drop_quietly(reclaim(self.worker, self.job_b, self.job_b_ref, popped));
        }
    }

    // SAFETY: only workers of this pool can run `job_b` (it goes to this
    // worker's deque), and they keep the pool, and so this worker's
    // parker, alive.
    let latch = unsafe { Latch::for_worker(worker.parker()) };
    // The half inherits the running job's priority, and so its lane.
    let job_b = StackJob::new(b, latch, worker.running_priority());
    // SAFETY: `job_b` stays on this stack until it is taken back (and run
    // inline) or its latch is set: `reclaim` waits for one of them, on the
    // normal path and, through the guard, when `a` unwinds.
    let job_b_ref = unsafe { job_b.as_job_ref() };
    worker.publish(job_b_ref);

    let guard = ReclaimOnUnwind {
        worker,
        job_b: &job_b,
        job_b_ref,
    };
    let ra = a();
    std::mem::forget(guard);

    // `a` may have come back early from `blocking`: the place first.
    worker.hold();
    worker.unpublish();
    let rb = match worker.pop() {
        // Nobody took it (the common case when every worker is busy).
        Some(job) if job == job_b_ref => job_b.run_inline(),
        popped => reclaim(worker, &job_b, job_b_ref, popped).into_return_value(),
    };
    (ra, rb)
}

/// Takes `job_b` back and returns its result, `popped` being what this
/// worker's deque gave after `a`: runs `b` here once it is on top of the
/// deque (first running the jobs pushed above it), or waits for the worker
/// that stole it, running other jobs meanwhile.
#[cold]
fn reclaim<B, RB>(
    worker: &WorkerThread,
    job_b: &StackJob<B, RB>,
    job_b_ref: JobRef,
    mut popped: Option<JobRef>,
) -> JobResult<RB>
where
    B: FnOnce() -> RB + Send,
    RB: Send,
{
    loop {
        match popped {
            Some(job) if job == job_b_ref => return JobResult::call(|| job_b.run_inline()),
            Some(job) => worker.execute(job),
            None => {
                worker.wait_until(|| job_b.latch.probe());
                return job_b.take_result();
            }
        }
        if job_b.latch.probe() {
            return job_b.take_result();
        }
        popped = worker.pop();
    }
}
