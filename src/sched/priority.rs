//! [`WorkerPriority`]: worker threads at a lower OS scheduling priority than
//! the caller's threads (see [`Builder::worker_priority`]).
//!
//! On Linux the nice value and the scheduling policy are properties of each
//! thread, not of the process: a new thread inherits its creator's, and
//! `setpriority` / `sched_setscheduler` on a thread id change that thread
//! alone. Each worker lowers its own priority when it starts, so the thread
//! that built the pool (typically an async event loop) and every other
//! thread of the program keep theirs.
//!
//! Elsewhere both belong to the whole process, so nothing is changed, and
//! under loom (where the pool's threads are simulated on one OS thread)
//! neither.
//!
//! [`Builder::worker_priority`]: crate::Builder::worker_priority

/// The OS scheduling priority of a pool's worker threads, relative to the
/// thread that builds the pool: see [`Builder::worker_priority`], which
/// explains the trade-off with measurements.
///
/// Linux only; elsewhere every variant behaves as [`Inherit`].
///
/// ```
/// use offload::WorkerPriority;
///
/// // Opt in where the pool saturates every core and an event loop's tail
/// // latency matters more than the pool's share of a contended core:
/// let latency_first = offload::Pool::builder()
///     .worker_priority(WorkerPriority::Idle)
///     .build()
///     .unwrap();
/// assert_eq!(latency_first.spawn(|| 6 * 7).wait().unwrap(), 42);
/// assert_eq!(WorkerPriority::default(), WorkerPriority::Inherit);
/// ```
///
/// [`Builder::worker_priority`]: crate::Builder::worker_priority
/// [`Inherit`]: WorkerPriority::Inherit
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerPriority {
    /// The building thread's priority, unchanged.
    Inherit,
    /// `n` nice levels lower than the building thread (its nice value plus
    /// `n`, clamped to -20..=19). The scheduler weighs the threads by nice
    /// value: at +10 a worker gets about 1/9 of a core it shares with a
    /// thread at the caller's priority. A negative `n` needs privileges
    /// (`CAP_SYS_NICE`); without them the worker keeps the caller's priority.
    Nice(i32),
    /// Linux's `SCHED_IDLE` policy: the workers run only when a core has no
    /// other runnable thread of their scheduling group (in practice, of this
    /// process or session), and a waking thread preempts them at once. The
    /// lowest latency for the caller's threads; but a pool that shares
    /// cores with busy threads of the same program makes almost no
    /// progress (weight 3 against 1024 for nice 0).
    Idle,
}

impl Default for WorkerPriority {
    /// `Inherit`: a pool never runs below the priority of the thread that
    /// built it unless asked to (see
    /// [`Builder::worker_priority`](crate::Builder::worker_priority)).
    fn default() -> Self {
        WorkerPriority::Inherit
    }
}

/// Gives the calling thread `priority`. Best effort: if the OS refuses (a
/// negative nice increment without the privilege, a sandbox), the thread
/// keeps the priority it has.
pub(crate) fn apply_to_current_thread(priority: WorkerPriority) {
    let result = match priority {
        WorkerPriority::Inherit | WorkerPriority::Nice(0) => Ok(()),
        WorkerPriority::Nice(increment) => imp::renice_current_thread(increment),
        WorkerPriority::Idle => imp::sched_idle_current_thread(),
    };
    // Best effort by design (see `Builder::worker_priority`): a worker at
    // the caller's priority still works, only with a less responsive caller.
    let _ = result;
}

#[cfg(all(target_os = "linux", not(loom)))]
mod imp {
    use std::io;

    use crate::sync::current_tid;

    /// The range of nice values on Linux.
    const NICE_RANGE: std::ops::RangeInclusive<i32> = -20..=19;

    pub(super) fn renice_current_thread(increment: i32) -> io::Result<()> {
        let tid = current_tid() as libc::id_t;
        // getpriority returns -1 both as a nice value and as an error:
        // errno tells them apart, so clear it first.
        // SAFETY: `__errno_location` returns this thread's errno, valid for
        // writes for as long as the thread lives.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: plain system call on our own thread id.
        let current = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) };
        if current == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(0) {
                return Err(err);
            }
        }
        let (low, high) = (*NICE_RANGE.start(), *NICE_RANGE.end());
        let target = current.saturating_add(increment).clamp(low, high);
        // With `PRIO_PROCESS` and a thread id, Linux changes that thread
        // only (see setpriority(2), "BUGS": nice values are per thread).
        // SAFETY: plain system call on our own thread id.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn sched_idle_current_thread() -> io::Result<()> {
        let param = libc::sched_param { sched_priority: 0 };
        // On Linux the policy is per thread: this changes our thread only.
        // SAFETY: `param` is a valid sched_param; our own thread id.
        if unsafe { libc::sched_setscheduler(current_tid(), libc::SCHED_IDLE, &param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(all(target_os = "linux", not(loom))))]
mod imp {
    //! No per-thread priority here: leave the process's alone.

    pub(super) fn renice_current_thread(_increment: i32) -> std::io::Result<()> {
        Ok(())
    }

    pub(super) fn sched_idle_current_thread() -> std::io::Result<()> {
        Ok(())
    }
}
