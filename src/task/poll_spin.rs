//! How long a [`Task`](crate::Task)'s first `Pending` poll spins before it
//! registers its waker: learnt, per awaiting thread, from whether recent
//! spins caught their job's end.
//!
//! # Why the awaiting side spins
//!
//! A round trip from an event loop is: push the job, return `Pending`,
//! park the loop; a worker runs the job and wakes the loop. On the
//! reference VM a worker that spins picks the job up within a microsecond
//! and a trivial job ends about a microsecond later, but by then the loop
//! has parked, and waking a parked loop costs 18–38 µs (an idle virtual
//! CPU is woken through the hypervisor; see BENCHMARKS.md, *Round trip,
//! burst, sparse load, the ticker*). That wake-up was the whole round trip: the job's own
//! part was under 2 µs. A loop that looks a few microseconds longer before
//! it parks sees the output at once, and nobody parks or wakes.
//!
//! # The rule
//!
//! - Only the first poll that would register a waker spins (the state has
//!   neither `COMPLETE` nor `WAKER`): a Task polled again inside a
//!   `select!` or a join of many futures never spins twice.
//! - It spins for at most [`BUDGET`], reading the cell's state with the
//!   same Acquire load the poll makes anyway, and stops as soon as the
//!   output is there. It gives up early if the job has not even started
//!   after [`START_LIMIT`]: then it waits behind other jobs or for a
//!   sleeping worker, and will not end within the budget.
//! - A spin that ends without the output is a *miss*. After `k` misses in
//!   a row the thread skips the next `2^k - 1` spins (`k` up to
//!   [`MAX_MISSES`]); a spin that catches its output resets `k`. A thread
//!   whose Tasks take longer than the budget therefore spins once in 1 024
//!   polls in the long run: at most 10 µs per 1 024 awaits.
//!
//! The history is a thread-local of two counters, read and written only
//! by the awaiting thread: no new shared state. What the spin shares is
//! its look at the cell: a `Done` it sees is followed by reading the
//! output, so the look is an Acquire load, paired with the job side's
//! Release when it sets `COMPLETE` (module docs of `crate::task`). Loom
//! has no clock and no per-thread history: under loom a spin is exactly
//! one look, so every model that polls a Task checks that path too (loom
//! model `await_races_completion`, mutant `poll_spin_relaxed`).
//! `Task::wait` and `wait_timeout` poll without it: they wait their own
//! way.
//!
//! # Why 10 µs
//!
//! A spin stands in for parking the loop and being woken: about 18–38 µs
//! of latency on the reference VM and several microseconds of the loop's
//! own CPU in `epoll_wait` and the wake-up. Spinning for half the cheaper
//! figure means a miss costs at most about half of what a catch saves;
//! the backoff makes misses rare where they are the rule. On the reference
//! VM a trivial job's round trip with the spin took 0.6–1.1 µs
//! (BENCHMARKS.md, *Round trip, burst, sparse load, the ticker*), well
//! inside it.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The longest a first poll spins (module docs, *Why 10 µs*).
const BUDGET: Duration = Duration::from_micros(10);

/// A spin whose job has not started by then gives up. On the reference
/// VM a spinning worker takes a pushed job in 0.3–1 µs at the median and
/// up to 3.5 µs late when it looks between yields; a worker that is asleep
/// takes 18 µs or more to wake. (A limit of 2 µs made 4 of 11 round-trip
/// probe runs two to four times slower.)
const START_LIMIT: Duration = Duration::from_micros(5);

/// Misses in a row after which the skip stops growing: a thread whose
/// Tasks never end within the budget spins once per `2^MAX_MISSES` polls.
const MAX_MISSES: u32 = 10;

/// Reads of the state between two looks at the clock (about 0.3 µs of
/// spin hints on the reference VM, against 50 ns per clock read).
const READS_PER_CLOCK: u32 = 8;

/// One awaiting thread's history (module docs, *The rule*).
struct History {
    /// Misses in a row.
    misses: Cell<u32>,
    /// Polls still to pass without a spin.
    skip: Cell<u32>,
}

thread_local! {
    static HISTORY: History = const {
        History {
            misses: Cell::new(0),
            skip: Cell::new(0),
        }
    };
}

/// What a spin sees of the job.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Seen {
    /// Still queued.
    Queued,
    /// Running.
    Started,
    /// Its output is there.
    Done,
}

