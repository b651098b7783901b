//! The parts that fork-join builds on: the jobs a blocked caller waits for
//! ([`StackJob`], the stolen half of a `join` or the body of an `install`;
//! [`HeapJob`], a job spawned inside a `scope`), what they produce
//! ([`JobResult`]), and [`in_worker`], which runs an operation on a worker
//! of a pool (`Pool::install`, `join` and `scope` from outside it).
//!
//! Both jobs always run (they are parts of a computation that a caller is
//! blocked on), in the cancellation scope of the thread that made them, so
//! that [`is_cancelled`](crate::is_cancelled) inside them answers for the
//! job that waits for them (see [`crate::flow::cancel`]).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;

use crate::flow::cancel::{self, CancelScope};
use crate::fork_join::latch::Latch;
use crate::job_priority::Priority;
use crate::observe::metrics::Tally;
use crate::sched::registry::Registry;
use crate::sched::worker::{spin_then_park, thread_parker, WorkerThread};
use crate::sched::worker_loop::FORK_JOIN_SPIN_ROUNDS;
use crate::sync::{Arc, UnsafeCell};
use crate::task::job::{JobHeader, JobRef, Mode};
use crate::unwind;

/// What a [`StackJob`] produced.
#[derive(Debug)]
pub(crate) enum JobResult<R> {
    None,
    Ok(R),
    Panic(Box<dyn Any + Send>),
}

impl<R> JobResult<R> {
    /// Runs `f`, catching its panic.
    pub(crate) fn call(f: impl FnOnce() -> R) -> Self {
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => JobResult::Ok(value),
            Err(payload) => JobResult::Panic(payload),
        }
    }

    /// Returns the value, or re-raises the job's panic on this thread.
    pub(crate) fn into_return_value(self) -> R {
        match self {
            JobResult::Ok(value) => value,
            JobResult::Panic(payload) => panic::resume_unwind(payload),
            JobResult::None => unreachable!("job result read before its latch was set"),
        }
    }
}

/// A job on the stack of a thread that will not return before its latch is
/// set: the stolen half of a `join`, or the body of an `install`.
#[repr(C)]
pub(crate) struct StackJob<F, R> {
    header: JobHeader,
    func: UnsafeCell<Option<F>>,
    result: UnsafeCell<JobResult<R>>,
    pub(crate) latch: Latch,
    /// The maker's cancellation scope, entered wherever the job runs.
    cancel: CancelScope,
}

impl<F, R> StackJob<F, R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    /// A job of `priority` (the running priority of the job that makes
    /// it, for a `join` half; see [`crate::sched::lanes`]).
    pub(crate) fn new(func: F, latch: Latch, priority: Priority) -> Self {
        Self {
            header: JobHeader::new(Self::execute).with_priority(priority),
            func: UnsafeCell::new(Some(func)),
            result: UnsafeCell::new(JobResult::None),
            latch,
            cancel: cancel::current(),
        }
    }

    /// # Safety
    /// The caller must keep `self` alive (not move or drop it) until either
    /// the latch is set or the `JobRef` was taken back unexecuted.
    pub(crate) unsafe fn as_job_ref(&self) -> JobRef {
        // SAFETY: `Self` is repr(C) with the header first, so `execute` may
        // cast back to `Self`; the caller keeps it alive.
        unsafe { JobRef::new(NonNull::from(self).cast()) }
    }

    /// Runs the job on the owner's thread after it popped its own `JobRef`
    /// back: no other thread can reach the job any more.
    #[inline]
    pub(crate) fn run_inline(&self) -> R {
        let func = self.func.with_mut(|func| {
            // SAFETY: the JobRef was popped back by the owner, so no other
            // thread has or will have access to `func`.
            unsafe { (*func).take() }
        });
        func.expect("stack job already taken")()
    }

    /// Takes the result once the latch is set.
    pub(crate) fn take_result(&self) -> JobResult<R> {
        debug_assert!(self.latch.probe());
        self.result.with_mut(|result| {
            // SAFETY: the latch is set (Acquire), so the executing thread's
            // write of `result` happened before, and it touches `self` no more.
            unsafe { std::mem::replace(&mut *result, JobResult::None) }
        })
    }

    /// Takes the result once the latch is set, re-raising a panic.
    pub(crate) fn into_result(self) -> R {
        self.take_result().into_return_value()
    }

    /// # Safety
    /// `this` points to a live `StackJob<F, R>` whose JobRef was popped by
    /// the current thread (called through [`JobRef::execute`]).
    unsafe fn execute(this: NonNull<JobHeader>, _mode: Mode, _tally: &Tally<'_>) {
        // SAFETY: caller's contract: `this` heads a live StackJob<F, R>.
        let this = unsafe { this.cast::<Self>().as_ref() };
        // SAFETY: we hold the JobRef, so we alone access `func` and `result`
        // until we set the latch.
        let func = this.func.with_mut(|func| unsafe { (*func).take() });
        // SAFETY: the maker waits for this job's latch, so the scope it
        // captured is still valid; the guard ends before the latch is set.
        let scope = unsafe { cancel::enter_captured(this.cancel) };
        let result = JobResult::call(func.expect("stack job executed twice"));
        drop(scope);
        // SAFETY: as above; the latch is not set yet.
        this.result.with_mut(|slot| unsafe { *slot = result });
        // SAFETY: the latch is live now; after this call the owner may free
        // `this`, and nothing below touches it.
        unsafe { Latch::set(&this.latch) };
    }
}

