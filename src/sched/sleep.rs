//! Sleep and wake-up of idle workers.
//!
//! A worker that found no work spins briefly (in the worker loop), then
//! sleeps here. The protocol guarantees that **no wake-up is lost**: a job
//! pushed at any instant is run, even if every worker is falling asleep at
//! that instant; and that **one job wakes about one worker**: exactly one
//! from its notifier, or none, plus at most one more from a spinner that
//! races the woken worker to it (see [`Spinning::stop`]).
//!
//! # States
//!
//! An idle worker is first a *spinner* for a few rounds, looking for work,
//! then a *sleeper*. A spin is a value, [`Spinning`], made by
//! [`Sleep::start_spinning`]; its only ends are [`Spinning::sleep`], which
//! returns a spinner again, whether the worker was woken or declined to
//! park (it looks for work next), and [`Spinning::stop`], when it found work
//! or stops waiting. A worker that runs a job is neither. (The worker loop
//! that drives these states is [`crate::sched::worker_loop`].)
//!
//! While any worker spins, a notifier wakes nobody: a spinner will find the
//! job, and waking a sleeper would cost the submitting thread a system call
//! for nothing. The price is an obligation on every spinner: **each spin
//! ends with a decrement of `num_spinning`, a `fence(SeqCst)` and a look at
//! the queues**, and a spinner that then sees a job it leaves behind wakes a
//! sleeper for it (`stop`) or takes it (`sleep`'s re-check declines to
//! park, and the worker spins on). `Spinning` has no other way out, so the
//! compiler holds every spin to it.
//!
//! **Only a spinner takes work from a shared queue** (the injector, another
//! worker's deque) while other workers may sleep; the drains after every
//! other worker has exited (the last worker's, a late submitter's) are the
//! only exceptions, with nobody left to wake. Such a take can move a
//! batch: the jobs leave the shared queue at once and land in the taker's
//! own deque a moment later, and in between no other worker's re-check
//! can see them. The taker's closing `stop` (fence, then a look that
//! includes its own deque) sees them, and wakes a sleeper for them. A
//! worker that is not spinning only pops its own deque, which hides nothing
//! from anyone.
//!
//! # Protocol
//!
//! Sleeper (worker `i`, a spinner, in [`Spinning::sleep`]):
//! 1. decrement `num_spinning`; set bit `i` of `sleepers` (*listed*);
//! 2. `fence(SeqCst)`;
//! 3. re-check for work (the queues, termination, the condition it waits
//!    for); if there is none, park on its [`Parker`] until unparked;
//! 4. clear its bit (if a notifier did not already), increment
//!    `num_spinning` and return, a spinner.
//!
//! Spinner that stops (found work, or its wait is over: [`Spinning::stop`]):
//! decrement `num_spinning`; `fence(SeqCst)`; if a queue still holds a job,
//! notify as below (after the fence).
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
//!   after that fence sees the job, or the job was taken. Taken by whom? A
//!   worker that is not spinning pops only its own deque, where the job is
//!   visible and about to run. Any other take was a spinner's, possibly of
//!   a batch; the rest of that batch lands in the taker's deque before its
//!   closing fence, so its look after that fence sees the rest (it was
//!   taken in turn, or is still there). Either way the spinner then takes
//!   the job or wakes a sleeper for it — or leaves that to another spinner,
//!   by the same argument. Spins are bounded, so the chain ends.
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
//! Other wakers (a [`Latch`](crate::fork_join::latch::Latch) or a `Task` waker that a
//! blocked worker waits on) unpark a worker's `Parker` directly; the woken
//! worker clears its own bit in step 4.
//!
//! # The wake stamp
//!
//! A notifier that claims a sleeper stores the time in the sleeper's
//! `woken_at` word before it unparks it (Relaxed: a hint, which the woken
//! worker takes with [`Sleep::take_woken_at`] to learn how long the gap
//! from its idleness to the next job was; see [`crate::sched::spin_budget`]). It reads
//! the clock only on this path, which a futex call follows anyway. No step
//! of the protocol reads the stamp, and under loom it is neither written
//! nor read.

