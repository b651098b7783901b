//! The one-token [`Parker`] every blocked thread of offload waits on: idle
//! workers, a worker waiting for a stolen `join` half, and threads outside
//! the pool blocked in `Task::wait`, `join` or `install`.

use crate::sync::{lock, mutant, AtomicUsize, Condvar, Mutex, Ordering, StdArc};

/// A one-token parker: `unpark` stores a token, `park` waits for it and
/// consumes it. An `unpark` that comes before the `park` is not lost. Only
/// one thread parks on a given parker at a time.
///
/// Built from an atomic state, a mutex and a condition variable (not
/// `thread::park`) so that loom can check it. `unpark` of a parker nobody is
/// parked on is one atomic swap: no lock, no system call.
///
/// Protocol: `state` is `EMPTY`, `PARKED` (the owner is waiting, or about to
/// wait, on the condvar) or `NOTIFIED` (a token is available). The owner
/// moves `EMPTY → PARKED` under the mutex and waits; `unpark` swaps in
/// `NOTIFIED` and, only if it replaced `PARKED`, takes the mutex (so the
/// owner is inside `wait`, not between its CAS and `wait`) and notifies.
#[derive(Debug, Default)]
pub(crate) struct Parker {
    state: AtomicUsize,
    lock: Mutex<()>,
    condvar: Condvar,
}

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

impl Parker {
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicUsize::new(EMPTY),
            lock: Mutex::new(()),
            condvar: Condvar::new(),
        }
    }

    /// Blocks until a token is available, then consumes it.
    pub(crate) fn park(&self) {
        // Acquire: pairs with the Release swap in `unpark`.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        let mut guard = lock(&self.lock);
        // Relaxed: the mutex orders this with `unpark`'s lock/notify.
        match self
            .state
            .compare_exchange(EMPTY, PARKED, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // A token came in meanwhile. Acquire: as above.
                self.state.swap(EMPTY, Ordering::Acquire);
                return;
            }
            Err(_) => unreachable!("two threads parked on one parker"),
        }
        loop {
            guard = self
                .condvar
                .wait(guard)
                .unwrap_or_else(|poison| poison.into_inner());
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

    /// Makes a token available, waking the parked thread if there is one.
    pub(crate) fn unpark(&self) {
        // Release: what the caller did before unparking is visible to the
        // thread that consumes the token.
        let order = if mutant!("parker_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        if self.state.swap(NOTIFIED, order) != PARKED {
            return; // nobody waits: the token is enough
        }
        // The owner set PARKED under the mutex and releases it only inside
        // `wait`: taking it here means the notification cannot fall between
        // its CAS and its wait.
        if !mutant!("parker_unpark_no_lock") {
            drop(lock(&self.lock));
        }
        self.condvar.notify_one();
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
