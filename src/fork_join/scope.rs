//! [`Scope`]: jobs that may borrow from the stack of the `scope` call.
//!
//! The scope body runs on a worker. Each [`Scope::spawn`] increments a
//! [`CountLatch`] (which starts at one, for the body) and queues a boxed job;
//! each job decrements it when done, panic or not. After the body returns
//! (or panics) the worker decrements the body's count and runs other jobs
//! until the count is zero. Only then does `scope` return, so every borrow a
//! job holds ends before the borrowed data can. The first panic (the body's
//! first, then the jobs' in completion order) is re-raised after that.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};

use crate::fork_join::latch::CountLatch;
use crate::fork_join::parts::HeapJob;
use crate::sched::parker::Parker;
use crate::sched::registry::Registry;
use crate::sched::worker::WorkerThread;
use crate::sync::{lock, Arc, Mutex, StdArc};

/// A scope in which jobs may borrow data that outlives the scope, created
/// by [`scope`](crate::scope) or [`Pool::scope`](crate::Pool::scope).
///
/// ```
/// let mut halves = [vec![1, 2, 3], vec![4, 5, 6]];
/// let (left, right) = halves.split_at_mut(1);
/// offload::scope(|s| {
///     s.spawn(|_| left[0].iter_mut().for_each(|x| *x *= 10));
///     s.spawn(|_| right[0].iter_mut().for_each(|x| *x += 1));
/// });
/// assert_eq!(halves, [vec![10, 20, 30], vec![5, 6, 7]]);
/// ```
pub struct Scope<'scope> {
    registry: Arc<Registry>,
    pending: CountLatch,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Invariant in `'scope`, as `std::thread::Scope`.
    _marker: PhantomData<&'scope mut &'scope ()>,
}

/// A pointer to a scope that jobs carry to other threads.
struct ScopePtr<'scope>(*const Scope<'scope>);

// SAFETY: `Scope` is `Sync` (its fields are atomics, a mutex and an `Arc`),
// and the scope outlives every job holding the pointer (it waits for them).
unsafe impl Send for ScopePtr<'_> {}

impl<'scope> Scope<'scope> {
    /// Queues `job` on the pool; it may borrow anything that outlives the
    /// scope. The scope waits for it before returning; a panic in it is
    /// re-raised by the scope once every job has finished.
    ///
    /// ```
    /// let mut squares = vec![0; 4];
    /// offload::scope(|s| {
    ///     for (i, slot) in squares.iter_mut().enumerate() {
    ///         s.spawn(move |_| *slot = i * i);
    ///     }
    /// });
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// ```
    pub fn spawn<F>(&self, job: F)
    where
        F: FnOnce(&Scope<'scope>) + Send + 'scope,
    {
        self.pending.increment();
        let scope = ScopePtr(self);
        let body = move || {
            let scope = scope;
            // SAFETY: the scope waits for `pending` to reach zero, which
            // this job's decrement below is part of, so it is still alive.
            let this = unsafe { &*scope.0 };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| job(this))) {
                this.record_panic(payload);
            }
            // SAFETY: valid now; not used after the decrement.
            unsafe { CountLatch::decrement(&this.pending) };
        };
        // It runs in the context current here (see `crate::task::context`).
        let body = crate::task::context::wrap(body);
        // SAFETY: `body` borrows only data outliving 'scope, and the scope
        // does not return before `body` ran (see above).
        let job_ref = unsafe { HeapJob::into_job_ref(body) };
        // Not `submit`: a scope's job is never cancelled, even by a
        // shutdown, since the scope waits for it.
        self.registry.push(job_ref);
    }

    fn record_panic(&self, payload: Box<dyn Any + Send>) {
        let mut slot = lock(&self.panic);
        if slot.is_none() {
            *slot = Some(payload);
        } else {
            drop(slot);
            crate::unwind::drop_quietly(payload);
        }
    }
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// `op`, run inside the context current now (see `crate::task::context`): for a
/// scope body that may run on another thread.
pub(crate) fn in_current_context<'scope, OP, R>(op: OP) -> impl FnOnce(&Scope<'scope>) -> R + Send
where
    OP: FnOnce(&Scope<'scope>) -> R + Send,
{
    let context = crate::task::context::Context::capture();
    move |scope: &Scope<'scope>| {
        let _entered = context.enter();
        op(scope)
    }
}

/// A scope on `registry` from any thread: on one of its workers, there; on
/// one of its helpers (which has no place, see [`crate::blocking::detect`]),
/// the body runs on the helper, whose thread then waits for the scope's
/// jobs (a wait the detector sees, so another helper runs them if the
/// workers are busy); else on a worker, the caller waiting.
pub(crate) fn scope_in<'scope, OP, R>(
    registry: &Arc<Registry>,
    priority: crate::job_priority::Priority,
    op: OP,
) -> R
where
    OP: FnOnce(&Scope<'scope>) -> R + Send,
    R: Send,
{
    if crate::blocking::detect::is_helping(registry) {
        let parker = crate::sched::worker::thread_parker();
        return run_scope(registry, &parker, op, |done| {
            crate::sched::worker::spin_then_park(
                &parker,
                done,
                None,
                crate::sched::worker_loop::FORK_JOIN_SPIN_ROUNDS,
            );
        });
    }
    crate::fork_join::parts::in_worker(registry, priority, |worker| scope_on_worker(worker, op))
}

/// Runs a scope on `worker`.
pub(crate) fn scope_on_worker<'scope, OP, R>(worker: &WorkerThread, op: OP) -> R
where
    OP: FnOnce(&Scope<'scope>) -> R,
{
    run_scope(worker.registry(), worker.parker(), op, |done| {
        // The body may have come back early from `blocking`: the place
        // first.
        worker.hold();
        worker.wait_until(done);
    })
}

/// A scope on `registry` whose count wakes `waiter`, and which `wait(done)`
/// waits for until `done()` holds.
fn run_scope<'scope, OP, R>(
    registry: &Arc<Registry>,
    waiter: &StdArc<Parker>,
    op: OP,
    wait: impl FnOnce(&dyn Fn() -> bool),
) -> R
where
    OP: FnOnce(&Scope<'scope>) -> R,
{
    let scope = Scope {
        registry: Arc::clone(registry),
        pending: CountLatch::new(waiter),
        panic: Mutex::new(None),
        _marker: PhantomData,
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| op(&scope)));
    // SAFETY: `scope` lives on this stack until after the wait below.
    unsafe { CountLatch::decrement(&scope.pending) };
    wait(&|| scope.pending.probe());
    let job_panic = lock(&scope.panic).take();
    match (result, job_panic) {
        (Ok(value), None) => value,
        (Ok(_), Some(payload)) => panic::resume_unwind(payload),
        (Err(payload), job_panic) => {
            // The body's panic wins; a job's is dropped (quietly: a payload
            // may panic in its own drop).
            crate::unwind::drop_quietly(job_panic);
            panic::resume_unwind(payload)
        }
    }
}
