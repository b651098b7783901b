//! Noticing a job that blocks without saying so (`Builder::detect_blocking`),
//! and the *helpers* that keep `threads` threads running CPU jobs meanwhile.
//!
//! A job that calls a sync HTTP client, a sync database driver or
//! `std::thread::sleep` without [`blocking`](crate::blocking) holds its
//! worker while the jobs queued behind it wait. One *detector* thread per
//! pool looks at the pool's *runners* (the holders of the workers' places,
//! and the helpers below) while jobs wait (every 100 µs to 10 ms, see
//! below; never while none waits), and treats a runner as blocked when it has been inside one job for at
//! least [`THRESHOLD`] and its thread is not on a CPU: on Linux, the state
//! field of `/proc/self/task/<tid>/stat` reads `S` (sleeping) or `D` (disk
//! wait), where a thread that computes reads `R` (running, or runnable and
//! waiting for a core, which is not blocking; see [`super::thread_state`]).
//! For each blocked runner, while jobs wait, it starts one *helper*: a spare
//! thread that takes jobs one at a time from the injector and the workers'
//! deques and runs them, without a place of its own, until the blocked
//! runner is back.
//!
//! # Who counts what
//!
//! - Every runner has a [`Runner`]: the OS id of its thread, `blocked`, the
//!   detector's verdict, and a progress count: for a place, the Tasks
//!   started on it (the count `Pool::metrics` keeps anyway, so a worker's
//!   hot path pays only the look at its flag after each job); for a
//!   helper, every job it started, with its start time (helpers run only
//!   while something is blocked and can afford the clock: the detector
//!   reads a helper's thread just as its job crosses the threshold). A
//!   runner whose count has not moved
//!   since the detector's last look is in one job, or idle (a place's
//!   holder asleep is skipped), or running parts of one (`join` halves and
//!   `scope` jobs do not count: a look at its state then finds it
//!   running).
//! - [`Compensation`] holds two counts: `blocked`, the runners whose flag
//!   is set, and `helpers`, the helpers alive. The detector starts helpers
//!   while `helpers < blocked` and jobs wait; a helper retires between two
//!   jobs while `helpers > blocked` (one compare-and-swap decides), or when
//!   it finds no job. So the threads running CPU jobs number `threads`,
//!   give or take one job's length around each change.
//! - The bound: a helper is a runner too, and its own block is
//!   compensated like a worker's (a load where every job blocks keeps
//!   ramping); but a spare may compensate only while fewer than
//!   `max_blocking_threads` stand-ins and helpers run (see
//!   [`super::spares`]), so a pile-up of blocked helpers stops there, and
//!   the pool runs at most `threads + max_blocking_threads` jobs at once.
//!
//! # The flag protocol
//!
//! The detector sets a runner's flag (`flag`: add one to `blocked`, then
//! store `true`, Release); whoever sees the runner back clears it
//! (`unflag`: a `swap(false)`, Acquire, and only the thread whose swap
//! found `true` subtracts one). The runner itself clears it when the job it
//! was stuck in ends and when its place's holder falls asleep; the
//! detector clears it when it reads the thread running again, or, for a
//! helper, after the helper retired. Since exactly one swap finds `true`,
//! each flag adds one and takes one away, whoever races: `blocked` returns
//! to the number of flags set. The Release/Acquire pair orders the
//! increment before the decrement, so `blocked` never wraps below zero.
//! (Loom: `detected_runner_and_helper_counts_return_to_zero`, with the
//! mutant `unflag_load_then_store`, which clears with a load and a store
//! and loses a decrement or takes one twice.)
//!
//! # When the detector sleeps
//!
//! Detection matters only while a job waits that no thread takes. The
//! detector therefore sleeps for good (`Dormancy`, no timer) whenever no
//! job waits in the injector or a deque, and the one thing that ends such
//! a wait is a submission that found no worker to wake (none asleep, none
//! spinning): the push's notifier pokes it. The two sides are the
//! store-buffering pattern, closed by SeqCst fences as the sleep protocol
//! is (see [`crate::sched::sleep`]): the detector raises `dormant`, fences and
//! looks at the queues; the notifier has fenced after its push, and then
//! reads `dormant`. Either the detector sees the job, or the notifier sees
//! `dormant` and wakes it (a `swap` decides who unparks). So an idle pool
//! costs no wake-up at all. (Loom:
//! `dormant_detector_is_woken_by_a_push_that_wakes_nobody`, with the
//! mutant `dormancy_no_fence`.)
//!
//! Poked, it looks at once; then, while jobs wait, it ticks: every
//! [`FAST_TICK`] for [`RAMP`] after each action (a flag, a helper started:
//! in a pool whose jobs all block, the next round comes at once), else
//! from [`WAKE_TICK`] twice as long each quiet tick, up to
//! [`HELPING_TICK`] while helpers run and [`SLOW_TICK`] otherwise, and
//! sooner when a runner that sits in one job is due for its next read.
//!
//! # Why these times
//!
//! - [`THRESHOLD`], 100 µs: a job asleep for that long in a system call
//!   is treated as blocked, five times Go's 20 µs hand-off. A detection
//!   costs a helper for the rest of the job (an idle spare's wake-up, or a
//!   thread start the first time): worth it for anything near a network
//!   round trip or a disk access, wasted only on a job that sleeps a few
//!   hundred microseconds and then computes for long, where the helper
//!   runs beside it for one job. Each round of detection in a pool where
//!   every job blocks (the blocking mix: 200 sleeps of 50 ms on 2
//!   threads) takes a threshold and a tick, so a coarser one stretches
//!   the ramp to the hundreds of threads such a load needs
//!   (BENCHMARKS.md measures it).
//! - A runner seen computing (`R`) is read again after as long again as it
//!   has been in its job (at 100 µs, 200 µs, 400 µs, ...): a long CPU job
//!   costs a few reads, and a job that blocks after computing for `t` is
//!   seen within about `t` more.
//! - A tick costs the detector about 30 µs of CPU on the 2-core VM of
//!   BENCHMARKS.md (a timed futex wait, a wake-up, the looks), so
//!   [`SLOW_TICK`], 10 ms, bounds a saturated pool's cost at about 0.3% of
//!   one core (measured: 0.19% of the pool's CPU time over a burst and a
//!   run of 1 ms jobs, `examples/detect_cost.rs`), at the price of noticing
//!   the first blocked job of a busy period within two ticks, 20 ms, when
//!   the poke's immediate look did not catch it.
//!   [`HELPING_TICK`], 2 ms, while helpers run: a runner's next job may
//!   block too.
//!
//! # Marked calls
//!
//! A worker inside [`crate::blocking`](mod@crate::blocking) in a pool with a
//! detector keeps its place (running `f` away from it) and marks its runner
//! with the call's start ([`Runner::mark`]); if jobs wait and the
//! detector's next look is later than the call's threshold, it wakes the
//! detector (a hint, `Detector::looks_later_than`; while the detector
//! ticks, its next look reads as "now", so a call marked during a tick
//! wakes it too; a job pushed later pokes a dormant detector as usual).
//! The detector then treats the runner as it treats a helper whose job
//! start it knows, with three differences: the call is
//! timed from its own start, not from the job's; after the first read at
//! [`THRESHOLD`] (never sooner, even right after a poke) it reads the
//! thread again after a quarter of the time spent in the call, at least
//! the threshold (a call that said it blocks is worth closer looks; a call
//! that computes for a second costs about forty reads); and where
//! the thread's state cannot be read it takes the call at its word. It
//! flags the runner with [`Compensation::flag_marked`], which re-checks
//! the mark after a SeqCst fence and takes the flag back if the call
//! ended meanwhile; the thread, when the call ends, clears the mark, fences
//! and clears its own flag ([`Runner::marked_call_ended`]). The two fences
//! close the store-buffering pair: one side or the other sees the other's
//! store, so no flag outlives its call (loom:
//! `a_marked_call_that_ends_while_flagged_leaves_no_flag`, with the mutant
//! `marked_end_no_fence`). The detector also leaves its last reading of
//! the call ([`Runner::set_verdict`]): a marked call of 10 ms or more
//! (`LONG_CALL` in `sched/worker.rs`) last read off the CPU, or never read
//! (no job waited), makes the place's next call lend the place at once
//! instead, if jobs wait.
//!
//! # What it does not see
//!
//! A join half that a blocked worker runs inline (deeper than the halves it
//! publishes) waits for it; so does the rest of the blocked job. A thread
//! that spins on a lock reads `R` and is never blocked in this sense. Where
//! the platform has no `/proc` (anything but Linux), detection is off.

