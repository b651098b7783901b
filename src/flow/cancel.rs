//! Cooperative cancellation: what [`is_cancelled`](crate::is_cancelled)
//! reads.
//!
//! Each thread has a current [`CancelScope`]: the cancellation source of the
//! job it runs now. It names two flags, either of which may be absent:
//! - the `state` word of the running Task's cell, whose [`STOP`] bit the
//!   Task sets when it is cancelled or dropped (`CANCELLED` in the handoff
//!   cell is `STOP`);
//! - the pool's `flags` word, whose [`STOP`] bit `shutdown_now` sets, a
//!   cancellation of every job the pool runs (`CANCEL_QUEUED` in the
//!   registry is `STOP`).
//!
//! A scope holds the two words, not the cell and the pool, so that this
//! module imports neither: reading either is one Relaxed load and a mask.
//!
//! A worker enters its pool's scope when it starts. A Task's job enters
//! the scope of its own cell for as long as it runs. The parts of a
//! computation that a job starts and waits for (the stolen half of a
//! `join`, a `scope`'s jobs, an `install` body on another pool) capture the
//! scope of the thread that made them and enter it wherever they run, so
//! a job's cancellation reaches everything it waits for. A new Task spawned
//! inside a job does not inherit it: it has its own.
//!
//! # Why the pointers are valid
//!
//! A scope names words of a cell and a registry that are alive while the scope is
//! current: the running job's cell is kept alive by the job side's reference
//! until the job returns, and so is every part that the job waits for
//! (which holds a copy of the scope); the registry is kept alive by the
//! worker that runs the job. Each scope is entered with a guard that puts
//! the previous one back, so a worker that runs other jobs while it waits
//! returns to its own scope afterwards.

use std::cell::Cell;
use std::ptr;

use crate::sync::{mutant, AtomicUsize, Ordering};

/// The bit that asks a job to stop, in the word of its Task's cell (the
/// Task was cancelled or dropped) and in its pool's flags (`shutdown_now`).
pub(crate) const STOP: usize = 1 << 2;

/// Whether `word` (a Task's `state` or a pool's `flags`) asks its jobs to
/// stop.
#[inline]
pub(crate) fn stop_requested(word: &AtomicUsize) -> bool {
    // Relaxed: a request, which publishes nothing; the job reads it again.
    word.load(Ordering::Relaxed) & STOP != 0
}

/// The cancellation source of the code running on a thread (module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CancelScope {
    /// The running Task's `state` word, or null.
    task: *const AtomicUsize,
    /// The `flags` word of the pool the job belongs to, or null.
    pool: *const AtomicUsize,
    /// The `flags` word of the pool of the worker running on this thread,
    /// or null: a Task's
    /// job belongs to it, whatever scope the worker was in when it picked
    /// the job up (a part of another pool's job, waiting). Never read
    /// through; only copied into `pool`.
    worker_pool: *const AtomicUsize,
}

impl CancelScope {
    const NONE: CancelScope = CancelScope {
        task: ptr::null(),
        pool: ptr::null(),
        worker_pool: ptr::null(),
    };

    /// Whether [`stop_if_cancelled`] unwinds here: the scope belongs to a
    /// Task's job (whose Task then resolves as cancelled), and that Task or
    /// the pool asked it to stop.
    fn stops(self) -> bool {
        if mutant!("stop_ignores_task") {
            // Broken variant: only the pool's request is heard.
            // SAFETY: as in `is_cancelled`.
            let pool = unsafe { self.pool.as_ref() };
            return !self.task.is_null() && pool.is_some_and(stop_requested);
        }
        !self.task.is_null() && self.is_cancelled()
    }

    /// Whether this scope's Task or pool asked its jobs to stop.
    fn is_cancelled(self) -> bool {
        // SAFETY: a non-null pointer of the current scope points at a live
        // cell (module docs: the job side's reference keeps it alive while
        // the scope is current).
        let task = unsafe { self.task.as_ref() };
        // SAFETY: as above, the worker running the job keeps it alive.
        let pool = unsafe { self.pool.as_ref() };
        task.is_some_and(stop_requested) || pool.is_some_and(stop_requested)
    }
}

crate::sync::thread_local! {
    static CURRENT: Cell<CancelScope> = const { Cell::new(CancelScope::NONE) };
}

/// Puts the previous scope back when dropped.
#[must_use]
pub(crate) struct Entered(CancelScope);

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.0));
    }
}

#[inline]
fn enter(scope: CancelScope) -> Entered {
    Entered(CURRENT.with(|current| current.replace(scope)))
}

/// The current thread's scope, to be carried by a part of the running job
/// (a stolen `join` half, a `scope` job, an `install` body).
#[inline]
pub(crate) fn current() -> CancelScope {
    CURRENT.with(Cell::get)
}

/// Enters the scope of the pool whose `flags` word is `pool`: a worker, for
/// as long as its loop runs.
///
/// # Safety
/// `pool` outlives the returned guard.
pub(crate) unsafe fn enter_pool(pool: &AtomicUsize) -> Entered {
    enter(CancelScope {
        task: ptr::null(),
        pool,
        worker_pool: pool,
    })
}

