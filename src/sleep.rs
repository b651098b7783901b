//! Sleep and wake-up of idle workers.
//!
//! A worker that found no work spins briefly (in the worker loop), then
//! sleeps here. The protocol guarantees that **no wake-up is lost**: a job
//! pushed at any instant is run, even if every worker is falling asleep at
//! that instant; and that **one job wakes at most one worker**.
//!
//! # States
//!
//! An idle worker is first a *spinner* for a few rounds
//! ([`Sleep::start_spinning`]), looking for work, then a *sleeper*
//! ([`Sleep::sleep`]). `sleep` always returns with the worker a spinner
//! again, whether it was woken or declined to park: it looks for work next,
//! and ends its spin either in another `sleep` or, when it found work or
//! stops waiting, in [`Sleep::stop_spinning`]. A worker that runs a job is
//! neither.
//!
//! While any worker spins, a notifier wakes nobody: a spinner will find the
//! job, and waking a sleeper would cost the submitting thread a system call
//! for nothing. The price is an obligation on every spinner: **each spin
//! ends with a decrement of `num_spinning`, a `fence(SeqCst)` and a look at
//! the queues**, and a spinner that then sees a job it leaves behind wakes a
//! sleeper for it (`stop_spinning`) or takes it (`sleep`'s re-check
//! declines to park, and the worker spins on).
//!
//! # Protocol
//!
//! Sleeper (worker `i`, a spinner, in [`Sleep::sleep`]):
//! 1. decrement `num_spinning`; under the `sleepers` lock, push `i` and
//!    increment `num_sleepers`;
//! 2. `fence(SeqCst)`;
//! 3. re-check for work (the queues, termination, the condition it waits
//!    for); if there is none, park on its [`Parker`] until unparked;
//! 4. take itself off the list (if a notifier did not already), increment
//!    `num_spinning` and return, a spinner.
//!
//! Spinner that stops (found work, or its wait is over:
//! [`Sleep::stop_spinning`]): decrement `num_spinning`; `fence(SeqCst)`; if
//! a queue still holds a job, notify as below (after the fence).
//!
//! Notifier (after pushing a job, in [`Sleep::notify_one`]):
//! 1. (the push);
//! 2. `fence(SeqCst)`;
//! 3. load `num_spinning`; if non-zero, stop;
//! 4. load `num_sleepers`; if non-zero, pop one index under the lock and
//!    unpark that worker.
//!
//! # Why no wake-up is lost
//!
//! Both sides are the store-buffering (Dekker) pattern, closed by the single
//! total order S of SeqCst fences: a write before one fence is seen by a
//! load after a later fence in S.
//!
//! - *The notifier stops at step 3.* It read a non-zero `num_spinning`, so
//!   some spin had begun and its closing decrement was not yet visible: that
//!   spinner's closing fence comes after the notifier's in S, and its look
//!   after that fence sees the job (or it was taken). It then takes the job
//!   or wakes a sleeper for it — or leaves that to another spinner, by the
//!   same argument. Spins are bounded, so the chain ends.
//! - *The notifier reaches step 4.* If a sleeper's fence came first in S,
//!   the notifier sees `num_sleepers` counting it and unparks a listed
//!   worker, which becomes a spinner and looks for work. Otherwise the
//!   sleeper's re-check, after its fence, sees the job and it does not park.
//!
//! A worker popped while it declines to park keeps the token; its next
//! `park` returns at once, which costs one extra look for work and nothing
//! else.
//!
//! Invariant: `num_sleepers == sleepers.len()` whenever the lock is free; the
//! counter only lets notifiers skip the lock when nobody sleeps.
//!
//! Other wakers (a [`Latch`](crate::latch::Latch) or a `Task` waker that a
//! blocked worker waits on) unpark a worker's `Parker` directly; the woken
//! worker removes itself from the list in step 4.

use crate::parker::Parker;
use crate::sync::{fence, lock, mutant, AtomicUsize, Mutex, Ordering, StdArc};

#[derive(Debug)]
pub(crate) struct Sleep {
    sleepers: Mutex<Vec<usize>>,
    num_sleepers: AtomicUsize,
    num_spinning: AtomicUsize,
    parkers: Box<[StdArc<Parker>]>,
}

impl Sleep {
    pub(crate) fn new(num_workers: usize) -> Self {
        Self {
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_sleepers: AtomicUsize::new(0),
            num_spinning: AtomicUsize::new(0),
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
        // Relaxed: the fence before it provides the ordering (module docs).
        if self.num_spinning.load(Ordering::Relaxed) != 0 {
            return;
        }
        // Relaxed: as above; a stale non-zero only costs taking the lock.
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

    /// Counts the calling worker as a spinner (it found no work and looks
    /// again for a while).
    pub(crate) fn start_spinning(&self) {
        // Relaxed: a notifier that misses the increment just wakes a
        // sleeper; one that sees it relies on the fence that ends the spin.
        self.num_spinning.fetch_add(1, Ordering::Relaxed);
    }

    /// Ends the calling worker's spin without sleeping. If `has_work()`
    /// still sees a job (one whose notifier may have counted on us), wakes
    /// a sleeper for it.
    pub(crate) fn stop_spinning(&self, has_work: impl FnOnce() -> bool) {
        // Relaxed: ordered for notifiers by the fence below.
        self.num_spinning.fetch_sub(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the notifiers' fence (module docs).
        fence(Ordering::SeqCst);
        if !mutant!("stop_spinning_no_recheck") && has_work() {
            self.notify_one_after_fence();
        }
    }

    /// Puts worker `index`, a spinner, to sleep unless `has_work` finds
    /// something to do after the worker announced itself. Returns when woken
    /// or when it declined to park, in both cases a spinner again (see
    /// module docs): the caller looks for work next, and ends the spin with
    /// another `sleep` or with [`stop_spinning`](Self::stop_spinning).
    pub(crate) fn sleep(&self, index: usize, has_work: impl FnOnce() -> bool) {
        // Relaxed: ordered for notifiers by the fence below.
        self.num_spinning.fetch_sub(1, Ordering::Relaxed);
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
        self.unlist(index);
        if !mutant!("sleep_returns_idle") {
            self.start_spinning();
        }
    }

    /// Removes `index` from the sleepers, unless a notifier already did.
    fn unlist(&self, index: usize) {
        let mut sleepers = lock(&self.sleepers);
        if let Some(position) = sleepers.iter().position(|&i| i == index) {
            sleepers.swap_remove(position);
            // Relaxed: the counter mirrors the list under the lock.
            self.num_sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