// Under loom there is no detector thread (it reads the clock and `/proc`):
// the models check its protocols, `Compensation` and `Dormancy`.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

use std::cell::Cell;
use std::collections::HashMap;
use std::ptr;
use std::time::{Duration, Instant};

use super::runner::{Compensation, Runner};
use super::thread_state::ThreadStates;
use crate::sched::registry::Registry;
use crate::sync::{lock, Arc, StdArc};

/// How long a runner must have been inside one job, off the CPU, to count
/// as blocked (module docs).
pub(crate) const THRESHOLD: Duration = Duration::from_micros(100);

/// The detector's tick for [`RAMP`] after it flagged a runner or started a
/// helper: the next round of a ramp comes soon.
pub(crate) const FAST_TICK: Duration = Duration::from_micros(100);

/// The detector's first tick after a poke ended its dormancy, when that
/// first look found nothing to do (a busy pool, not a blocked one).
pub(crate) const WAKE_TICK: Duration = Duration::from_millis(1);

/// How long the detector ticks fast after an action.
pub(crate) const RAMP: Duration = Duration::from_millis(2);

/// The detector's longest tick while helpers run.
pub(crate) const HELPING_TICK: Duration = Duration::from_millis(2);

/// The detector's longest tick while jobs wait (it doubles up to it from
/// [`FAST_TICK`] while nothing happens, or ticks when a runner that sits in
/// one job is due for its next look).
pub(crate) const SLOW_TICK: Duration = Duration::from_millis(10);

