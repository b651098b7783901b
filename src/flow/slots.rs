//! [`Slots`]: the queue slots of a bounded pool (`Builder::max_queued`),
//! counted in one atomic word, with a FIFO line of waiters.
//!
//! # What a slot is
//!
//! A job holds a slot from its submission until it *starts* (or is
//! cancelled before starting): a slot stands for a job waiting in a queue.
//! An unused [`Permit`](crate::Permit) holds one too, and so does a waiter
//! that was granted one but has not collected it yet. The holder is a
//! [`Slot`] value, whose drop gives the slot back; so the slot's life is
//! tied to the thing it counts, on every path (run, panic, cancel,
//! shutdown, a permit dropped on any thread).
//!
//! # The word
//!
//! `state` is `held << 1 | WAITING`: `held` slots are taken, and `WAITING`
//! is set while the line of waiters is non-empty. Three kinds of taker:
//! - `try_acquire` (`try_spawn`, the first poll of `reserve`): one CAS that
//!   adds a slot only while `held < max` and nobody waits, so it never
//!   passes a waiter in the line;
//! - `acquire_forced` (plain `spawn` on a bounded pool, which never fails):
//!   adds a slot unconditionally, so `held` may exceed `max`;
//! - a waiter, under the lock: takes a slot like `try_acquire`, or sets
//!   `WAITING` (by CAS, so that it cannot miss a release that makes room)
//!   and joins the line.
//!
//! A `release` that sees `WAITING` clear subtracts a slot with a CAS. One
//! that sees `WAITING` set while `held <= max` (so that giving the slot
//! back would make room) takes the lock and hands the slot to the oldest
//! waiter instead: `held` does not change, the waiter is marked *granted*
//! and woken; the last waiter out clears `WAITING`, still under the lock.
//!
//! # Why no waiter sleeps while a slot is free
//!
//! `WAITING` is only set or cleared under the lock, and always by a CAS or
//! RMW on the one word. A release's CAS either comes before a waiter's CAS
//! that sets `WAITING` in the word's modification order (then that CAS
//! fails, the waiter reloads and sees the room), or after it (then the
//! release sees `WAITING` and takes the lock; the waiter joined the line
//! in the same critical section as its CAS, so the release finds it).
//!
//! No waker is cloned, woken or dropped under the lock: those run an
//! executor's code, which may panic or drop a future that owns a `Slot`
//! of this pool (whose release takes the lock again). Wakers are cloned
//! before the lock is taken, and those it removes are woken or dropped
//! after it is released.
//!
//! Every ordering on `state` is `Relaxed`: a slot is a number that guards
//! no data (the job reaches a worker through the queue, a permit through
//! its future), the single modification order of the word is what keeps
//! `held <= max` for the takers that check, and the hand-over is ordered by
//! the lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync::{lock, mutant, Arc, AtomicUsize, Mutex, Ordering};
use crate::unwind::drop_quietly;

/// `state` bit: the line of waiters is non-empty.
const WAITING: usize = 1;
/// One slot in `state`.
const ONE: usize = 2;

pub(crate) struct Slots {
    max: usize,
    state: AtomicUsize,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    /// The pool shut down: no more waiting.
    closed: bool,
    next_ticket: u64,
    /// Waiting, oldest ticket first, with the waker to wake on a grant.
    line: BTreeMap<u64, Waker>,
    /// Handed a slot that they have not collected yet.
    granted: BTreeSet<u64>,
    /// Out of line for a while, keeping their ticket: blocking waits on a
    /// worker while it runs another job (see [`Acquire::step_out`]).
    stepped_out: BTreeSet<u64>,
}

