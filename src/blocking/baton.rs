//! [`Baton`]: who holds a worker's place, and who waits for it back.
//!
//! A worker's *place* is its [`WorkerThread`](crate::sched::worker::WorkerThread):
//! its deque, its count of published join halves, its sleep index and parker. Exactly
//! one thread at a time runs jobs in it, the *holder*. The place starts
//! with its *home* thread (the worker thread that owns the `WorkerThread`
//! on its stack) and passes between threads only at two moments:
//!
//! - **Lending**: the holder is about to block in [`crate::blocking`](mod@crate::blocking) while
//!   jobs wait. It gives the place to a thread that waits for it, if any,
//!   else to a spare thread, which *stands in* ([`Baton::lend`]). The
//!   lender is now *away*: its stack still holds frames that use the place
//!   (the job that called `blocking`, and whatever that job is inside of),
//!   so it must hold the place again before it returns to them.
//! - **Passing at a job boundary**: a thread that is away and done wants
//!   the place back ([`Baton::come_back`]): it joins a FIFO line and raises
//!   `wanted`. The holder reads `wanted` between two jobs (one relaxed load
//!   of its own cache line) and passes the place to the first in line
//!   ([`Baton::pass`]). A holder with frames on the place (the home thread,
//!   or any thread inside a job) becomes away in turn and joins the line;
//!   a stand-in between jobs has none, and goes back to the spare threads.
//!   A stand-in that finds the pool terminating and no work left leaves
//!   the place ([`Baton::leave`]): to the first in line, or *free*, for the
//!   next thread that comes back to take without waiting.
//! - A holder that is itself *waiting* (a `join` half, a `Task::wait`, a
//!   `Reserve::wait`: the loop of [`crate::sched::worker_loop::run_until_deadline`])
//!   passes at once only to a thread *returning* from a blocking call,
//!   which has a job to finish; to a thread that only waits too (it passed
//!   the place on from a wait of its own), once it found no job to run.
//!   Otherwise waiters hand the place to each other at every boundary and
//!   no queued job runs, however long a wait needs one (the stress test
//!   found rounds of a pool of one stalled for seconds, once for 20).
//!
//! # Invariants
//!
//! - One holder: the place changes hands only under `line`'s lock, from
//!   the holder (or, for a free place, from nobody) to one thread, and the
//!   new holder starts using it only after its grant, whose Release/Acquire
//!   pair orders every use by the previous holder before every use by the
//!   next.
//! - The `WorkerThread` outlives every thread that can use it: `away`
//!   counts the threads with frames on the place that do not hold it, and
//!   the home thread leaves its loop (and frees the place) only while it
//!   holds the place and `away` is zero ([`Baton::nobody_away`]). A lender
//!   is counted before its stand-in can run.
//! - No wake-up is lost: a thread that joins the line raises `wanted` under
//!   the lock and then unparks the place's parker. A holder that is running
//!   sees `wanted` at a later boundary; one that sleeps counts `wanted` as
//!   a reason to wake (its sleep re-check reads it), and the unpark's token,
//!   which carries the store, wakes it if it parked before.
//! - A holder passes only between jobs, so a thread that comes back waits
//!   at most for the holder's current job. The running count stays at the
//!   pool's thread count throughout: one holder per place, whoever it is.

use std::collections::VecDeque;
use std::fmt;

use crossbeam_utils::CachePadded;

use crate::sched::parker::Parker;
use crate::sync::{lock, mutant, AtomicBool, AtomicUsize, Mutex, MutexGuard, Ordering, StdArc};

/// The hand-over state of one worker's place (module docs).
pub(crate) struct Baton {
    /// Raised while a thread waits in line: a hint for the holder, read at
    /// every job boundary, so on a line of its own.
    wanted: CachePadded<AtomicBool>,
    /// Raised while the first in line is *returning* (back from a blocking
    /// call, its job to finish) rather than *waiting* (it passed the place
    /// from a wait, or from the home thread's loop): a hint for a holder
    /// that is itself waiting (see [`Baton::first_is_returning`]).
    returning: AtomicBool,
    /// `line.away`, mirrored for [`nobody_away`](Self::nobody_away), which
    /// the home thread reads in its loop at termination: written under the
    /// lock, read without it.
    away: AtomicUsize,
    line: Mutex<Line>,
}

#[derive(Default)]
struct Line {
    /// Nobody holds the place: a stand-in left it at termination.
    free: bool,
    /// Threads with frames on the place that do not hold it (module docs).
    away: usize,
    /// Threads waiting for the place, first come first served.
    waiters: VecDeque<StdArc<Grant>>,
}

/// A waiting thread's ticket: set once it holds the place.
struct Grant {
    granted: AtomicBool,
    parker: StdArc<Parker>,
    /// Back from a blocking call (not passing the place on from a wait).
    returning: bool,
}

impl Grant {
    fn give(&self) {
        // Release: the previous holder's uses of the place happen before
        // the new holder's (its Acquire load in `come_back`).
        self.granted.store(true, Ordering::Release);
        self.parker.unpark();
    }
}

impl Baton {
    pub(crate) fn new() -> Self {
        Self {
            wanted: CachePadded::new(AtomicBool::new(false)),
            returning: AtomicBool::new(false),
            away: AtomicUsize::new(0),
            line: Mutex::new(Line::default()),
        }
    }

    /// Whether a thread waits for the place: read by the holder between
    /// jobs and in its sleep re-check (module docs).
    #[inline]
    pub(crate) fn is_wanted(&self) -> bool {
        // Relaxed: a hint; `pass` decides under the lock, and a sleeping
        // holder is woken by a token that carries the store.
        self.wanted.load(Ordering::Relaxed)
    }