// The pool whose helper the thread is, during a helper's turn; null
// elsewhere.
crate::sync::thread_local! {
    static HELPING: Cell<*const Registry> = const { Cell::new(ptr::null()) };
}

/// Whether the calling thread is one of `registry`'s helpers, running its
/// jobs without a place: `join`, `scope` and `install` on that pool then
/// run on the helper (see [`crate::fork_join::join::join_in`]).
pub(crate) fn is_helping(registry: &Registry) -> bool {
    HELPING.with(|helping| ptr::eq(helping.get(), registry))
}

/// A helper's turn, on a spare thread: runs jobs from the shared queues
/// until it is not needed or finds none (module docs).
pub(crate) fn help(registry: &Arc<Registry>) {
    let detector = registry.detector();
    let compensation = detector.compensation();
    let runner = StdArc::new(Runner::new());
    runner.bind_current_thread();
    lock(&detector.helpers).push(StdArc::clone(&runner));
    let tally = registry.tally();
    let mut victim = 0usize;
    struct Helping;
    impl Drop for Helping {
        fn drop(&mut self) {
            HELPING.with(|helping| helping.set(ptr::null()));
        }
    }
    HELPING.with(|helping| helping.set(ptr::from_ref::<Registry>(registry)));
    let _helping = Helping;
    crate::sched::worker::run_away_from(registry, || {
        while compensation.helper_stays() {
            let Some(job) = registry.take_one(victim) else {
                compensation.remove_helper();
                break;
            };
            victim = victim.wrapping_add(1);
            runner.job_started(detector.epoch.elapsed());
            crate::sched::lanes::run_as(job.priority(), || {
                job.execute(registry.execution_mode(), &tally);
            });
            runner.job_ended(compensation);
        }
    });
    lock(&detector.helpers).retain(|other| !StdArc::ptr_eq(other, &runner));
    // Out of the list, it cannot be flagged again: take back a flag set
    // while it waited between jobs.
    compensation.unflag(&runner);
}

/// What the detector remembers of a runner.
struct Seen {
    progress: u64,
    /// When it was first seen at this `progress`, or when the marked call
    /// it is in started.
    since: Instant,
    /// When to read its thread's state next.
    next_read: Instant,
    /// The marked call it was last seen in ([`Runner::marked_token`], 0:
    /// none).
    marked: u64,
}

impl Seen {
    /// First seen at `progress` now, in a job that started at `since`.
    fn new(progress: u64, since: Instant) -> Self {
        Self {
            progress,
            since,
            next_read: since + THRESHOLD,
            marked: 0,
        }
    }
}