/// The pool was shut down while (or before) waiting for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl Slots {
    /// `max` slots, none taken. `max` is at least one.
    pub(crate) fn new(max: usize) -> Self {
        debug_assert!(max > 0);
        Self {
            max,
            state: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// The most slots `try_acquire` and the waiters admit.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Slots taken now (may exceed `max` through plain spawns).
    #[cfg_attr(not(loom), allow(dead_code))] // for the loom models
    pub(crate) fn held(&self) -> usize {
        // Relaxed: a snapshot.
        self.state.load(Ordering::Relaxed) >> 1
    }

    /// `reserve` waiters now: in line, or out of it for a while with their
    /// ticket (a snapshot, for `Pool::metrics`).
    pub(crate) fn waiters(&self) -> usize {
        let waiters = lock(&self.waiters);
        waiters.line.len() + waiters.stepped_out.len()
    }

    /// Takes a slot if one is free and nobody waits for one.
    pub(crate) fn try_acquire(&self) -> bool {
        // Relaxed: see the module docs (the count guards no data).
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & WAITING != 0 || state >> 1 >= self.max {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state + ONE,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Takes a slot even if none is free (a plain spawn is never refused).
    pub(crate) fn acquire_forced(&self) {
        // Relaxed: see the module docs.
        self.state.fetch_add(ONE, Ordering::Relaxed);
    }

    /// Gives a slot back: to the oldest waiter if there is one and this
    /// makes room, else to the count.
    pub(crate) fn release(&self) {
        // Relaxed: see the module docs.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & WAITING != 0
                && state >> 1 <= self.max
                && !mutant!("slots_release_skips_line")
            {
                return self.release_to_line();
            }
            match self.state.compare_exchange_weak(
                state,
                state - ONE,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    /// [`release`](Self::release) with waiters: under the lock, hands the
    /// slot to the oldest one, or gives it back to the count if the room
    /// went meanwhile (plain spawns raised `held` above `max`).
    #[cold]
    fn release_to_line(&self) {
        let mut waiters = lock(&self.waiters);
        // Relaxed: `WAITING` changes only under the lock we hold.
        let mut state = self.state.load(Ordering::Relaxed);
        let woken = loop {
            if state & WAITING != 0 && state >> 1 <= self.max {
                let (ticket, waker) = waiters
                    .line
                    .pop_first()
                    .expect("offload: WAITING set with nobody in line");
                waiters.granted.insert(ticket);
                if waiters.line.is_empty() {
                    // Relaxed: under the lock (module docs).
                    self.state.fetch_and(!WAITING, Ordering::Relaxed);
                }
                break Some(waker);
            }
            match self.state.compare_exchange_weak(
                state,
                state - ONE,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break None,
                Err(actual) => state = actual,
            }
        };
        drop(waiters);
        if let Some(waker) = woken {
            wake_quietly(waker);
        }
    }

    /// Takes a slot for the waiter holding `ticket` (`None` before its
    /// first poll), or lines it up to be woken through `waker` when one is
    /// granted. Returns the waker it does not keep, for the caller to drop
    /// after the lock (module docs).
    fn poll_acquire(
        &self,
        ticket: &mut Option<u64>,
        waker: Waker,
    ) -> (Poll<Result<(), Closed>>, Option<Waker>) {
        let mut waiters = lock(&self.waiters);
        if let Some(mine) = *ticket {
            if waiters.granted.remove(&mine) {
                *ticket = None;
                if waiters.closed {
                    drop(waiters);
                    self.release();
                    return (Poll::Ready(Err(Closed)), Some(waker));
                }
                return (Poll::Ready(Ok(())), Some(waker));
            }
            if waiters.closed {
                *ticket = None;
                return (Poll::Ready(Err(Closed)), Some(waker));
            }
            let unused = match waiters.line.get_mut(&mine) {
                Some(kept) if !kept.will_wake(&waker) => Some(std::mem::replace(kept, waker)),
                _ => Some(waker),
            };
            return (Poll::Pending, unused);
        }
        if waiters.closed {
            return (Poll::Ready(Err(Closed)), Some(waker));
        }
        let mine = waiters.next_ticket;
        waiters.next_ticket += 1;
        match self.line_up(&mut waiters, mine, waker) {
            Err(unused) => (Poll::Ready(Ok(())), Some(unused)),
            Ok(()) => {
                *ticket = Some(mine);
                (Poll::Pending, None)
            }
        }
    }

    /// Takes a free slot for waiter `ticket` if nobody is in line (`Err`,
    /// handing the waker back), else puts it in line at its ticket's
    /// place: an old ticket goes back ahead of younger ones.
    fn line_up(&self, waiters: &mut Waiters, ticket: u64, waker: Waker) -> Result<(), Waker> {
        // Relaxed: see the module docs.
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & WAITING == 0 && state >> 1 < self.max {
                match self.state.compare_exchange_weak(
                    state,
                    state + ONE,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Err(waker),
                    Err(actual) => state = actual,
                }
                continue;
            }
            if state & WAITING != 0 {
                break;
            }
            // A CAS, not a store: a release between our load and here
            // makes it fail, and we see the room on the next turn.
            let set = if mutant!("slots_waiting_stored") {
                self.state.fetch_or(WAITING, Ordering::Relaxed);
                Ok(state)
            } else {
                self.state.compare_exchange_weak(
                    state,
                    state | WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
            };
            match set {
                Ok(_) => break,
                Err(actual) => state = actual,
            }
        }
        waiters.line.insert(ticket, waker);
        Ok(())
    }

    /// Removes `ticket` from the line, clearing `WAITING` if it was the
    /// last; returns its waker, for the caller to drop after the lock.
    fn leave_line(&self, waiters: &mut Waiters, ticket: u64) -> Option<Waker> {
        let waker = waiters.line.remove(&ticket)?;
        if waiters.line.is_empty() {
            // Relaxed: under the lock (module docs).
            self.state.fetch_and(!WAITING, Ordering::Relaxed);
        }
        Some(waker)
    }

    /// The waiter holding `ticket` leaves the line for a while, keeping
    /// its ticket; a slot it was granted meanwhile goes on to the next in
    /// line (or back to the count). See [`Acquire::step_out`].
    fn step_out(&self, ticket: u64) {
        let mut waiters = lock(&self.waiters);
        if let Some(waker) = self.leave_line(&mut waiters, ticket) {
            waiters.stepped_out.insert(ticket);
            drop(waiters);
            drop_quietly(waker);
        } else if waiters.granted.remove(&ticket) {
            waiters.stepped_out.insert(ticket);
            drop(waiters);
            if !mutant!("stepped_out_keeps_grant") {
                self.release();
            }
        }
    }

    /// The waiter holding `ticket` comes back to its old place in line,
    /// ahead of everyone who came after it, to be woken through `waker`;
    /// or takes a free slot at once.
    fn step_in(&self, ticket: u64, waker: Waker) {
        let mut waiters = lock(&self.waiters);
        let unused = if !waiters.stepped_out.remove(&ticket) || waiters.closed {
            Some(waker)
        } else {
            match self.line_up(&mut waiters, ticket, waker) {
                Ok(()) => None,
                Err(unused) => {
                    waiters.granted.insert(ticket);
                    Some(unused)
                }
            }
        };
        drop(waiters);
        drop_quietly(unused);
    }

    /// The waiter holding `ticket` gives up: leaves the line, or hands on
    /// the slot it was granted but never collected.
    fn cancel_wait(&self, ticket: u64) {
        let mut waiters = lock(&self.waiters);
        if let Some(waker) = self.leave_line(&mut waiters, ticket) {
            drop(waiters);
            drop_quietly(waker);
        } else if waiters.granted.remove(&ticket) {
            drop(waiters);
            self.release();
        } else {
            waiters.stepped_out.remove(&ticket);
        }
    }

    /// Shuts the line: every waiter is woken and resolves to [`Closed`],
    /// and later ones resolve so at once.
    pub(crate) fn close(&self) {
        let line = {
            let mut waiters = lock(&self.waiters);
            waiters.closed = true;
            // Relaxed: under the lock (module docs).
            self.state.fetch_and(!WAITING, Ordering::Relaxed);
            std::mem::take(&mut waiters.line)
        };
        for (_, waker) in line {
            wake_quietly(waker);
        }
    }
}

/// Wakes `waker`, containing a panic of the executor's code: this runs on a
/// worker starting a job, or on the thread of whoever freed a slot.
fn wake_quietly(waker: Waker) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
        drop_quietly(payload);
    }
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a snapshot for display only.
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("Slots")
            .field("max", &self.max)
            .field("held", &(state >> 1))
            .field("waiting", &(state & WAITING != 0))
            .finish()
    }
}

/// One slot, held: dropping it gives it back.
pub(crate) struct Slot(Arc<Slots>);

impl Slot {
    /// A free slot of `slots`, if there is one and nobody waits.
    pub(crate) fn try_acquire(slots: &Arc<Slots>) -> Option<Slot> {
        slots.try_acquire().then(|| Slot(Arc::clone(slots)))
    }

    /// A slot of `slots`, over the limit if need be.
    pub(crate) fn forced(slots: &Arc<Slots>) -> Slot {
        slots.acquire_forced();
        Slot(Arc::clone(slots))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !mutant!("slot_leaked") {
            self.0.release();
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Slot").field(&self.0).finish()
    }
}

/// Waits for a slot: the future behind [`Pool::reserve`](crate::Pool::reserve).
/// Dropping it leaves the line (or hands on a slot it was granted).
pub(crate) struct Acquire {
    slots: Arc<Slots>,
    ticket: Option<u64>,
    /// The waker of the last poll, for [`step_in`](Self::step_in).
    waker: Option<Waker>,
}

impl Acquire {
    pub(crate) fn new(slots: Arc<Slots>) -> Self {
        Self {
            slots,
            ticket: None,
            waker: None,
        }
    }

    /// Leaves the line for a while, keeping this waiter's place (a slot
    /// granted meanwhile goes on to the next waiter).
    ///
    /// For a blocking wait on a worker, which runs other jobs while it
    /// waits: it steps out before each and back in after. A slot granted
    /// while the worker runs a job could not be collected until that job
    /// returns, and if the job waits for a slot too (directly, or through
    /// a Task whose job does), the pool would deadlock on its own queue:
    /// so a waiter is in line only while it can collect.
    pub(crate) fn step_out(&self) {
        if let Some(ticket) = self.ticket {
            self.slots.step_out(ticket);
        }
    }

    /// Comes back to the place [`step_out`](Self::step_out) left.
    pub(crate) fn step_in(&self) {
        if let (Some(ticket), Some(waker)) = (self.ticket, &self.waker) {
            self.slots.step_in(ticket, waker.clone());
        }
    }

    /// Whether this waiter can be resolved now (granted, or the line shut);
    /// a cheap look for a thread that waits by parking.
    pub(crate) fn is_ready(&self) -> bool {
        let waiters = lock(&self.slots.waiters);
        match self.ticket {
            Some(ticket) => waiters.closed || waiters.granted.contains(&ticket),
            None => true,
        }
    }
}

impl Future for Acquire {
    type Output = Result<Slot, Closed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // Clones outside the slots' lock (module docs).
        let waker = cx.waker().clone();
        if !this.waker.as_ref().is_some_and(|w| w.will_wake(&waker)) {
            drop_quietly(this.waker.replace(waker.clone()));
        }
        let (poll, unused) = this.slots.poll_acquire(&mut this.ticket, waker);
        drop_quietly(unused);
        poll.map(|result| result.map(|()| Slot(Arc::clone(&this.slots))))
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.slots.cancel_wait(ticket);
        }
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("slots", &self.slots)
            .field("waiting", &self.ticket.is_some())
            .finish()
    }
}
