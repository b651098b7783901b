//! The one-token [`Parker`] every blocked thread of offload waits on: idle
//! workers, a worker waiting for a stolen `join` half, and threads outside
//! the pool blocked in `Task::wait`, `join` or `install`.

use std::fmt;

use crate::sync::{mutant, thread, AtomicUsize, Ordering, StdArc, UnsafeCell};

/// A one-token parker: `unpark` stores a token, `park` waits for it and
/// consumes it. An `unpark` that comes before the `park` is not lost. One
/// thread, its *owner*, parks on a given parker, always the same one (debug
/// builds check it): a parker is made per worker, or per thread.
///
/// **`unpark` takes no lock**: it is one atomic swap, plus the owner's
/// `Thread::unpark` if the owner is parked, which is itself a swap and a
/// futex wake where std's thread parker is futex-like (Linux, Windows,
/// macOS, the BSDs; std's fallback parker on other targets locks). An
/// event loop that submits a job therefore cannot wait behind a worker that
/// was preempted half-way into or out of its sleep, as it could behind a
/// mutex the worker held.
///
/// Protocol: `state` is `EMPTY`, `PARKED` (the owner is blocked in
/// `thread::park`, or about to be) or `NOTIFIED` (a token is available).
/// - The owner's `Thread` handle is in `owner`: recorded when the parker is
///   made ([`Parker::for_current_thread`]) or on the owner's first `park`,
///   before it ever sets `PARKED`; never written again. (Recording it on
///   the first `park` calls `thread::current()`, which std supports in
///   `thread_local!` destructors only since 2024, rust-lang/rust#127912;
///   hence the per-thread parker records it when it is made.)
/// - `park` consumes a token if there is one; otherwise it moves `EMPTY →
///   PARKED` and calls `thread::park` until it can move `NOTIFIED → EMPTY`
///   (any other return of `thread::park` is spurious: another unpark of the
///   same thread, or none at all).
/// - `unpark` swaps in `NOTIFIED` and, only if it took `PARKED` out, unparks
///   the owner's thread. A thread's park token is sticky, so an
///   unpark that lands before the owner's `thread::park` still wakes it.
///
/// Built on `thread::park` (through the sync facade) so that loom checks the
/// same code: loom's `park`/`unpark` model the thread's token.
pub(crate) struct Parker {
    state: AtomicUsize,
    /// The owner's thread; see the protocol for who writes and reads it.
    owner: UnsafeCell<Option<thread::Thread>>,
}

// SAFETY: `owner` is written once, by the owner, before its first `PARKED`
// store (Release); every other access is a read, by the owner or by an
// unparker after its AcqRel swap took that `PARKED` out. No write races a
// read. `state` is atomic.
unsafe impl Sync for Parker {}

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

impl Parker {
    /// A parker whose owner is the first thread that parks on it.
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(EMPTY),
            owner: UnsafeCell::new(None),
        }
    }

    /// A parker owned by the calling thread, recorded now.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn for_current_thread() -> Self {
        Self {
            state: AtomicUsize::new(EMPTY),
            owner: UnsafeCell::new(Some(thread::current())),
        }
    }

    /// Blocks until a token is available, then consumes it. Only the
    /// parker's owner calls it.
    pub(crate) fn park(&self) {
        // Acquire: pairs with the Release of `unpark`'s swap, so the token
        // carries what the unparker wrote before it.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.record_owner();
        // Release: publishes `owner` to the unparker that takes `PARKED` out.
        let order = if mutant!("parker_owner_unpublished") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        let parked = if mutant!("parker_overwrites_token") {
            self.state.store(PARKED, order);
            Ok(EMPTY)
        } else {
            self.state
                .compare_exchange(EMPTY, PARKED, order, Ordering::Relaxed)
        };
        match parked {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // A token came in meanwhile. Acquire: as above; a swap, not a
                // store, so a second token cannot slip in unacquired.
                self.state.swap(EMPTY, Ordering::Acquire);
                return;
            }
            Err(_) => unreachable!("two threads parked on one parker"),
        }
        loop {
            thread::park();
            // Acquire: as above. A failure is a spurious wake-up.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// [`park`](Self::park), giving up at `deadline`: returns whether it
    /// consumed a token. On giving up the owner takes `PARKED` back out
    /// with a swap, so a racing `unpark` either sees `PARKED` gone and only
    /// leaves its token for the next `park`, or came first and its token is
    /// consumed here.
    pub(crate) fn park_deadline(&self, deadline: std::time::Instant) -> bool {
        // Acquire: as in `park`.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return true;
        }
        self.record_owner();
        // Release: as in `park`.
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // Acquire: as in `park`.
                self.state.swap(EMPTY, Ordering::Acquire);
                return true;
            }
            Err(_) => unreachable!("two threads parked on one parker"),
        }
        loop {
            let now = std::time::Instant::now();
            if now >= deadline {
                // Acquire: if a token came, what its unparker wrote is ours.
                let taken = if mutant!("parker_timeout_stores") {
                    self.state.store(EMPTY, Ordering::Relaxed);
                    PARKED
                } else {
                    self.state.swap(EMPTY, Ordering::Acquire)
                };
                return taken == NOTIFIED;
            }
            crate::sync::park_timeout(deadline - now);
            // Acquire: as above. A failure is a spurious wake-up or the
            // timeout, which the next turn tells apart.
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Records the calling thread as the owner, on its first `park`.
    fn record_owner(&self) {
        let recorded = self.owner.with(|owner| {
            // SAFETY: only the owner calls `park`, and only `park` writes
            // `owner`: this read races no write.
            let owner = unsafe { &*owner };
            debug_assert!(
                owner
                    .as_ref()
                    .is_none_or(|owner| owner.id() == thread::current().id()),
                "a Parker is parked on by one thread only"
            );
            owner.is_some()
        });
        if recorded {
            return;
        }
        let current = thread::current();
        self.owner.with_mut(|owner| {
            // SAFETY: the first `park`, by the owner, before any `PARKED`
            // store: no unparker reads `owner` yet (see `impl Sync`).
            unsafe { *owner = Some(current) };
        });
    }

    /// Makes a token available, waking the parked owner if there is one.
    /// Never blocks.
    pub(crate) fn unpark(&self) {
        // AcqRel: Release so that what the caller did before unparking is
        // visible to the thread that consumes the token; Acquire so that,
        // having taken `PARKED` out, we see the `owner` recorded before it.
        let order = if mutant!("parker_relaxed") {
            Ordering::Acquire
        } else {
            Ordering::AcqRel
        };
        if self.state.swap(NOTIFIED, order) != PARKED {
            return; // nobody waits: the token is enough
        }
        self.owner.with(|owner| {
            // SAFETY: we took `PARKED` out, so the owner recorded itself
            // before (Release/Acquire above) and never writes `owner` again.
            let owner = unsafe { &*owner };
            if let Some(owner) = owner {
                owner.unpark();
            }
        });
    }
}

impl Default for Parker {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Parker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Relaxed) {
            EMPTY => "empty",
            PARKED => "parked",
            _ => "notified",
        };
        f.debug_struct("Parker").field("state", &state).finish()
    }
}

impl std::task::Wake for Parker {
    fn wake(self: StdArc<Self>) {
        self.unpark();
    }

    fn wake_by_ref(self: &StdArc<Self>) {
        self.unpark();
    }
}