/// A boxed job spawned inside a scope.
#[repr(C)]
pub(crate) struct HeapJob<F> {
    header: JobHeader,
    func: F,
    /// The spawner's cancellation scope, entered wherever the job runs.
    cancel: CancelScope,
}

impl<F> HeapJob<F>
where
    F: FnOnce() + Send,
{
    /// Boxes `func` and returns its `JobRef`; executing it frees the box.
    ///
    /// # Safety
    /// Everything `func` borrows must outlive the job's execution (the scope
    /// waits for every job it spawned before its borrows end).
    pub(crate) unsafe fn into_job_ref(func: F) -> JobRef {
        let boxed = Box::new(HeapJob {
            // The spawning job's priority (see `crate::sched::lanes`).
            header: JobHeader::new(Self::execute).with_priority(crate::sched::lanes::current()),
            func,
            cancel: cancel::current(),
        });
        let header = NonNull::from(Box::leak(boxed)).cast();
        // SAFETY: `Self` is repr(C) with the header first; `execute`
        // reclaims exactly this box, once.
        unsafe { JobRef::new(header) }
    }

    /// # Safety
    /// `this` came from `into_job_ref` and is executed once.
    unsafe fn execute(this: NonNull<JobHeader>, _mode: Mode, _tally: &Tally<'_>) {
        // SAFETY: caller's contract: we own the box leaked by into_job_ref.
        let job = unsafe { Box::from_raw(this.cast::<Self>().as_ptr()) };
        // SAFETY: the `scope` call that spawned this job waits for it, and
        // the job whose scope was captured waits for that call. The job
        // signals its scope as the last step of `func`; the pointers stay
        // in the guard a moment longer, but nothing reads them: the guard's
        // drop only puts the previous scope back.
        let _scope = unsafe { cancel::enter_captured(job.cancel) };
        // The scope's wrapper around `func` catches panics; guard anyway so a
        // worker never unwinds out of a job.
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(job.func)) {
            unwind::drop_quietly(payload);
        }
    }
}

/// Runs `op` on a worker of `registry` and returns its result, blocking the
/// caller (or, on a worker of another pool, running that pool's jobs) until
/// it is done. Panics in `op` are re-raised here.
pub(crate) fn in_worker<OP, R>(registry: &Arc<Registry>, priority: Priority, op: OP) -> R
where
    OP: FnOnce(&WorkerThread) -> R + Send,
    R: Send,
{
    WorkerThread::with_current(|current| {
        if let Some(worker) = current {
            if worker.registry().is(registry) {
                return op(worker);
            }
        }
        assert!(
            !registry.is_terminating(),
            "offload: the pool has been shut down"
        );
        // If the pool shuts down before a worker takes the job, the
        // submitter itself cancels it (see `Registry::inject`) and this
        // panics on its thread, which re-raises the panic to the caller.
        let target = Arc::clone(registry);
        let run_on_worker = move || {
            WorkerThread::with_current(|worker| {
                let worker = worker
                    .filter(|worker| worker.registry().is(&target))
                    .expect("offload: the pool was shut down before this operation could run");
                op(worker)
            })
        };
        match current {
            // On a worker of another pool: keep that worker busy while we wait.
            Some(worker) => {
                let job = StackJob::new(run_on_worker, Latch::new(worker.parker()), priority);
                // SAFETY: `job` stays on this stack until its latch is set.
                registry.inject_for_worker(unsafe { job.as_job_ref() });
                worker.wait_until(|| job.latch.probe());
                job.into_result()
            }
            // On any other thread: park until done.
            None => {
                let parker = thread_parker();
                let job = StackJob::new(run_on_worker, Latch::new(&parker), priority);
                // SAFETY: `job` stays on this stack until its latch is set.
                registry.inject_for_worker(unsafe { job.as_job_ref() });
                spin_then_park(&parker, || job.latch.probe(), None, FORK_JOIN_SPIN_ROUNDS);
                job.into_result()
            }
        }
    })
}