    /// Whether the first thread in line is back from a blocking call (a
    /// hint, as [`is_wanted`](Self::is_wanted)). A holder that is itself
    /// waiting passes the place at once to such a thread, which has a job
    /// to finish, but runs a queued job first when the first in line only
    /// waits too: two waiters that handed the place to each other at every
    /// boundary would run no job at all, and a wait that needs a queued job
    /// to run would never end (the stress test found it, on a pool of one).
    #[inline]
    pub(crate) fn first_is_returning(&self) -> bool {
        // Relaxed: a hint, as `is_wanted`.
        self.returning.load(Ordering::Relaxed)
    }

    /// The holder lends the place before it blocks: to the first thread in
    /// line, or else to a stand-in that `start_stand_in` starts (it returns
    /// whether it did). Returns whether the place was lent; if so, the
    /// caller is away and must [`come_back`](Self::come_back) before it
    /// touches the place again.
    pub(crate) fn lend(&self, start_stand_in: impl FnOnce() -> bool) -> bool {
        let mut line = lock(&self.line);
        if let Some(grant) = self.first_in_line(&mut line) {
            // The lender leaves as the first in line comes back.
            self.set_away(&mut line, 1);
            drop(line);
            grant.give();
            return true;
        }
        // Counted before the stand-in can run (module docs).
        self.set_away(&mut line, 1);
        drop(line);
        if start_stand_in() {
            return true;
        }
        self.set_away(&mut lock(&self.line), -1);
        false
    }

    /// The holder, between jobs, passes the place to the first thread in
    /// line; returns whether it did. With `keep_frames` (it is the home
    /// thread, or inside a job), it is away from now on and must
    /// [`come_back`](Self::come_back); without, it is a stand-in done with
    /// the place.
    pub(crate) fn pass(&self, keep_frames: bool) -> bool {
        let mut line = lock(&self.line);
        let Some(grant) = self.first_in_line(&mut line) else {
            return false;
        };
        if keep_frames {
            self.set_away(&mut line, 1);
        }
        drop(line);
        grant.give();
        true
    }

    /// A stand-in with no frames on the place leaves it (the pool is
    /// terminating and it found no work): to the first thread in line, or
    /// free.
    pub(crate) fn leave(&self) {
        let mut line = lock(&self.line);
        match self.first_in_line(&mut line) {
            Some(grant) => {
                drop(line);
                grant.give();
            }
            None => line.free = true,
        }
    }

    /// A thread that is away waits until it holds the place again: at once
    /// if the place is free, else in line, after waking the holder (whose
    /// parker is `holder`) to pass it at its next job boundary. `own` is
    /// this thread's own parker; `returning`, whether it is back from a
    /// blocking call (see [`first_is_returning`](Self::first_is_returning)).
    pub(crate) fn come_back(&self, holder: &Parker, own: StdArc<Parker>, returning: bool) {
        let mut line = lock(&self.line);
        if line.free {
            line.free = false;
            self.set_away(&mut line, -1);
            return;
        }
        let grant = StdArc::new(Grant {
            granted: AtomicBool::new(false),
            parker: own,
            returning,
        });
        if line.waiters.is_empty() {
            // Relaxed: a hint, as `wanted` below.
            self.returning.store(returning, Ordering::Relaxed);
        }
        line.waiters.push_back(StdArc::clone(&grant));
        // Relaxed: the unpark below carries it to a sleeping holder; a
        // running one reads it at a later boundary.
        if !mutant!("baton_wanted_not_raised") {
            self.wanted.store(true, Ordering::Relaxed);
        }
        drop(line);
        holder.unpark();
        // Acquire: pairs with `Grant::give`.
        while !grant.granted.load(Ordering::Acquire) {
            grant.parker.park();
        }
    }

    /// Threads away from the place now (a snapshot, for `Pool::metrics`).
    pub(crate) fn away(&self) -> usize {
        // Relaxed: a snapshot; nothing is read through it.
        self.away.load(Ordering::Relaxed)
    }

    /// Whether no thread but the holder has frames on the place: the home
    /// thread may leave its loop only then (module docs).
    pub(crate) fn nobody_away(&self) -> bool {
        // Acquire: a lock-free read of `line.away`. The increments come from
        // holders (lending or passing), and the caller, holding the place,
        // got it through grants that order them before this read; a
        // decrement it misses (a thread back meanwhile) only keeps it in
        // its loop a little longer, woken by that thread's `wanted`.
        self.away.load(Ordering::Acquire) == 0
    }

    /// Changes `line.away` by `delta`, and its lock-free mirror.
    fn set_away(&self, line: &mut MutexGuard<'_, Line>, delta: isize) {
        line.away = line.away.checked_add_signed(delta).expect("away count");
        // Release: see `nobody_away`.
        self.away.store(line.away, Ordering::Release);
    }

    /// Takes the first thread in line, which is back (no longer away), and
    /// lowers `wanted` if the line is empty now.
    fn first_in_line(&self, line: &mut Line) -> Option<StdArc<Grant>> {
        let grant = line.waiters.pop_front()?;
        line.away -= 1;
        // Release: see `nobody_away`.
        self.away.store(line.away, Ordering::Release);
        // Relaxed: a hint (see `is_wanted`); raised again under this lock
        // by the next thread to join the line.
        self.wanted
            .store(!line.waiters.is_empty(), Ordering::Relaxed);
        // Relaxed: a hint (see `first_is_returning`).
        let next_returning = line.waiters.front().is_some_and(|next| next.returning);
        self.returning.store(next_returning, Ordering::Relaxed);
        Some(grant)
    }
}

impl fmt::Debug for Baton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = lock(&self.line);
        f.debug_struct("Baton")
            .field("free", &line.free)
            .field("away", &line.away)
            .field("waiting", &line.waiters.len())
            .finish()
    }
}
