//! [`Latch`]: a set-once flag that a blocked thread waits on.
//!
//! Protocol: the setter publishes its result, then `set` stores `true` with
//! Release; the waiter loads it with Acquire, so once it sees `true` the
//! result is visible. The waiter may be parked (or about to park) on its
//! [`Parker`]: `set` unparks it after the store, and since a token is never
//! lost, a waiter that checks the flag, misses it and parks is woken.
//!
//! The latch usually lives on the waiter's stack, which the waiter may pop as
//! soon as it sees the flag. `set` therefore copies the waiter's handle
//! *before* the store and touches the latch no more after it. The handle is
//! either a shared `Arc` of the parker (cloned by `set`: for waiters outside
//! the pool, whose parker may go as soon as they return) or, for a `join`,
//! a plain pointer to the owning worker's parker, which lives as long as the
//! pool: every thread that can set a join latch is a worker of that pool and
//! keeps it alive, so the pointer stays valid through `set` at no cost.

use std::ptr::NonNull;

use crate::sched::parker::Parker;
use crate::sync::{mutant, AtomicBool, AtomicUsize, Ordering, StdArc};

#[derive(Debug)]
pub(crate) struct Latch {
    is_set: AtomicBool,
    waiter: Waiter,
}

#[derive(Debug)]
enum Waiter {
    /// A parker the latch co-owns.
    Shared(StdArc<Parker>),
    /// A worker's parker, valid for as long as its pool (see module docs).
    Worker(NonNull<Parker>),
}

impl Latch {
    /// A latch that wakes `waiter` when set.
    pub(crate) fn new(waiter: &StdArc<Parker>) -> Self {
        Self {
            is_set: AtomicBool::new(false),
            waiter: Waiter::Shared(StdArc::clone(waiter)),
        }
    }

    /// A latch that wakes the worker parked on `waiter`, without reference
    /// counting.
    ///
    /// # Safety
    /// `waiter` must outlive every call to [`set`](Self::set): it is a
    /// worker's parker, and only workers of the same pool set the latch.
    pub(crate) unsafe fn for_worker(waiter: &Parker) -> Self {
        Self {
            is_set: AtomicBool::new(false),
            waiter: Waiter::Worker(NonNull::from(waiter)),
        }
    }

    /// Whether the latch is set; `true` makes the setter's writes visible.
    #[inline]
    pub(crate) fn probe(&self) -> bool {
        // Acquire: pairs with the Release store in `set`.
        self.is_set.load(Ordering::Acquire)
    }

    /// Sets the latch and wakes its waiter.
    ///
    /// # Safety
    /// `this` is valid on entry. It may dangle as soon as the store is done
    /// (the waiter returns and pops its stack), so nothing after it reads
    /// `this`; a raw pointer, because a reference argument must stay valid
    /// for the whole call.
    pub(crate) unsafe fn set(this: *const Self) {
        // SAFETY: valid on entry (contract), and the store below is the last use.
        let this = unsafe { &*this };
        let shared;
        let waiter: &Parker = match &this.waiter {
            Waiter::Shared(parker) => {
                shared = StdArc::clone(parker);
                &shared
            }
            // SAFETY: `for_worker`'s contract: the parker outlives this call.
            Waiter::Worker(parker) => unsafe { parker.as_ref() },
        };
        // Release: publishes everything the setter wrote (the job's result).
        let order = if mutant!("latch_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        this.is_set.store(true, order);
        waiter.unpark();
    }
}

/// A counter that a blocked thread waits to see reach zero: the jobs of a
/// `scope` still running, plus one for the scope's body.
///
/// Protocol: each finished job decrements with Release (its writes to
/// borrowed data are published); the waiter loads with Acquire. The
/// decrement that reaches zero unparks the waiter, so a waiter that missed
/// it while falling asleep is woken; it reaches zero exactly once, since
/// nothing increments a zero count (an increment comes from the body or a
/// running job, each of which still holds one).
#[derive(Debug)]
pub(crate) struct CountLatch {
    count: AtomicUsize,
    waiter: StdArc<Parker>,
}

impl CountLatch {
    /// A latch with a count of one (the body), waking `waiter` at zero.
    pub(crate) fn new(waiter: &StdArc<Parker>) -> Self {
        Self {
            count: AtomicUsize::new(1),
            waiter: StdArc::clone(waiter),
        }
    }

    pub(crate) fn increment(&self) {
        // Relaxed: the caller holds a count already, so the total cannot
        // reach zero before this; the matching decrement orders the rest.
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the count reached zero; `true` makes every job's writes
    /// visible.
    pub(crate) fn probe(&self) -> bool {
        // Acquire: pairs with the Release decrements.
        self.count.load(Ordering::Acquire) == 0
    }

    /// Drops one count, waking the waiter at zero.
    ///
    /// # Safety
    /// `this` is valid on entry; it may dangle once the count is decremented
    /// (the waiter returns), so nothing after it reads `this`.
    pub(crate) unsafe fn decrement(this: *const Self) {
        // SAFETY: valid on entry (contract); the fetch_sub is the last use.
        let this = unsafe { &*this };
        let waiter = StdArc::clone(&this.waiter);
        // Release: publishes this job's writes to the waiter's Acquire probe.
        let order = if mutant!("count_latch_relaxed") {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        if this.count.fetch_sub(1, order) == 1 {
            waiter.unpark();
        }
    }
}