use std::fmt;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sched::parker::Parker;
use crate::sync::{fence, mutant, AtomicBool, AtomicU64, AtomicUsize, Ordering, StdArc};

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
    /// Per worker: when a notifier last claimed it to wake it, in
    /// nanoseconds since `epoch` (0: not since the worker looked). A hint
    /// for its spin learning ([`crate::sched::spin_budget`]); never read under loom.
    woken_at: Box<[AtomicU64]>,
    epoch: Instant,
    /// The blocking detector's sleep: a notifier that finds nobody to
    /// wake pokes it (see [`crate::blocking::detect`]).
    dormancy: Dormancy,
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
            woken_at: (0..num_workers).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            dormancy: Dormancy::new(),
        }
    }

    /// When a notifier last claimed worker `index` to wake it, if one did
    /// since the last call (see [`crate::sched::spin_budget`]).
    pub(crate) fn take_woken_at(&self, index: usize) -> Option<Instant> {
        if cfg!(loom) {
            return None;
        }
        // Relaxed: a hint; the unpark that follows the store orders it for
        // the woken worker anyway.
        match self.woken_at[index].swap(0, Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// The blocking detector's sleep (see [`crate::blocking::detect`]).
    pub(crate) fn dormancy(&self) -> &Dormancy {
        &self.dormancy
    }

    /// How many workers spin now (a hint).
    pub(crate) fn spinners(&self) -> usize {
        // Relaxed: a hint for how long to spin.
        self.num_spinning.load(Ordering::Relaxed)
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
                    if !cfg!(loom) {
                        let nanos = self.epoch.elapsed().as_nanos().max(1);
                        // Relaxed: a hint (see `take_woken_at`).
                        self.woken_at[index]
                            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                    self.parkers[index].unpark();
                    return;
                }
                // Another notifier claimed it first (`before` lacks the
                // bit): try the others.
                listed = before;
            }
        }
        // Every worker is busy: the job waits. If one of them is blocked
        // in a job, the detector should know (after our fence: see
        // `Dormancy`).
        self.dormancy.poke();
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

    /// Counts the calling worker as a spinner (it found no work in its own
    /// deque and looks elsewhere for a while). The returned token is the
    /// spin: its only ends are [`Spinning::sleep`], which hands back a new
    /// one, and [`Spinning::stop`], which closes the spin with the fence and
    /// the re-check that the notifiers count on.
    pub(crate) fn start_spinning(&self) -> Spinning<'_> {
        // Relaxed: a notifier that misses the increment just wakes a
        // sleeper; one that sees it relies on the fence that ends the spin.
        self.num_spinning.fetch_add(1, Ordering::Relaxed);
        Spinning { sleep: self }
    }

    /// Ends a spin without sleeping (see [`Spinning::stop`]).
    fn stop_spinning(&self, has_work: impl FnOnce() -> bool) {
        // Relaxed: ordered for notifiers by the fence below.
        self.num_spinning.fetch_sub(1, Ordering::Relaxed);
        // SeqCst fence: pairs with the notifiers' fence (module docs).
        fence(Ordering::SeqCst);
        if !mutant!("stop_spinning_no_recheck") && has_work() {
            self.notify_one_after_fence();
        }
    }

    /// Puts worker `index`, a spinner, to sleep (see [`Spinning::sleep`]),
    /// until `deadline` at the latest.
    fn sleep(&self, index: usize, has_work: impl FnOnce() -> bool, deadline: Option<Instant>) {
        let (word, bit) = self.slot(index);
        // Relaxed: ordered for notifiers by the fence below.
        self.num_spinning.fetch_sub(1, Ordering::Relaxed);
        // Relaxed: as above.
        word.fetch_or(bit, Ordering::Relaxed);
        // SeqCst fence: pairs with the notifiers' fence (module docs).
        fence(Ordering::SeqCst);
        if mutant!("sleep_no_recheck") || !has_work() {
            match deadline {
                None => self.parkers[index].park(),
                // A timed-out sleep is one more spurious wake-up: the worker
                // unlists itself below and looks for work, as a woken one
                // does, and a token that a notifier left meanwhile makes one
                // later `park` return early.
                Some(deadline) => {
                    self.parkers[index].park_deadline(deadline);
                }
            }
        }
        // Unlists itself unless a notifier already did. Relaxed: a notifier
        // that still sees the bit wakes a worker that is awake, which costs
        // one spurious look for work (module docs).
        word.fetch_and(!bit, Ordering::Relaxed);
    }

    /// The word of `sleepers` that holds worker `index`'s bit, and the bit.
    fn slot(&self, index: usize) -> (&AtomicUsize, usize) {
        (&self.sleepers[index / BITS], 1 << (index % BITS))
    }
}

/// A worker's spin: proof that it is counted in `num_spinning`, made by
/// [`Sleep::start_spinning`].
///
/// Whoever holds one is a spinner, and notifiers skip their wake-up while
/// it spins; so every spin must end with a decrement, a `fence(SeqCst)` and
/// a look at the queues. The type enforces it: the only ends of a spin are
/// [`sleep`](Self::sleep) and [`stop`](Self::stop) (and, only if the loop
/// unwinds, a drop that ends it as `stop` would), and code that takes
/// work where a batch can be in flight (a worker's batch from the injector
/// or another deque, invisible to every other worker until it lands in the
/// taker's deque) must hold a `Spinning` to do so: the spin's closing
/// re-check then sees the landed batch and wakes a sleeper for it (see
/// [`crate::sched::worker_loop`]).
#[must_use = "a spin must end with `sleep` or `stop`"]
pub(crate) struct Spinning<'a> {
    sleep: &'a Sleep,
}