/// The detector thread's life (module docs): ends when the pool
/// terminates.
#[cfg(not(loom))]
pub(crate) fn watch(registry: &Arc<Registry>) {
    let dormancy = registry.sleep.dormancy();
    let detector = registry.detector();
    let start = Instant::now();
    let mut watcher = Watcher {
        registry,
        states: ThreadStates::default(),
        // Seen since the pool started: a runner that has not moved since
        // has been idle or in one job all along.
        places: (0..registry.num_threads())
            .map(|index| Seen::new(registry.stats().started_on(index), start))
            .collect(),
        helpers: HashMap::new(),
    };
    let mut tick = SLOW_TICK;
    // When the detector last flagged a runner or started a helper: while
    // that is recent, a ramp is under way and the next round comes soon.
    let mut acted_at = start.checked_sub(RAMP).unwrap_or(start);
    // Whether the last wait was the dormant one: then look at once.
    let mut poked = false;
    loop {
        let terminating = registry.is_terminating();
        // A shutdown runs the queue: the detector goes on helping until
        // every other thread of the pool has exited (it ticks meanwhile,
        // never dormant: nothing would wake it for the last exit).
        if terminating && registry.live_threads() == 1 {
            return;
        }
        // A wake-up held back by a worker keeps the detector awake too: it
        // wakes them at each tick (see `crate::task::completions`). Its
        // next look reads "now" here (set below after each sleep, and so
        // from the start): a marked call wakes it from dormancy too.
        if !terminating
            && dormancy.sleep_unless(|| {
                registry.has_waiting_jobs()
                    || registry.any_deferred()
                    || crate::task::completions::any_handed()
            })
        {
            // Poked: a job waits and every worker is busy. Look at once,
            // reading every runner that has not moved since the last look
            // (it has been in one job, or asleep, since then); a burst of
            // CPU jobs, whose runners all moved, then costs no fast ticks.
            watcher.read_all_soon();
            tick = WAKE_TICK;
            poked = true;
            continue;
        }
        if !std::mem::take(&mut poked) {
            let at = Instant::now() + tick;
            detector.set_next_look(Some(at));
            dormancy.sleep_until(at);
        }
        // Looking now: a call marked meanwhile, which this tick may miss,
        // wakes the detector, so that its next sleep ends at once and the
        // tick after it times the call.
        detector.set_next_look(None);
        registry.wake_deferred();
        crate::task::completions::wake_handed();
        let (acted, next_read) = watcher.tick();
        let now = Instant::now();
        if acted {
            acted_at = now;
        }
        tick = if now.saturating_duration_since(acted_at) < RAMP {
            FAST_TICK
        } else {
            // Back off, but come back when a runner that sits in one job
            // is due for its next look.
            let until_read = next_read.map_or(SLOW_TICK, |at| at.saturating_duration_since(now));
            // While helpers run, the next job a runner starts may block
            // too: look at least every `HELPING_TICK`.
            let longest = if registry.detector().compensation().helpers() > 0 {
                HELPING_TICK
            } else {
                SLOW_TICK
            };
            (tick * 2).min(longest).min(until_read).max(FAST_TICK)
        };
    }
}

#[cfg(not(loom))]
struct Watcher<'a> {
    registry: &'a Arc<Registry>,
    states: ThreadStates,
    places: Vec<Seen>,
    /// By the address of the helper's runner.
    helpers: HashMap<usize, Seen>,
}

