//! Type-erased jobs: what the queues carry.
//!
//! A [`JobRef`] points at a job's [`JobHeader`]: the function that knows the
//! job's type, and the link that queues it on the injector without an
//! allocation. The queues move `JobRef`s between threads; exactly one thread
//! takes a given `JobRef` out of a queue and calls [`JobRef::execute`] on it,
//! once.
//!
//! Three kinds of job stand behind a `JobRef`:
//! - the handoff cell of a spawned [`Task`](crate::Task) (`task` module): heap,
//!   reference counted, may be cancelled;
//! - a [`StackJob`]: the second half of a `join`, or the body of an
//!   `install`, living on the stack of a thread that waits for its latch;
//! - a [`HeapJob`]: a job spawned inside a `scope`.
//!
//! Only the first honours [`Mode::Cancel`]: the other two are parts of a
//! computation that a caller is blocked on, so they always run. They carry
//! the cancellation scope of the thread that made them and run in it, so
//! that [`is_cancelled`](crate::is_cancelled) inside them answers for the
//! job that waits for them (see [`crate::flow::cancel`]).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use crate::flow::cancel::{self, CancelScope};
use crate::job_priority::Priority;
use crate::latch::Latch;
use crate::observe::metrics::Tally;
use crate::sync::{AtomicPtr, UnsafeCell};
use crate::unwind;

/// How a popped job is to be executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run the job.
    Run,
    /// The pool is shutting down now: resolve a cancellable job as cancelled
    /// without running it.
    Cancel,
}

/// The start of every job (each job type is `repr(C)` with it first): the
/// function that knows the job's type, and the injector's link.
pub(crate) struct JobHeader {
    execute_fn: unsafe fn(NonNull<JobHeader>, Mode, &Tally<'_>),
    /// The job queued behind this one while it is on the injector
    /// (see [`crate::injector`]); unused elsewhere.
    pub(crate) next: AtomicPtr<JobHeader>,
    /// Whether this is a Task's job, which [`Mode::Cancel`] resolves
    /// without running anything: `shutdown_now` takes such jobs out of the
    /// queues at once (see [`crate::registry`]). Never changes.
    task: bool,
    /// The job's priority: the lane it is queued in, and the running
    /// priority while it runs (see [`crate::job_priority`]). Never changes.
    priority: Priority,
}

impl JobHeader {
    /// A header whose job `execute_fn` runs, given a pointer to the header.
    pub(crate) fn new(execute_fn: unsafe fn(NonNull<JobHeader>, Mode, &Tally<'_>)) -> Self {
        Self {
            execute_fn,
            next: AtomicPtr::new(ptr::null_mut()),
            task: false,
            priority: Priority::Normal,
        }
    }

    /// The job's priority.
    #[inline]
    pub(crate) fn priority(&self) -> Priority {
        self.priority
    }

    /// This header, for a job of `priority`.
    pub(crate) fn with_priority(self, priority: Priority) -> Self {
        Self { priority, ..self }
    }

    /// [`new`](Self::new), for a Task's job.
    pub(crate) fn new_task(execute_fn: unsafe fn(NonNull<JobHeader>, Mode, &Tally<'_>)) -> Self {
        Self {
            task: true,
            ..Self::new(execute_fn)
        }
    }
}

/// A type-erased pointer to a job, executed exactly once: a pointer to its
/// [`JobHeader`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobRef(NonNull<JobHeader>);

// SAFETY: a JobRef is created only for jobs whose captured state is `Send`
// (every constructor requires it), and it is executed by exactly one thread.
unsafe impl Send for JobRef {}

impl JobRef {
    /// # Safety
    /// `header` is the header of a live job; calling its `execute_fn` with
    /// it must be sound once, from any thread, for as long as the `JobRef`
    /// is in a queue.
    pub(crate) unsafe fn new(header: NonNull<JobHeader>) -> Self {
        Self(header)
    }

    /// The job's header (the injector links jobs through it).
    #[inline]
    pub(crate) fn header(self) -> NonNull<JobHeader> {
        self.0
    }

    /// Whether this is a Task's job (see `JobHeader::task`).
    #[inline]
    pub(crate) fn is_task(self) -> bool {
        // SAFETY: the constructor's contract: the header is live while the
        // JobRef is held, and `task` is written before it is shared.
        unsafe { self.0.as_ref().task }
    }

    /// The job's priority (see `JobHeader::priority`).
    #[inline]
    pub(crate) fn priority(self) -> Priority {
        // SAFETY: as for `is_task`.
        unsafe { self.0.as_ref().priority }
    }

    /// Executes the job; a Task's job counts itself in `tally`, the
    /// executing thread's counters of the job's pool (see
    /// [`crate::observe::metrics`]). Never unwinds: every job catches its
    /// own panics.
    #[inline]
    pub(crate) fn execute(self, mode: Mode, tally: &Tally<'_>) {
        // SAFETY: the constructor's contract: the header is live until the
        // job runs; `self` is consumed, and a JobRef leaves a queue once, so
        // this is the one call.
        unsafe { (self.0.as_ref().execute_fn)(self.0, mode, tally) }
    }
}

/// Two `JobRef`s are the same job if they point at the same header: a live
/// job has one address.
impl PartialEq for JobRef {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for JobRef {}

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
    /// it, for a `join` half; see [`crate::job_priority`]).
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
            // The spawning job's priority (see `crate::job_priority`).
            header: JobHeader::new(Self::execute).with_priority(crate::job_priority::current()),
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
