//! Sleep and wake-up of idle workers.
//!
//! A worker that found no work spins briefly (in the worker loop), then
//! sleeps here. The protocol guarantees that **no wake-up is lost**: a job
//! pushed at any instant is run, even if every worker is falling asleep at
//! that instant; and that **one job wakes about one worker**: exactly one
//! from its notifier, or none, plus at most one more from a spinner that
//! races the woken worker to it (see `stop_spinning`).
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
//! 1. decrement `num_spinning`; set bit `i` of `sleepers` (*listed*);
//! 2. `fence(SeqCst)`;
//! 3. re-check for work (the queues, termination, the condition it waits
//!    for); if there is none, park on its [`Parker`] until unparked;
//! 4. clear its bit (if a notifier did not already), increment
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
//! 4. load the `sleepers` words; for a set bit, clear it with a
//!    `fetch_and`; if that cleared it (no other notifier claimed it first),
//!    unpark that worker, else try the next set bit.
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
//! - *The notifier reaches step 4.* Take any worker W and the fence F_W of
//!   its `sleep` just before a park. If the notifier's fence comes first in
//!   S, W's re-check after F_W sees the job and W does not park. If F_W
//!   comes first, the notifier's load sees W's bit, unless another notifier
//!   claimed it since, and that claim's unpark ends this park (the token
//!   cannot be consumed by an earlier one). So the notifier either claims
//!   and wakes a listed worker, which then looks for work, or finds every
//!   worker awake or about to see the job.
//!
//! A claim is one atomic `fetch_and`: of two notifiers racing for the same
//! bit exactly one clears it, so two jobs wake two different workers. (No
//! wake-up rests on the claim: a worker woken twice for two jobs runs one
//! and, ending its spin, wakes another for the second. Loom cannot tell the
//! difference; the claim is for latency.) A worker
//! claimed while it declines to park keeps the token; its next `park`
//! returns at once, which costs one extra look for work and nothing else.
//!
//! # Nothing here blocks
//!
//! There is no lock on either side: a notifier's work is loads, a
//! `fetch_and` per contested bit (a lost race moves on to the next bit) and
//! [`Parker::unpark`], which takes no lock either where std's thread parker
//! is futex-like (Linux, Windows, macOS, the BSDs). A
//! submitting event loop cannot wait behind a worker that was preempted in
//! the middle of falling asleep or waking up (with a lock, and workers at a
//! lower priority than the loop, that wait was measured in milliseconds).
//!
//! Other wakers (a [`Latch`](crate::latch::Latch) or a `Task` waker that a
//! blocked worker waits on) unpark a worker's `Parker` directly; the woken
//! worker clears its own bit in step 4.

use crate::parker::Parker;
use crate::sync::{fence, mutant, AtomicUsize, Ordering, StdArc};

/// Bits per word of the sleeper set.
const BITS: usize = usize::BITS as usize;

#[derive(Debug)]
pub(crate) struct Sleep {
    /// Bit `i % BITS` of word `i / BITS` is set while worker `i` is listed
    /// as a sleeper. A notifier wakes the lowest listed index, so under a
    /// light load the same few workers take the jobs and the others stay
    /// asleep.
    sleepers: Box<[AtomicUsize]>,
    num_spinning: AtomicUsize,
    parkers: Box<[StdArc<Parker>]>,
}

impl Sleep {
    pub(crate) fn new(num_workers: usize) -> Self {
        Self {
            sleepers: (0..num_workers.div_ceil(BITS))
                .map(|_| AtomicUsize::new(0))
                .collect(),
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
        for (word_index, word) in self.sleepers.iter().enumerate() {
            // Relaxed: as above.
            let mut listed = word.load(Ordering::Relaxed);
            while listed != 0 {
                let bit = listed & listed.wrapping_neg();
                // Relaxed: the claim only decides who unparks the worker;
                // the job reaches it through the queue and the unpark's
                // token.
                let before = word.fetch_and(!bit, Ordering::Relaxed);
                if before & bit != 0 {
                    let index = word_index * BITS + bit.trailing_zeros() as usize;
                    self.parkers[index].unpark();
                    return;
                }
                // Another notifier claimed it first (`before` lacks the
                // bit): try the others.
                listed = before;
            }
        }
    }

    /// Wakes every sleeping worker (termination).
    pub(crate) fn notify_all(&self) {
        // SeqCst fence: as in `notify_one`, for the termination flag.
        fence(Ordering::SeqCst);
        for (word_index, word) in self.sleepers.iter().enumerate() {
            // Relaxed: as in `notify_one_after_fence`.
            let mut listed = word.swap(0, Ordering::Relaxed);
            while listed != 0 {
                let index = word_index * BITS + listed.trailing_zeros() as usize;
                self.parkers[index].unpark();
                listed &= listed - 1;
            }
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
        let (word, bit) = self.slot(index);
        // Relaxed: ordered for notifiers by the fence below.
        self.num_spinning.fetch_sub(1, Ordering::Relaxed);
        // Relaxed: as above.
        word.fetch_or(bit, Ordering::Relaxed);
        // SeqCst fence: pairs with the notifiers' fence (module docs).
        fence(Ordering::SeqCst);
        if mutant!("sleep_no_recheck") || !has_work() {
            self.parkers[index].park();
        }
        // Unlists itself unless a notifier already did. Relaxed: a notifier
        // that still sees the bit wakes a worker that is awake, which costs
        // one spurious look for work (module docs).
        word.fetch_and(!bit, Ordering::Relaxed);
        if !mutant!("sleep_returns_idle") {
            self.start_spinning();
        }
    }

    /// The word of `sleepers` that holds worker `index`'s bit, and the bit.
    fn slot(&self, index: usize) -> (&AtomicUsize, usize) {
        (&self.sleepers[index / BITS], 1 << (index % BITS))
    }
}