/// Spins until `look()` sees the job done, the budget ends, or the job has
/// not started by [`START_LIMIT`], unless this thread's history says to
/// skip this spin. Returns whether the job was seen done.
pub(crate) fn spin_until(look: impl Fn() -> Seen) -> bool {
    if cfg!(loom) {
        return look() == Seen::Done;
    }
    // `try_with` fails only where the thread-local is already gone (a
    // poll from a destructor at the thread's exit): no spin then.
    HISTORY
        .try_with(|history| history.spin(look))
        .unwrap_or(false)
}

impl History {
    fn spin(&self, look: impl Fn() -> Seen) -> bool {
        if self.skip.get() > 0 {
            self.skip.set(self.skip.get() - 1);
            return false;
        }
        let caught = spin_for(BUDGET, START_LIMIT, &look);
        self.record(caught);
        caught
    }

    fn record(&self, caught: bool) {
        if caught {
            self.misses.set(0);
        } else {
            let misses = (self.misses.get() + 1).min(MAX_MISSES);
            self.misses.set(misses);
            self.skip.set((1 << misses) - 1);
        }
    }
}

/// Spins until `look()` sees the job done, `budget` has passed, or
/// `start_limit` has passed with the job still queued. Returns whether it
/// saw the job done.
fn spin_for(budget: Duration, start_limit: Duration, look: impl Fn() -> Seen) -> bool {
    let start = Instant::now();
    loop {
        let mut seen = Seen::Queued;
        for _ in 0..READS_PER_CLOCK {
            seen = look();
            if seen == Seen::Done {
                return true;
            }
            std::hint::spin_loop();
        }
        let spun = start.elapsed();
        if spun >= budget || (spun >= start_limit && seen == Seen::Queued) {
            return look() == Seen::Done;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn history() -> History {
        History {
            misses: Cell::new(0),
            skip: Cell::new(0),
        }
    }

    /// How many of `polls` polls spin when every spin misses.
    fn attempts(polls: u32) -> u32 {
        let history = history();
        (0..polls)
            .filter(|_| {
                let before = history.skip.get();
                let caught = history.spin(|| Seen::Started);
                assert!(!caught);
                before == 0
            })
            .count() as u32
    }

    #[test]
    fn a_spin_that_sees_the_output_catches_it() {
        let history = history();
        assert!(history.spin(|| Seen::Done));
        assert_eq!((history.misses.get(), history.skip.get()), (0, 0));
    }

    #[test]
    fn misses_double_the_polls_skipped() {
        let history = history();
        assert!(!history.spin(|| Seen::Started));
        assert_eq!((history.misses.get(), history.skip.get()), (1, 1));
        assert!(!history.spin(|| panic!("skipped: not called")));
        assert!(!history.spin(|| Seen::Started));
        assert_eq!((history.misses.get(), history.skip.get()), (2, 3));
    }

    #[test]
    fn long_jobs_spin_about_once_per_1024_polls() {
        // Spins at polls 0, 2, 6, 14, ... 1022 (2, 4, ... 512 apart), then
        // every 1024th.
        let polls = (1 << MAX_MISSES) * 4;
        let expected = MAX_MISSES + 3;
        assert_eq!(attempts(polls), expected);
    }

    #[test]
    fn a_catch_resets_the_backoff() {
        let history = history();
        for _ in 0..3 {
            assert!(!history.spin(|| Seen::Started));
            while history.skip.get() > 0 {
                assert!(!history.spin(|| Seen::Done));
            }
        }
        assert_eq!(history.misses.get(), 3);
        assert!(history.spin(|| Seen::Done));
        assert_eq!((history.misses.get(), history.skip.get()), (0, 0));
    }

    #[test]
    fn a_running_job_is_watched_for_the_whole_budget() {
        let start = Instant::now();
        let budget = Duration::from_micros(50);
        assert!(!spin_for(budget, Duration::ZERO, || Seen::Started));
        assert!(start.elapsed() >= budget);
    }

    #[test]
    fn a_job_still_queued_after_the_start_limit_ends_the_spin() {
        let start = Instant::now();
        let budget = Duration::from_secs(60);
        assert!(!spin_for(budget, Duration::from_micros(50), || {
            Seen::Queued
        }));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_job_seen_done_ends_the_spin_at_once() {
        let looks = Cell::new(0);
        let look = || {
            looks.set(looks.get() + 1);
            if looks.get() < 3 {
                Seen::Queued
            } else {
                Seen::Done
            }
        };
        assert!(spin_for(
            Duration::from_secs(60),
            Duration::from_secs(60),
            look
        ));
        assert_eq!(looks.get(), 3);
    }
}
