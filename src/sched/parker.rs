//! The one-token [`Parker`] every blocked thread of offload waits on: idle
//! workers, a worker waiting for a stolen `join` half, and threads outside
//! the pool blocked in `Task::wait`, `join` or `install`.

use std::fmt;

use crate::sync::{mutant, thread, AtomicUsize, Ordering, StdArc, UnsafeCell};

/// A one-token parker: `unpark` stores a token, `park` waits for it and
/// consumes it. An `unpark` that comes before the `park` is not lost. One
/// thread at a time, its *owner*, parks on a given parker (debug builds
/// check it): a parker is made per worker place, or per thread. A place's
/// parker passes to the thread that takes the place ([`Parker::rebind`]).
///
/// **`unpark` takes no lock**: it is one atomic exchange, plus the owner's
/// `Thread::unpark` if the owner is parked, which is itself a swap and a
/// futex wake where std's thread parker is futex-like (Linux, Windows,
/// macOS, the BSDs; std's fallback parker on other targets locks). An
/// event loop that submits a job therefore cannot wait behind a worker that
/// was preempted half-way into or out of its sleep, as it could behind a
/// mutex the worker held.
///
/// Protocol: `state` is `EMPTY`, `PARKED` (the owner is blocked in
/// `thread::park`, or about to be), `WAKING` (an unparker took `PARKED` out
/// and is reading `owner`) or `NOTIFIED` (a token is available).
/// - The owner's `Thread` handle is in `owner`: recorded when the parker is
///   made ([`Parker::for_current_thread`]), on the owner's first `park`, or
///   by [`rebind`](Parker::rebind) when a worker's place passes to another
///   thread (see [`crate::blocking`](mod@crate::blocking)); always by the owner, before it sets
///   `PARKED`. (Recording it on the first `park` calls `thread::current()`,
///   which std supports in `thread_local!` destructors only since 2024,
///   rust-lang/rust#127912; hence the per-thread parker records it when it
///   is made.)
/// - `park` consumes a token if there is one; otherwise it moves `EMPTY →
///   PARKED` and calls `thread::park` until it can move `NOTIFIED → EMPTY`
///   (any other return of `thread::park` is spurious: another unpark of the
///   same thread, a `WAKING` unparker not done yet, or none at all).
/// - `unpark` moves `EMPTY` or `NOTIFIED` to `NOTIFIED` and returns. If it
///   finds `PARKED` it moves it to `WAKING`, clones `owner`, swaps in
///   `NOTIFIED` and only then unparks the clone: the owner cannot leave
///   `park` before `NOTIFIED`, so nobody rebinds `owner` while an unparker
///   reads it. An unpark that finds `WAKING` writes `WAKING` back: a
///   read-modify-write, which the waking unparker's swap continues, so the
///   owner's acquiring exchange of `NOTIFIED` still carries that unparker's
///   writes (a release sequence). A thread's park token is sticky, so an
///   unpark that lands before the owner's `thread::park` still wakes it.
///
/// Built on `thread::park` (through the sync facade) so that loom checks the
/// same code: loom's `park`/`unpark` model the thread's token.
pub(crate) struct Parker {
    state: AtomicUsize,
    /// The owner's thread; see the protocol for who writes and reads it.
    owner: UnsafeCell<Option<thread::Thread>>,
}

// SAFETY: `owner` is written only by the owner while it is not parked
// (`state` is `EMPTY` or `NOTIFIED`: on its first `park`, or in `rebind`),
// before its next `PARKED` store (Release). Every other access is a read: by
// the owner, or by an unparker while `state` is `WAKING`, which only that
// unparker's `PARKED → WAKING` exchange (Acquire) begins and only its swap
// to `NOTIFIED` ends, and during which the owner is still parked. No write
// races a read. `state` is atomic.
unsafe impl Sync for Parker {}

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;
const WAKING: usize = 3;

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
        self.wait_for_token();
    }

    /// The owner, `PARKED` or past it: parks until it can move `NOTIFIED →
    /// EMPTY`. It looks before each `thread::park`, as it would after a
    /// spurious wake-up (which loom does not produce: looking first lets
    /// the models see an owner leave as soon as `NOTIFIED` is there).
    fn wait_for_token(&self) {
        loop {
            // Acquire: as in `park`. A failure is a spurious wake-up, or an
            // unparker still `WAKING` this thread (its unpark follows).
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            thread::park();
        }
    }

    /// Makes the calling thread the owner, in place of the thread that
    /// parked on this parker until now: a worker's place, whose parker the
    /// pool's sleepers and latches unpark, passes from one thread to
    /// another (see [`crate::blocking`](mod@crate::blocking)). The caller must make sure that
    /// the previous owner does not park on it any more (it handed the
    /// place over, which happens before this call) and is not parked on it
    /// now; a token it left stays, and costs the new owner one early
    /// return from `park`.
    pub(crate) fn rebind(&self) {
        let current = thread::current();
        self.owner.with_mut(|owner| {
            // SAFETY: the previous owner is not parked (the caller's
            // contract), so `state` is not `PARKED` or `WAKING` and no
            // unparker reads `owner` (see `impl Sync`); this thread, the
            // owner now, writes it before its first `PARKED` store.
            unsafe { *owner = Some(current) };
        });
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
                    Ok(PARKED)
                } else {
                    self.state
                        .compare_exchange(PARKED, EMPTY, Ordering::Acquire, Ordering::Acquire)
                };
                match taken {
                    Ok(_) => return false,
                    Err(NOTIFIED) => {
                        // Acquire: as in `park`.
                        self.state.swap(EMPTY, Ordering::Acquire);
                        return true;
                    }
                    // An unparker is reading `owner`: it is about to leave
                    // a token and unpark this thread, so wait for that
                    // rather than leave (which could let `owner` be
                    // rebound under its read).
                    Err(_) => {
                        self.wait_for_token();
                        return true;
                    }
                }
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
        // A guess, which the exchange below checks: most unparks find the
        // owner running (`EMPTY`), and then the exchange is the only access.
        let mut state = EMPTY;
        loop {
            // Release, on every path: what the caller did before unparking
            // is visible to the thread that consumes the token (see the
            // protocol on `WAKING`). Acquire too when taking `PARKED` out,
            // to see the `owner` recorded before it.
            let (next, order) = match state {
                PARKED => (WAKING, Ordering::AcqRel),
                WAKING => (WAKING, Ordering::Release),
                _ => (NOTIFIED, Ordering::Release),
            };
            let order = if mutant!("parker_relaxed") {
                Ordering::Acquire
            } else {
                order
            };
            match self
                .state
                .compare_exchange_weak(state, next, order, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        if state != PARKED {
            return; // nobody waits, or somebody is waking it: the token is enough
        }
        // Release: as above; a swap, so that a `WAKING` written meanwhile by
        // another unparker is part of this release sequence.
        let notify = || self.state.swap(NOTIFIED, Ordering::Release);
        if mutant!("parker_wakes_before_reading_owner") {
            // Broken variant: the owner may leave `park` and rebind while
            // the read below is under way. (The yield is a preemption
            // point: loom schedules only at its own operations.)
            notify();
            crate::sync::spin_loop();
        }
        let owner = self.owner.with(|owner| {
            // SAFETY: we moved `PARKED` to `WAKING`, so the owner recorded
            // itself before (Release/Acquire above) and cannot rebind until
            // our `NOTIFIED` below (see `impl Sync`).
            unsafe { (*owner).clone() }
        });
        if !mutant!("parker_wakes_before_reading_owner") {
            notify();
        }
        if let Some(owner) = owner {
            owner.unpark();
        }
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
            WAKING => "waking",
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