/// Enters the scope of the Task whose cell's `state` is `task`, in the
/// pool of the worker running it, while its job runs.
///
/// # Safety
/// `task` outlives the returned guard.
#[inline]
pub(crate) unsafe fn enter_task(task: &AtomicUsize) -> Entered {
    let worker_pool = current().worker_pool;
    enter(CancelScope {
        task,
        pool: worker_pool,
        worker_pool,
    })
}

/// Enters `captured`, the scope of the job that made the part now running;
/// without a pool of its own (it was made outside any pool: an `install`
/// from an outside thread), it takes the running worker's.
///
/// # Safety
/// `captured` was current on its creator's thread, and the job that made
/// it waits for this part, so its pointers are still valid (module docs).
#[inline]
pub(crate) unsafe fn enter_captured(captured: CancelScope) -> Entered {
    let worker_pool = current().worker_pool;
    let pool = if captured.pool.is_null() {
        worker_pool
    } else {
        captured.pool
    };
    enter(CancelScope {
        task: captured.task,
        pool,
        worker_pool,
    })
}

/// Whether the job running on this thread has been asked to stop: its
/// Task was cancelled ([`Task::cancel`](crate::Task::cancel)) or dropped,
/// or its pool was shut down with
/// [`shutdown_now`](crate::Pool::shutdown_now). Inside the `join` halves,
/// `scope` jobs and `install` bodies that a job starts, the job's answer;
/// `false` off a worker and in a detached job whose pool runs on.
///
/// Cancellation is cooperative: nothing stops a running job but the job.
/// A long job polls this now and then (one thread-local read and one or two
/// loads, a few nanoseconds) and returns early; its Task then resolves to
/// whatever it returned. A job that never looks runs to the end, as before.
/// To have the Task resolve as cancelled instead, without encoding "stopped
/// early" in the job's own type, call [`stop_if_cancelled`].
///
/// ```
/// use std::time::Duration;
///
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// let (started_tx, started) = std::sync::mpsc::channel();
/// let mut task = pool.spawn(move || {
///     started_tx.send(()).unwrap();
///     for chunk in 0..u64::MAX {
///         if offload::is_cancelled() {
///             return Err(chunk); // stop early: the Task resolves to this
///         }
///         std::hint::black_box(chunk); // a slice of the real work
///     }
///     Ok(())
/// });
/// started.recv().unwrap();
/// task.cancel(); // the job sees it at its next look
/// let outcome = task.wait_timeout(Duration::from_secs(10)).expect("it stopped");
/// assert!(outcome.unwrap().is_err());
/// ```
#[must_use]
#[inline]
pub fn is_cancelled() -> bool {
    current().is_cancelled()
}

/// The payload of [`stop_if_cancelled`]'s unwind: the job side of a Task
/// recognises it and resolves the Task as cancelled (see `crate::task`).
#[derive(Debug)]
pub(crate) struct Stop;

/// Stops the running job if it has been asked to stop: tokio's `abort`,
/// cooperatively. Inside a Task's job (or the `join` halves, `scope` jobs
/// and `install` bodies it runs), if [`is_cancelled`] is true (its Task
/// was cancelled or dropped, or its pool was shut down with
/// [`shutdown_now`](crate::Pool::shutdown_now)), it unwinds the job, and
/// the Task resolves to a [`JoinError`](crate::JoinError) whose
/// [`is_cancelled`](crate::JoinError::is_cancelled) is true (never
/// [`is_panic`](crate::JoinError::is_panic)). Otherwise it returns at once,
/// for the cost of [`is_cancelled`].
///
/// It does nothing off a pool's thread, and outside a Task's job: a
/// [`join`](crate::join), [`scope`](crate::scope) or
/// [`install`](crate::Pool::install) called from outside any pool has no
/// Task to resolve, so it runs on.
///
/// The unwind is [`std::panic::resume_unwind`] with a private payload: the
/// panic hook does not run (nothing is printed), destructors run as for a
/// panic, and the worker goes on with its next job. It needs
/// `panic = "unwind"` (the default); built with `panic = "abort"`, this
/// function never unwinds and the job goes on, so check [`is_cancelled`]
/// too if you build both ways. A `catch_unwind` inside the job catches the
/// unwind like a panic: re-raise what it caught with `resume_unwind`.
///
/// ```
/// use std::time::Duration;
///
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// let (started_tx, started) = std::sync::mpsc::channel();
/// let mut task = pool.spawn(move || {
///     started_tx.send(()).unwrap();
///     let mut sum = 0u64;
///     for chunk in 0..u64::MAX {
///         offload::stop_if_cancelled(); // unwinds once the Task is cancelled
///         sum = sum.wrapping_add(std::hint::black_box(chunk));
///     }
///     sum
/// });
/// started.recv().unwrap();
/// task.cancel();
/// let err = task.wait_timeout(Duration::from_secs(10)).expect("it stopped").unwrap_err();
/// assert!(err.is_cancelled() && !err.is_panic());
/// ```
#[inline]
pub fn stop_if_cancelled() {
    #[cfg(panic = "unwind")]
    if current().stops() {
        stop();
    }
}

#[cfg(panic = "unwind")]
#[cold]
#[inline(never)]
fn stop() -> ! {
    std::panic::resume_unwind(Box::new(Stop))
}