impl<'a> Spinning<'a> {
    /// Sleeps as worker `index` unless `has_work()` finds something to do
    /// after the worker announced itself (the protocol's steps 1–4).
    /// Returns when woken or when it declined to park, a spinner again
    /// either way: the caller looks for work next, and ends that spin with
    /// another `sleep` or with [`stop`](Self::stop). With a `deadline` (a
    /// timed wait on a worker: `Task::wait_timeout`), it returns by then at
    /// the latest, as if woken.
    pub(crate) fn sleep(
        self,
        index: usize,
        has_work: impl FnOnce() -> bool,
        deadline: Option<Instant>,
    ) -> Spinning<'a> {
        let sleep = self.sleep;
        // The decrement is `Sleep::sleep`'s first step, not this token's drop.
        std::mem::forget(self);
        sleep.sleep(index, has_work, deadline);
        sleep.start_spinning()
    }

    /// Ends the spin without sleeping: the worker found work, or what it
    /// waited for. If `has_work()` still sees a job after the fence (one
    /// whose notifier counted on this spinner, or a batch this worker just
    /// landed in its own deque), wakes a sleeper for it.
    pub(crate) fn stop(self, has_work: impl FnOnce() -> bool) {
        let sleep = self.sleep;
        std::mem::forget(self);
        sleep.stop_spinning(has_work);
    }
}

#[cfg(offload_mutant = "batch_taken_outside_spin")]
impl<'a> Spinning<'a> {
    /// A token that nobody counted: only the mutant that takes a batch
    /// outside a spin makes one (see `crate::sched::worker_loop`).
    pub(crate) fn unaccounted(sleep: &'a Sleep) -> Self {
        Spinning { sleep }
    }
}

impl Drop for Spinning<'_> {
    /// Only reached if a spinner unwinds (a bug in the worker loop, since
    /// no user code runs while spinning): ends the spin as `stop` does,
    /// assuming there is work, so that nobody is left counting on it.
    fn drop(&mut self) {
        self.sleep.stop_spinning(|| true);
    }
}

impl fmt::Debug for Spinning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spinning").finish_non_exhaustive()
    }
}

/// The detector's sleep while no job waits, which a notifier that finds no
/// worker to wake pokes. Why the detector sleeps: `blocking/detect.rs`.
pub(crate) struct Dormancy {
    dormant: CachePadded<AtomicBool>,
    parker: StdArc<Parker>,
}

impl Dormancy {
    pub(crate) fn new() -> Self {
        Self {
            dormant: CachePadded::new(AtomicBool::new(false)),
            parker: StdArc::new(Parker::new()),
        }
    }

    /// The detector sleeps until poked, unless `has_waiting()` sees a job
    /// after it raised `dormant`. Returns whether it slept.
    pub(crate) fn sleep_unless(&self, has_waiting: impl FnOnce() -> bool) -> bool {
        // Relaxed: ordered for notifiers by the fence below.
        self.dormant.store(true, Ordering::Relaxed);
        // SeqCst fence: pairs with the notifier's fence after its push
        // (module docs).
        if !mutant!("dormancy_no_fence") {
            fence(Ordering::SeqCst);
        }
        if has_waiting() {
            // Relaxed: the detector stays awake; a poke that already
            // swapped it leaves a token, one early tick.
            self.dormant.store(false, Ordering::Relaxed);
            return false;
        }
        self.parker.park();
        true
    }

    /// A notifier found no worker to wake for the job it pushed (after its
    /// fence): wakes the detector if it sleeps.
    #[inline]
    pub(crate) fn poke(&self) {
        // Relaxed: ordered by the notifier's fence (module docs); the swap
        // decides which poker unparks.
        if self.dormant.load(Ordering::Relaxed) && self.dormant.swap(false, Ordering::Relaxed) {
            self.parker.unpark();
        }
    }

    /// A thread made a list of held-back completion wake-ups non-empty
    /// (see [`crate::task::completions`]): the detector must not sleep for
    /// good without seeing it, so fence and poke.
    pub(crate) fn keep_awake(&self) {
        // SeqCst fence: orders the list's `pending` store before the look
        // at `dormant`, in the total order shared with the fence in
        // `sleep_unless`.
        if !mutant!("deferred_no_fence") {
            fence(Ordering::SeqCst);
        }
        self.poke();
    }

    /// Wakes the detector whatever it does (termination).
    pub(crate) fn wake(&self) {
        self.parker.unpark();
    }

    /// The detector's timed tick.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn sleep_until(&self, deadline: Instant) {
        self.parker.park_deadline(deadline);
    }
}

impl fmt::Debug for Dormancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dormancy")
            // Relaxed: a snapshot for debugging.
            .field("dormant", &self.dormant.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
