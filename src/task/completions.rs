//! Completion wake-ups held back while the pool is backlogged, so that an
//! event loop awaiting many Tasks is woken once per batch of them.
//!
//! # Why
//!
//! A loop that awaits hundreds of Tasks (a server fanning requests out to
//! the pool) is woken by each completion. With a worker per core, the
//! completions of a backlogged pool come one every job length divided by
//! the workers: far enough apart that the loop handles one, finds nothing
//! else ready and parks again. Parking and being woken (`epoll_wait`, a
//! context switch each way) cost the loop several microseconds of its own
//! CPU per job, more than handling the completion. Peers with a thread per
//! job wake the loop as often, but their hundreds of runnable threads keep
//! it off the CPU until many completions are ready.
//!
//! # The rule
//!
//! A worker that completes a Task whose waker is registered holds the
//! wake-up back (keeps a clone of the waker in its place's [`Deferred`]
//! list) when all of these hold: the pool has a blocking detector (see
//! below), a job waits behind this one (in the worker's deque or the
//! pool's shared queues), and the worker's recent jobs took at most half
//! of [`WINDOW`] each. Otherwise it wakes what it holds, then the Task.
//! What it holds is woken:
//!
//! - by the worker after a job, once the oldest entry is [`WINDOW`] old,
//!   or at once when it holds [`MAX_HELD`];
//! - by the worker after a job that added nothing to the batch (no Task
//!   of it had a waker registered): then nobody else awaits on this
//!   worker's side (a loop that awaits one Task at a time, as a burst of
//!   jobs awaited in order does), and holding on would only delay the
//!   Task held;
//! - by the worker when it finds no job (before it spins or sleeps);
//! - by the worker, directly, when it enters
//!   [`blocking`](crate::blocking), and when the worker thread exits;
//! - by the blocking detector at each of its ticks.
//!
//! The detector is what makes holding back safe: a job started after the
//! hold-back may wait for what the loop does once woken (a pipeline stage,
//! a channel), and then its worker runs no flush until that job returns.
//! The detector's thread runs no user code but these wakers (an
//! executor's `wake`, which schedules and returns), so it wakes the list
//! within a tick (at most 10 ms, see [`crate::blocking::detect`]). A pool
//! without a detector (`Builder::detect_blocking(false)`, or a platform
//! without detection) never holds a wake-up back.
//!
//! # One wake-up per batch
//!
//! Waking a batch from the worker, one waker after the other, does not
//! batch anything: the first wake-up makes the loop runnable on the
//! worker's core, the scheduler lets it preempt the worker at once (it
//! slept, so it is owed CPU time), and the loop handles that one Task and
//! parks before the worker wakes the next. So a worker wakes only the
//! first waker of a batch and *hands the rest over* (a process-wide list):
//! whichever thread polls a Task to completion next (the loop, for the
//! first Task) wakes them from its own thread, where waking a waker of its
//! own runtime is a store, not a system call, and its executor polls them
//! all in the same turn. Handed-over wake-ups that nobody took are woken
//! by the next flush of any worker or detector. On the 2-core VM
//! (`examples/fanout.rs`, 256 Tasks in flight, 50 µs jobs) this took the
//! loop from 0.8 parks per job to 0.17 and its CPU per job from 3–4 µs
//! to about 0.8 µs.
//!
//! # The protocol with the dormant detector
//!
//! The detector sleeps for good while no job waits; a held-back wake-up
//! must keep it awake. This is the store-buffering pattern of
//! `Dormancy` (the detector's sleep): a thread that makes a list (a place's, or the handed-over
//! one) non-empty stores its `pending` flag under the list's lock, issues
//! a `fence(SeqCst)` and pokes the dormancy (a load of `dormant`); the
//! detector raises `dormant`, fences, and then looks at the queues and at
//! every list's `pending`. Either it sees the entry (and stays awake to
//! wake it at its next tick), or the poker sees `dormant` and unparks it.
//! Each entry is woken exactly once: whoever takes a list under its lock
//! wakes what it took. (Loom: `held_back_wake_up_reaches_the_dormant_detector`,
//! with the mutant `deferred_no_fence`, which drops the holder's fence and
//! leaves the detector asleep with a wake-up held.)

use std::mem;
use std::task::Waker;
use std::time::Duration;

use crate::sync::{self, AtomicBool, Mutex, MutexGuard, Ordering};
use crate::unwind::wake_quietly;

/// How long a worker holds back a completion's wake-up at most while it
/// runs jobs (plus the job it is in). Measured with `examples/fanout.rs`
/// (256 Tasks in flight on two workers, 50 µs jobs): 250 µs took the
/// loop's CPU per job from 3–4 µs to 0.8 µs, 500 µs to 0.6–0.9 µs; the
/// shorter one adds less to a completion's latency, which under such a
/// backlog already includes milliseconds of queueing.
pub(crate) const WINDOW: Duration = Duration::from_micros(250);

/// Wake-ups a worker holds back at most: past that, a batch saves the loop
/// nothing more, and the clones of the wakers stay few.
pub(crate) const MAX_HELD: usize = 64;