#[cfg(not(loom))]
impl Watcher<'_> {
    fn read_all_soon(&mut self) {
        let now = Instant::now();
        for seen in self.places.iter_mut().chain(self.helpers.values_mut()) {
            seen.next_read = seen.next_read.min(now);
        }
    }

    /// One look at every runner; starts helpers for the blocked ones if
    /// jobs wait. Returns whether it flagged a runner or started a helper,
    /// and when the next look at a runner that sat in one job since the
    /// last tick is due.
    fn tick(&mut self) -> (bool, Option<Instant>) {
        let registry = self.registry;
        let detector = registry.detector();
        let compensation = detector.compensation();
        let now = Instant::now();
        let mut acted = false;
        let mut next_read: Option<Instant> = None;
        let mut note = |seen: &Seen, (flagged, unmoved): (bool, bool)| {
            acted |= flagged;
            if flagged {
                registry.stats().detected();
            }
            if unmoved {
                next_read = Some(next_read.map_or(seen.next_read, |at| at.min(seen.next_read)));
            }
        };
        for (index, runner) in detector.places.iter().enumerate() {
            let asleep = registry.stats().is_asleep(index);
            let seen = &mut self.places[index];
            let progress = || registry.stats().started_on(index);
            let look = look(
                &mut self.states,
                seen,
                runner,
                progress,
                asleep,
                compensation,
                (detector.epoch, now),
            );
            note(seen, look);
        }
        {
            let helpers = lock(&detector.helpers);
            for runner in helpers.iter() {
                let key = StdArc::as_ptr(runner) as usize;
                // First seen: as if it moved (its start time tells the rest).
                let seen = self
                    .helpers
                    .entry(key)
                    .or_insert_with(|| Seen::new(u64::MAX, now));
                let progress = || runner.progress();
                let look = look(
                    &mut self.states,
                    seen,
                    runner,
                    progress,
                    false,
                    compensation,
                    (detector.epoch, now),
                );
                note(seen, look);
            }
            if self.helpers.len() > helpers.len() {
                // Forget the helpers that left.
                self.helpers.retain(|&key, _| {
                    helpers
                        .iter()
                        .any(|runner| StdArc::as_ptr(runner) as usize == key)
                });
            }
        }
        if compensation.blocked() > compensation.helpers() && registry.has_waiting_jobs() {
            while compensation.add_helper() {
                if !registry.spares().help(registry, help) {
                    compensation.remove_helper();
                    break;
                }
                acted = true;
            }
        }
        (acted, next_read)
    }
}

/// Looks at one runner: flags it if it has been inside one job (or one
/// marked call) for at least the threshold, off the CPU; clears its flag if
/// it runs again. Returns whether it flagged it, and whether it sat in one
/// job since the last look without being flagged (its next read is then
/// worth a tick).
#[cfg(not(loom))]
fn look(
    states: &mut ThreadStates,
    seen: &mut Seen,
    runner: &Runner,
    progress_now: impl Fn() -> u64,
    asleep: bool,
    compensation: &Compensation,
    (epoch, now): (Instant, Instant),
) -> (bool, bool) {
    let progress = progress_now();
    let marked = runner.marked_token();
    if progress != seen.progress || asleep {
        // A helper says when its job started; a place's start is known
        // only to within a tick, so it is counted from now.
        let started = runner.started_at(epoch).filter(|&at| at <= now);
        *seen = Seen::new(progress, started.unwrap_or(now));
        if asleep {
            // Flagged as it fell asleep: not blocked in a job.
            compensation.unflag(runner);
            return (false, false);
        }
        if started.is_none() && marked == 0 {
            return (false, false);
        }
    }
    if marked != seen.marked {
        // A marked call is timed from its start, exactly.
        seen.marked = marked;
        if let Some(at) = runner.marked_at(epoch) {
            seen.since = at.min(now);
            seen.next_read = seen.since + THRESHOLD;
        }
    }
    if marked != 0 {
        // Never before its threshold, even right after a poke.
        seen.next_read = seen.next_read.max(seen.since + THRESHOLD);
    }
    let unmoved = !runner.is_flagged();
    if now < seen.next_read {
        return (false, unmoved);
    }
    // Read again after as long again as it has been in this job; a marked
    // call, which said it blocks, after a quarter of that.
    let in_job = now.saturating_duration_since(seen.since);
    let again = if marked == 0 { in_job } else { in_job / 4 };
    seen.next_read = now + again.max(THRESHOLD);
    // Only a home thread's file stays open (see `super::thread_state`).
    let tid = runner.tid();
    let mut state = states.is_blocked(tid, runner.is_home(tid));
    if marked != 0 {
        // Where `/proc` cannot be read, a marked call is taken at its word.
        state = state.or(Some(true));
        runner.set_verdict(marked, state == Some(true));
    }
    match state {
        Some(true) if !runner.is_flagged() => {
            if marked != 0 {
                // Taken back if the call ended meanwhile.
                let stays = compensation.flag_marked(runner, marked);
                return (stays, false);
            }
            compensation.flag(runner);
            if progress_now() != progress {
                // Its job ended meanwhile, maybe before its check.
                compensation.unflag(runner);
                return (false, false);
            }
            (true, false)
        }
        Some(false) if runner.is_flagged() => {
            compensation.unflag(runner);
            (false, true)
        }
        _ => (false, unmoved),
    }
}
