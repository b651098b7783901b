//! The sync facade: every atomic, cell, lock and thread primitive that a
//! protocol of this crate touches comes from here.
//!
//! Under `cfg(loom)` the names resolve to [loom]'s instrumented types, so the
//! code that ships is the code the models in `loom-tests/` check. Outside
//! loom they are the standard library's (or crossbeam's) zero-cost types.
//!
//! Rules for the rest of the crate:
//! - no `std::sync::atomic`, `std::cell::UnsafeCell`, `std::sync::Mutex` or
//!   `std::thread` outside this module (the crossbeam queues are wrapped in
//!   [`crate::sched::deque`] for the same reason), with one exception: a worker's
//!   plain `std::cell::Cell`s in [`crate::sched::worker`], which only its owner
//!   thread ever touches, so there is nothing for loom to check;
//! - every spin loop calls [`spin_loop`] so loom can schedule other threads;
//! - total-order arguments use [`fence`]`(SeqCst)`, never SeqCst accesses,
//!   because loom models SeqCst accesses as AcqRel.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard};
    pub(crate) use std::thread;

    /// A hint to the CPU that we are in a spin loop.
    #[inline]
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }

    /// `UnsafeCell` with loom's closure-based access API, so call sites are
    /// the same in both builds.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        #[inline]
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        /// Runs `f` with a shared pointer to the contents.
        #[inline]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Runs `f` with a unique pointer to the contents.
        #[inline]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// Blocks the calling thread for at most `timeout`, or until its
    /// `Thread::unpark`; may return spuriously.
    pub(crate) fn park_timeout(timeout: std::time::Duration) {
        std::thread::park_timeout(timeout);
    }

    /// Declares a thread-local; loom needs its own macro to reset them per
    /// execution.
    macro_rules! facade_thread_local {
        ($($tt:tt)*) => { std::thread_local!($($tt)*); };
    }
    pub(crate) use facade_thread_local as thread_local;
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};
    pub(crate) use loom::thread;

    /// Under loom a spin loop must yield, or the model never schedules the
    /// thread it is waiting for.
    #[inline]
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }

    /// loom has no timed park: return at once, as a spurious wake-up that
    /// every caller must handle anyway.
    pub(crate) fn park_timeout(_timeout: std::time::Duration) {
        loom::thread::yield_now();
    }

    /// loom's `thread_local!` has no `const { .. }` initialiser: drop it.
    macro_rules! facade_thread_local {
        (static $name:ident: $t:ty = const { $init:expr };) => {
            loom::thread_local!(static $name: $t = $init;);
        };
        ($($tt:tt)*) => { loom::thread_local!($($tt)*); };
    }
    pub(crate) use facade_thread_local as thread_local;
}

pub(crate) use imp::*;

/// `std`'s `Arc`, in both builds: a [`std::task::Waker`] can only be made
/// from it. The primitives inside (a [`Parker`](crate::sched::parker::Parker)) are
/// still the facade's, so loom checks them; only the reference count is not
/// modelled.
pub(crate) use std::sync::Arc as StdArc;

/// A statistics counter ([`crate::observe`]): std's `AtomicU64` in both
/// builds. No protocol reads one (nothing waits on a count, nothing is
/// published through one), so loom has nothing to check there, and loom
/// atomics would only multiply the interleavings of every model that runs
/// a job. Relaxed accesses only.
pub(crate) use std::sync::atomic::AtomicU64 as StatCounter;

/// The calling thread's OS id (what the stall detector signals, and what
/// `/proc/self/task/<tid>` and the priorities name).
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn current_tid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail; a raw system
    // call, so async-signal-safe too.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// How many threads at once hold a [`thread_slot`].
pub(crate) const THREAD_SLOTS: usize = 16;

/// A number below [`THREAD_SLOTS`] that no other live thread holds, for as
/// long as this thread lives: the index of counters that only this thread
/// writes (see [`crate::observe::metrics`]). `None` when every slot is
/// taken (then for the rest of the thread's life), while the thread's
/// thread-locals are being destroyed, and under loom, where a static cannot
/// hold the model's primitives.
///
/// A slot passes from an exiting thread to a new one through a mutex, so
/// every write of the old holder happens before every write of the new.
/// The fast path is one read of a thread-local without a destructor.
#[inline]
pub(crate) fn thread_slot() -> Option<usize> {
    #[cfg(not(loom))]
    {
        slot::get()
    }
    #[cfg(loom)]
    None
}

#[cfg(not(loom))]
mod slot {
    use std::cell::Cell;

    use super::THREAD_SLOTS;

    /// `SLOT` before the thread asked for one.
    const UNASSIGNED: usize = usize::MAX;
    /// `SLOT` of a thread that has none, and will have none.
    const NONE: usize = usize::MAX - 1;

    /// The slots handed out so far, and those given back.
    static FREE: std::sync::Mutex<(usize, Vec<usize>)> = std::sync::Mutex::new((0, Vec::new()));

    std::thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
        /// Gives the slot back when the thread exits.
        static RELEASE: Release = const { Release };
    }

    struct Release;

    impl Drop for Release {
        fn drop(&mut self) {
            // `SLOT` has no destructor: it is still there, for the
            // thread-local destructors that run after this one.
            let slot = SLOT.with(|slot| slot.replace(NONE));
            if slot < THREAD_SLOTS {
                lock().1.push(slot);
            }
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, (usize, Vec<usize>)> {
        FREE.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    #[inline]
    pub(super) fn get() -> Option<usize> {
        match SLOT.with(Cell::get) {
            slot if slot < THREAD_SLOTS => Some(slot),
            UNASSIGNED => assign(),
            _ => None,
        }
    }

    #[cold]
    fn assign() -> Option<usize> {
        // Registers the destructor first: a thread whose thread-locals are
        // being destroyed could not give a slot back, so it takes none.
        let slot = if RELEASE.try_with(|_| ()).is_ok() {
            let mut free = lock();
            free.1.pop().or_else(|| {
                let next = free.0;
                (next < THREAD_SLOTS).then(|| {
                    free.0 += 1;
                    next
                })
            })
        } else {
            None
        };
        SLOT.with(|cell| cell.set(slot.unwrap_or(NONE)));
        slot
    }
}

/// `mutant!("name")` is `true` only in a build with
/// `RUSTFLAGS='--cfg offload_mutant="name"'`: a deliberately broken variant
/// of one protocol step, which a loom model must catch (see
/// `loom-tests/README.md`). In every other build it is `false` and the
/// branch compiles away.
macro_rules! mutant {
    ($name:literal) => {
        cfg!(offload_mutant = $name)
    };
}
pub(crate) use mutant;

/// Locks `mutex`, ignoring poisoning: every critical section in this crate
/// leaves its data consistent before anything that can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