/// One place's held-back wake-ups.
pub(crate) struct Deferred {
    wakers: Mutex<Vec<Waker>>,
    /// Whether `wakers` is non-empty: written under its lock, read by the
    /// detector without it (module docs).
    pending: AtomicBool,
}

impl Deferred {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            wakers: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            wakers: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        // A panic never happens under this lock (a `Vec` push or take),
        // but a poisoned lock still holds a valid list.
        self.wakers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Adds `waker` to the list. Returns whether the list was empty: then
    /// the caller keeps its pool's detector awake for it
    /// (`Dormancy::keep_awake`, module docs).
    pub(crate) fn push(&self, waker: Waker) -> bool {
        let mut wakers = self.lock();
        wakers.push(waker);
        let first = wakers.len() == 1;
        if first {
            // Relaxed: ordered for the detector by the caller's fence
            // (module docs); the lock orders it for other flushers.
            self.pending.store(true, Ordering::Relaxed);
        }
        first
    }

    /// Holds back every waker of `batch` (the rest of a batch handed to
    /// the loops, see [`hand_over`]). Returns whether the list was empty.
    #[cfg_attr(loom, allow(dead_code))]
    fn hold_all(&self, batch: Vec<Waker>) -> bool {
        let mut wakers = self.lock();
        let first = wakers.is_empty();
        wakers.extend(batch);
        if first {
            // Relaxed: as in `hold`.
            self.pending.store(true, Ordering::Relaxed);
        }
        first
    }

    /// Takes every held wake-up, in the order they were held.
    pub(crate) fn take(&self) -> Vec<Waker> {
        let mut wakers = self.lock();
        if wakers.is_empty() {
            return Vec::new();
        }
        // Relaxed: under the lock, as in `hold`.
        self.pending.store(false, Ordering::Relaxed);
        mem::take(&mut *wakers)
    }

    /// Whether a wake-up is held (the detector's look, after its fence).
    pub(crate) fn is_pending(&self) -> bool {
        // Relaxed: ordered by the fences of the dormancy protocol (module
        // docs); a stale `true` costs the detector one tick.
        self.pending.load(Ordering::Relaxed)
    }

    /// Wakes every held wake-up, in the order they were held. Returns how
    /// many it woke.
    pub(crate) fn wake_all(&self) -> usize {
        let wakers = self.take();
        let woken = wakers.len();
        for waker in wakers {
            wake_quietly(waker);
        }
        woken
    }
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("pending", &self.is_pending())
            .finish_non_exhaustive()
    }
}

/// The rest of the batches that workers handed to the loops (module docs,
/// *One wake-up per batch*): any thread that polls a Task to completion
/// wakes them, as do the workers and detectors that wake held wake-ups.
/// One list for the process: the thread that takes it may be any loop.
#[cfg(not(loom))]
static HANDED: Deferred = Deferred::new();

/// Wakes `batch`, held back by a worker: wakes its first waker and leaves
/// the rest to the thread that polls that Task (module docs). Returns
/// whether the handed-over list became non-empty: then the caller keeps its
/// pool's detector awake for it, as after [`Deferred::push`].
#[must_use]
pub(crate) fn hand_over(batch: Vec<Waker>) -> bool {
    if batch.is_empty() {
        return false;
    }
    #[cfg(not(loom))]
    {
        let mut batch = batch;
        // What the last batch's loop did not take: a window old by now.
        wake_handed();
        let first = batch.remove(0);
        let became_pending = !batch.is_empty() && HANDED.hold_all(batch);
        wake_quietly(first);
        became_pending
    }
    #[cfg(loom)]
    {
        for waker in batch {
            wake_quietly(waker);
        }
        false
    }
}

// What a job side calls to wake a completed Task's waker on this thread:
// set by a worker thread for itself (it may hold the wake-up back), unset
// elsewhere (wake at once).
sync::thread_local! {
    static COMPLETER: std::cell::Cell<Option<fn(&Waker)>> = const { std::cell::Cell::new(None) };
}

/// Makes `complete` what a job side that completes a Task on this thread
/// calls with the Task's waker (a worker's hold-back, module docs).
pub(crate) fn set_completer(complete: fn(&Waker)) {
    COMPLETER.with(|completer| completer.set(Some(complete)));
}

/// The job side completed a Task whose waker is registered: wakes it, or
/// lets this thread's worker hold it back (module docs).
#[inline]
pub(crate) fn wake_completed(waker: &Waker) {
    match COMPLETER.try_with(std::cell::Cell::get).ok().flatten() {
        Some(complete) => complete(waker),
        None => waker.wake_by_ref(),
    }
}

/// Wakes what workers handed over and nobody took yet: called by a Task
/// polled to completion, and by every flusher of held wake-ups.
#[inline]
pub(crate) fn wake_handed() {
    #[cfg(not(loom))]
    if HANDED.is_pending() {
        HANDED.wake_all();
    }
}

/// Whether handed-over wake-ups wait (the detector's look, after its
/// dormancy fence).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn any_handed() -> bool {
    #[cfg(not(loom))]
    return HANDED.is_pending();
    #[cfg(loom)]
    false
}
