//! Sleep and wake-up of idle workers.
//!
//! A worker that found no work spins briefly (in the worker loop), then
//! sleeps here. The protocol guarantees that **no wake-up is lost**: a job
//! pushed at any instant is run, even if every worker is falling asleep at
//! that instant; and that **one job wakes at most one worker**.
//!
//! # Protocol
//!
//! Sleeper (worker `i`, in [`Sleep::sleep`]):
//! 1. under the `sleepers` lock, push `i` and increment `num_sleepers`;
//! 2. `fence(SeqCst)`;
//! 3. re-check for work (the queues, termination, the condition it waits
//!    for); if there is some, take itself off the list and return;
//! 4. park on its [`Parker`]; on waking, take itself off the list (if a
//!    notifier did not already) and return whether a notifier had taken it
//!    off. The caller then looks for work — or, if a notifier chose it and
//!    the caller leaves without looking (a waiting worker whose condition
//!    came true), passes the wake-up on with `notify_one`.
//!
//! Notifier (after pushing a job, in [`Sleep::notify_one`]):
//! 1. (the push);
//! 2. `fence(SeqCst)`;
//! 3. load `num_sleepers`; if non-zero, pop one index under the lock and
//!    unpark that worker.
//!
//! Steps 1–3 on each side are the store-buffering (Dekker) pattern: with
//! both fences in the single total order of SeqCst fences, either the
//! notifier's load sees the sleeper's increment (and wakes a listed worker),
//! or the sleeper's re-check sees the job. A worker that is popped and
//! unparked always looks for work afterwards, so the job is taken by it or
//! by someone already awake. A worker popped while it is cancelling its
//! sleep keeps the token; its next `park` returns at once, which costs one
//! extra look for work and nothing else.
//!
//! Invariant: `num_sleepers == sleepers.len()` whenever the lock is free; the
//! counter only lets notifiers skip the lock when nobody sleeps.
//!
//! Other wakers (a [`Latch`](crate::latch::Latch) or a `Task` waker that a
//! blocked worker waits on) unpark a worker's `Parker` directly; the woken
//! worker removes itself from the list in step 4.

use crate::sync::{fence, lock, mutant, AtomicUsize, Mutex, Ordering, Parker, StdArc};

#[derive(Debug)]
pub(crate) struct Sleep {
    sleepers: Mutex<Vec<usize>>,
    num_sleepers: AtomicUsize,
    parkers: Box<[StdArc<Parker>]>,
}

impl Sleep {
    pub(crate) fn new(num_workers: usize) -> Self {
        Self {
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_sleepers: AtomicUsize::new(0),
            parkers: (0..num_workers)
                .map(|_| StdArc::new(Parker::new()))
                .collect(),
        }
    }

    /// The parker of worker `index`: unparking it wakes that worker if it
    /// sleeps (or makes its next sleep return at once).
    pub(crate) fn parker(&self, index: usize) -> &StdArc<Parker> {
        &self.parkers[index]
    }

    /// Wakes one sleeping worker, if any. Call after making a job visible.
    #[inline]
    pub(crate) fn notify_one(&self) {
        // SeqCst fence: orders the caller's push before the load below, in
        // the total order shared with the fence in `sleep` (see module docs).
        if !mutant!("notify_no_fence") {
            fence(Ordering::SeqCst);
        }
        self.notify_one_after_fence();
    }

    /// [`notify_one`](Self::notify_one) for a caller that has just issued
    /// its own `fence(SeqCst)` after the push.
    #[inline]
    pub(crate) fn notify_one_after_fence(&self) {
        // Relaxed: the fence before it provides the ordering; a stale non-zero
        // only costs taking the lock.
        if self.num_sleepers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let popped = {
            let mut sleepers = lock(&self.sleepers);
            let popped = sleepers.pop();
            if popped.is_some() {
                // Relaxed: the counter mirrors the list under the lock.
                self.num_sleepers.fetch_sub(1, Ordering::Relaxed);
            }
            popped
        };
        if let Some(index) = popped {
            self.parkers[index].unpark();
        }
    }

    /// Wakes every sleeping worker (termination).
    pub(crate) fn notify_all(&self) {
        // SeqCst fence: as in `notify_one`, for the termination flag.
        fence(Ordering::SeqCst);
        let woken: Vec<usize> = {
            let mut sleepers = lock(&self.sleepers);
            // Relaxed: the counter mirrors the list under the lock.
            self.num_sleepers.store(0, Ordering::Relaxed);
            sleepers.drain(..).collect()
        };
        for index in woken {
            self.parkers[index].unpark();
        }
    }

    /// Puts worker `index` to sleep unless `has_work` finds something to do
    /// after the worker announced itself. Returns when woken: `true` if a
    /// notifier chose this worker for a job, which the caller must then look
    /// for (or hand the wake-up on to another worker).
    #[must_use = "a notified worker must look for work or pass the wake-up on"]
    pub(crate) fn sleep(&self, index: usize, has_work: impl FnOnce() -> bool) -> bool {
        {
            let mut sleepers = lock(&self.sleepers);
            sleepers.push(index);
            // Relaxed: ordered for notifiers by the fence below.
            self.num_sleepers.fetch_add(1, Ordering::Relaxed);
        }
        // SeqCst fence: pairs with the notifiers' fence (module docs).
        fence(Ordering::SeqCst);
        if mutant!("sleep_no_recheck") || !has_work() {
            self.parkers[index].park();
        }
        !self.unlist(index)
    }

    /// Removes `index` from the sleepers; `false` if a notifier already had.
    fn unlist(&self, index: usize) -> bool {
        let mut sleepers = lock(&self.sleepers);
        let Some(position) = sleepers.iter().position(|&i| i == index) else {
            return false;
        };
        sleepers.swap_remove(position);
        // Relaxed: the counter mirrors the list under the lock.
        self.num_sleepers.fetch_sub(1, Ordering::Relaxed);
        true
    }
}
