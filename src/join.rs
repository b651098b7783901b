//! Fork-join: [`join`](crate::join) runs two closures, potentially in
//! parallel, and returns both results.
//!
//! # Cost
//!
//! Most joins are two plain calls. A join only makes its second half `b`
//! available to other workers when that can matter:
//!
//! - **Inline join** (the common case): `a()` then `b()`, guarded so that
//!   `b` still runs if `a` panics. No atomic operation, no allocation, no
//!   `catch_unwind` on the way.
//! - **Private join**: `b` goes on the worker's *private* stack, a plain
//!   `Vec` no other thread reads; then `a()`; then `b` is popped back and
//!   run inline. A worker makes a private join whenever its private stack
//!   holds fewer than [`PRIVATE_DEPTH`] halves, so the largest pending
//!   pieces of a recursion, those near its root, are always there.
//!
//! Only when an idle worker asked (share requests, see [`crate::worker`])
//! does a worker move its *oldest* private half — the largest piece it has —
//! to its shared deque, where it can be stolen: work is shared on demand, as
//! in heartbeat scheduling, rather than on every join as in classic work
//! stealing. A worker looks for a request at every private join, and at
//! every [`SHARE_CHECK_EVERY`]th inline join (one load), so that a long
//! recursion below a full private stack still answers one within a few
//! dozen joins; sharing then leaves room on the private stack, and the
//! join that saw the request is a private one. After `a`, a shared `b` is
//! no longer on the private stack: the worker pops its shared deque,
//! running whatever was pushed above `b`, until it pops `b` and runs it
//! inline, or finds the deque empty (`b` was stolen) and waits for `b`'s
//! latch, running other jobs meanwhile.
//!
//! # Panics
//!
//! Both closures always run to completion before `join` returns or unwinds.
//! If `a` panics, `b` is still run (from a drop guard, with its own panic
//! caught and dropped) and `a`'s panic continues; if only `b` panics, its
//! panic is re-raised after `a` finished. So `a`'s panic wins, as in rayon.

use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};

use crate::job::{JobRef, JobResult, StackJob};
use crate::latch::Latch;
use crate::registry::Registry;
use crate::sync::Arc;
use crate::unwind::drop_quietly;
use crate::worker::{in_worker, WorkerThread};

/// Below this many private halves, every join is a private join.
pub(crate) const PRIVATE_DEPTH: usize = 3;

/// With a full private stack, one join in this many looks for a share
/// request.
pub(crate) const SHARE_CHECK_EVERY: u32 = 64;

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
        join_private(worker, a, b)
    }
}

/// `join` on `registry` from any thread: on one of its workers, there; on
/// one of its helpers (which has no place to share halves from, see
/// [`crate::blocking::detect`]), both halves in turn on the helper; else on
/// a worker, the caller waiting.
pub(crate) fn join_in<A, B, RA, RB>(registry: &Arc<Registry>, a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if crate::blocking::detect::is_helping(registry) {
        return join_inline(a, b);
    }
    in_worker(registry, |worker| join_on_worker(worker, a, b))
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

/// A join whose `b` may be shared with idle workers (see module docs).
#[inline(never)]
fn join_private<A, B, RA, RB>(worker: &WorkerThread, a: A, b: B) -> (RA, RB)
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
            drop_quietly(reclaim(self.worker, self.job_b, self.job_b_ref));
        }
    }

    // SAFETY: only workers of this pool can run `job_b` (it goes to this
    // worker's private stack or its deque), and they keep the pool, and so
    // this worker's parker, alive.
    let latch = unsafe { Latch::for_worker(worker.parker()) };
    let job_b = StackJob::new(b, latch);
    // SAFETY: `job_b` stays on this stack until it is taken back (and run
    // inline) or its latch is set: `reclaim` waits for one of them, on the
    // normal path and, through the guard, when `a` unwinds.
    let job_b_ref = unsafe { job_b.as_job_ref() };
    worker.push_private(job_b_ref);

    let guard = ReclaimOnUnwind {
        worker,
        job_b: &job_b,
        job_b_ref,
    };
    let ra = a();
    std::mem::forget(guard);

    let rb = if worker.pop_private(job_b_ref) {
        job_b.run_inline()
    } else {
        reclaim(worker, &job_b, job_b_ref).into_return_value()
    };
    (ra, rb)
}

/// Takes `job_b` back from wherever it went and returns its result: runs it
/// here if it is still private or on top of this worker's deque (first
/// running the jobs pushed above it), or waits for the worker that stole it.
fn reclaim<B, RB>(
    worker: &WorkerThread,
    job_b: &StackJob<B, RB>,
    job_b_ref: JobRef,
) -> JobResult<RB>
where
    B: FnOnce() -> RB + Send,
    RB: Send,
{
    if worker.pop_private(job_b_ref) {
        return JobResult::call(|| job_b.run_inline());
    }
    loop {
        if job_b.latch.probe() {
            return job_b.take_result();
        }
        match worker.pop() {
            Some(job) if job == job_b_ref => {
                // Shared, but nobody took it: the request still stands.
                worker.restore_share_request();
                return JobResult::call(|| job_b.run_inline());
            }
            Some(job) => worker.execute(job),
            None => {
                worker.wait_until(|| job_b.latch.probe());
                return job_b.take_result();
            }
        }
    }
}
