//! Type-erased jobs: what the queues carry.
//!
//! A [`JobRef`] points at a job's [`JobHeader`]: the function that knows the
//! job's type, and the link that queues it on the injector without an
//! allocation. The queues move `JobRef`s between threads; exactly one thread
//! takes a given `JobRef` out of a queue and calls [`JobRef::execute`] on it,
//! once.
//!
//! Three kinds of job stand behind a `JobRef`:
//! - the handoff cell of a spawned [`Task`](crate::Task) (`handoff.rs`): heap,
//!   reference counted, may be cancelled;
//! - a `StackJob`: the second half of a `join`, or the body of an
//!   `install`, living on the stack of a thread that waits for its latch;
//! - a `HeapJob`: a job spawned inside a `scope`.
//!
//! The last two are fork-join's (`crate::fork_join::parts`).
//!
//! Only the first honours [`Mode::Cancel`]: the other two are parts of a
//! computation that a caller is blocked on, so they always run. They carry
//! the cancellation scope of the thread that made them and run in it, so
//! that [`is_cancelled`](crate::is_cancelled) inside them answers for the
//! job that waits for them.

use std::ptr::{self, NonNull};

use crate::observe::metrics::Tally;
use crate::sync::AtomicPtr;

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
    /// (see [`crate::sched::injector`]); unused elsewhere.
    pub(crate) next: AtomicPtr<JobHeader>,
    /// Whether this is a Task's job, which [`Mode::Cancel`] resolves
    /// without running anything: `shutdown_now` takes such jobs out of the
    /// queues at once (see [`crate::sched::registry`]). Never changes.
    task: bool,
}

impl JobHeader {
    /// A header whose job `execute_fn` runs, given a pointer to the header.
    pub(crate) fn new(execute_fn: unsafe fn(NonNull<JobHeader>, Mode, &Tally<'_>)) -> Self {
        Self {
            execute_fn,
            next: AtomicPtr::new(ptr::null_mut()),
            task: false,
        }
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
