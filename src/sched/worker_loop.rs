//! The worker loop: find work, run it, spin a little, sleep.
//!
//! This is the loop every worker runs, written once over the [`Queues`] it
//! looks in: [`WorkerThread`](crate::sched::worker::WorkerThread) implements them
//! with its crossbeam deque and the pool's injector, and the loom models in
//! `loom-tests/` implement them with queues whose emptiness checks are as
//! weak as crossbeam's, so the models run this very loop, spin token and
//! sleep protocol, not a copy.
//!
//! # Looking for work
//!
//! 1. Pop the worker's own deque. No token needed: the job goes from a
//!    queue every other worker can see straight to being run.
//! 2. Otherwise start a spin ([`Sleep::start_spinning`]) and, holding it,
//!    take from the shared queues ([`Queues::take_shared`]: the injector,
//!    then the other workers' deques). A take may move a batch that nobody
//!    else can see until it lands in this worker's deque; the spin's closing
//!    [`Spinning::stop`] looks again after its fence and wakes a sleeper for
//!    what it landed (see [`crate::sched::sleep`]). That is why `take_shared`
//!    requires a `&Spinning`: a worker back from a job that took a batch
//!    without spinning would owe nobody a re-check, and a worker falling
//!    asleep in that window would sleep while the batch waits behind one
//!    job.
//! 3. With nothing found, spin for as long as this worker's recent gaps
//!    say the next job will come ([`crate::sched::spin_budget`]: up to 100 µs, none when
//!    jobs come further apart, none if another worker already spins), with
//!    growing pauses, then sleep until woken; [`Spinning::sleep`] returns a
//!    spinner, which looks again. The idleness's start and the notifier's
//!    stamp on waking ([`Sleep::take_woken_at`]) measure the gap.
//!
//! A worker that waits for something (a `join` half, an `install` on
//! another pool, a Task it `wait`s on) runs the same loop until its
//! condition holds ([`run_until`]), so waiting never idles a worker while
//! there is work it could run.

use std::time::{Duration, Instant};

use crate::sched::sleep::{Sleep, Spinning};
use crate::sync;

/// Spin rounds of a thread waiting outside the pool before it parks (see
/// [`pause`]: 127 spin hints in all, a few microseconds); zero under
/// loom, where no worker spins either (spinning only multiplies
/// interleavings, and a worker returns from `sleep` a spinner that looks
/// again anyway).
///
/// Such a thread never yields: on a machine whose cores are all busy, a
/// `yield_now` puts it behind the busy threads, and a result that arrives
/// meanwhile waits for its next time slice (milliseconds: a one-query
/// `spawn_blocking` job under CPU load answered 3 ms late at the median),
/// where a parked thread woken by the completion runs at once.
pub(crate) const SPIN_ROUNDS: u32 = if cfg!(loom) { 0 } else { SPIN_HINT_ROUNDS };

/// Spin rounds of a thread outside the pool that waits for a fork-join
/// computation it handed the pool (`install`, `join`, `scope` from outside):
/// 127 spin hints, then 9 rounds of `yield_now` (see [`pause`]), as an idle
/// worker spins, before it parks. The computation occupies the workers, so
/// the yields cost nobody a core; parking at once instead let the workers
/// that the computation wakes share one core: `fib(30)` after an idle gap
/// took 1.5× as long with a waiter that parked after the spin hints.
pub(crate) const FORK_JOIN_SPIN_ROUNDS: u32 = if cfg!(loom) { 0 } else { 16 };

/// Rounds that pause with spin hints; later rounds yield the CPU instead.
const SPIN_HINT_ROUNDS: u32 = 7;

/// Where a worker looks for work, and how it runs what it finds.
pub(crate) trait Queues {
    /// What the queues hold.
    type Job;
    /// The pool's sleep state.
    fn sleep(&self) -> &Sleep;
    /// This worker's index in the sleep state.
    fn index(&self) -> usize;
    /// Pops this worker's own deque.
    fn pop_own(&self) -> Option<Self::Job>;
    /// Takes a job from a queue shared with other workers, moving a batch
    /// behind it to this worker's own deque. Only a spinner may (see the
    /// module docs).
    fn take_shared(&self, spinning: &Spinning<'_>) -> Option<Self::Job>;
    /// Whether any queue this worker looks in holds a job (the re-check
    /// after the sleep protocol's fences; it must include its own deque).
    fn has_work(&self) -> bool;
    /// Runs a job found by this loop.
    fn execute(&self, job: Self::Job);
    /// Called once per idle step, before the spin round or the sleep.
    fn on_idle(&self) {}
    /// Called before a sleep (`true`) and after it (`false`): where the
    /// time asleep is measured (see [`crate::observe::metrics`]).
    fn on_sleep(&self, _asleep: bool) {}
    /// How long to spin before sleeping, from the gaps this worker saw
    /// (see [`crate::sched::spin_budget`]); none by default (the loom models).
    fn spin_budget(&self) -> Duration {
        Duration::ZERO
    }
    /// Records a gap: from going idle to the push that ended the idleness.
    fn spin_gap(&self, _gap: Duration) {}
    /// Whether a thread waits for this worker's place (a hint, read between
    /// jobs and in the sleep re-check; see [`crate::blocking::baton`]).
    fn place_wanted(&self) -> bool {
        false
    }
    /// Whether the first thread waiting for the place is back from a
    /// blocking call, with a job to finish (a hint; see
    /// [`crate::blocking::baton`]).
    fn place_wanted_by_returning(&self) -> bool {
        false
    }
    /// Passes the place to the thread waiting for it, between jobs. Returns
    /// `true` if this thread has left the place for good (a stand-in);
    /// otherwise it holds the place again when this returns.
    fn pass_place(&self) -> bool {
        false
    }
    /// Whether this thread may leave the loop at termination: no other
    /// thread is away from the place (see [`crate::blocking::baton`]).
    fn may_leave(&self) -> bool {
        true
    }
}

/// A worker's idleness between two jobs.
struct Idle<'a> {
    /// Rounds spun so far.
    rounds: u32,
    /// The current spin, if the worker is a spinner.
    spinning: Option<Spinning<'a>>,
    /// When this idleness began (its first step), and until when it spins
    /// (see [`crate::sched::spin_budget`]); `None` before the first step and under loom.
    since: Option<(Instant, Instant)>,
}

impl<'a> Idle<'a> {
    fn new() -> Self {
        Idle {
            rounds: 0,
            spinning: None,
            since: None,
        }
    }

    /// A job ended the idleness that began at `since`: the gap is now.
    fn caught<Q: Queues>(&mut self, queues: &Q) {
        if let Some((since, _)) = self.since.take() {
            queues.spin_gap(since.elapsed());
        }
    }

    /// Looks for a job: its own deque first, then, as a spinner, the shared
    /// queues.
    fn find_work<Q: Queues>(&mut self, queues: &'a Q) -> Option<Q::Job> {
        if let Some(job) = queues.pop_own() {
            return Some(job);
        }
        #[cfg(offload_mutant = "batch_taken_outside_spin")]
        if self.spinning.is_none() {
            // Broken variant: a worker back from a job takes a batch while
            // nobody counts it as a spinner, so no closing re-check hands
            // the rest of the batch on.
            let unaccounted = Spinning::unaccounted(queues.sleep());
            let job = queues.take_shared(&unaccounted);
            std::mem::forget(unaccounted);
            return job;
        }
        let spinning = self
            .spinning
            .get_or_insert_with(|| queues.sleep().start_spinning());
        let job = queues.take_shared(spinning);
        if job.is_some() {
            self.caught(queues);
        }
        job
    }

    /// One step of idleness: a round of spinning or, once the spin is over,
    /// a sleep until woken (unless the queues or `wake()` show something
    /// after the worker announced itself). Either way the worker is still a
    /// spinner afterwards, until [`end`](Self::end).
    fn step<Q: Queues>(
        &mut self,
        queues: &'a Q,
        wake: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) {
        let spinning = self
            .spinning
            .take()
            .unwrap_or_else(|| queues.sleep().start_spinning());
        queues.on_idle();
        if cfg!(loom) {
            // No clock under loom: a model that asks for a spin gets one
            // round, so that the models check the spin branch too.
            if self.rounds == 0 && !queues.spin_budget().is_zero() {
                return self.spin_round(spinning);
            }
            return self.sleep_step(queues, spinning, wake, deadline);
        }
        let now = Instant::now();
        let (_, spin_until) = *self.since.get_or_insert_with(|| {
            // One spinner is enough to catch the next job.
            let budget = if queues.sleep().spinners() > 1 {
                Duration::ZERO
            } else {
                queues.spin_budget()
            };
            (now, now + budget)
        });
        if now < spin_until {
            self.spin_round(spinning);
        } else {
            self.sleep_step(queues, spinning, wake, deadline);
        }
    }

    /// One round of a spin; the worker stays a spinner.
    fn spin_round(&mut self, spinning: Spinning<'a>) {
        pause(self.rounds);
        self.rounds += 1;
        if sync::mutant!("spin_round_leaks_token") {
            // Broken variant: the spin is never ended, so notifiers count
            // a spinner for ever and skip the wake-ups a sleeper needs.
            std::mem::forget(spinning);
        } else {
            self.spinning = Some(spinning);
        }
    }

    /// The sleep that ends a spin; a notifier's stamp tells the gap.
    fn sleep_step<Q: Queues>(
        &mut self,
        queues: &'a Q,
        spinning: Spinning<'a>,
        wake: impl Fn() -> bool,
        deadline: Option<Instant>,
    ) {
        self.rounds = 0;
        queues.on_sleep(true);
        let spinning = spinning.sleep(queues.index(), || wake() || queues.has_work(), deadline);
        queues.on_sleep(false);
        if let Some(woken) = queues.sleep().take_woken_at(queues.index()) {
            if let Some((since, _)) = self.since.take() {
                queues.spin_gap(woken.saturating_duration_since(since));
            }
        }
        self.spinning = Some(spinning);
    }

    /// Leaves idleness: found work, or the awaited condition holds. Ends
    /// the spin, handing on any job still queued (see [`Spinning::stop`]).
    #[inline]
    fn end<Q: Queues>(&mut self, queues: &Q) {
        self.rounds = 0;
        self.since = None;
        if let Some(spinning) = self.spinning.take() {
            spinning.stop(|| queues.has_work());
        }
    }
}

/// Runs jobs until `terminating()` holds and no job is left to find.
/// Between two jobs it passes the worker's place to a thread that waits
/// for it (see [`crate::blocking`](mod@crate::blocking)); a stand-in leaves the loop then.
pub(crate) fn run_until_terminated<Q: Queues>(queues: &Q, terminating: impl Fn() -> bool) {
    let mut idle = Idle::new();
    // At termination the place's home thread also waits for every thread
    // away from its place, which comes back through `place_wanted`.
    let leave = || terminating() && queues.may_leave();
    loop {
        if queues.place_wanted() {
            idle.end(queues);
            if queues.pass_place() {
                return;
            }
            continue;
        }
        // Read the flag before looking for work, so that a job pushed
        // before termination is found before we give up.
        let stop = terminating();
        match idle.find_work(queues) {
            Some(job) => {
                idle.end(queues);
                queues.execute(job);
            }
            None if stop && queues.may_leave() => {
                idle.end(queues);
                return;
            }
            None => idle.step(queues, || leave() || queues.place_wanted(), None),
        }
    }
}

/// Runs other jobs until `done()` holds, sleeping when there are none.
/// Whoever makes `done()` true must then unpark this worker's parker.
/// Between two jobs it may pass the place to a thread that waits for it,
/// and wait to get it back (see [`crate::blocking`](mod@crate::blocking)).
pub(crate) fn run_until<Q: Queues>(queues: &Q, done: impl Fn() -> bool) {
    run_until_deadline(queues, done, None);
}

/// [`run_until`], giving up once `deadline` has passed (checked between
/// jobs: a long job it runs meanwhile delays the return). Returns whether
/// `done()` held.
pub(crate) fn run_until_deadline<Q: Queues>(
    queues: &Q,
    done: impl Fn() -> bool,
    deadline: Option<Instant>,
) -> bool {
    let past = || deadline.is_some_and(|deadline| Instant::now() >= deadline);
    let mut idle = Idle::new();
    let mut finished = done();
    while !finished && !past() {
        // Only a thread with frames on the place waits here, so it holds
        // the place again when `pass_place` returns. It passes at once to
        // a thread back from a blocking call; to one that only waits too,
        // once it found no job to run: two waiters handing the place to
        // each other at every boundary would never run the job that one
        // of them waits for.
        let pass_now = queues.place_wanted() && queues.place_wanted_by_returning();
        if pass_now {
            idle.end(queues);
            queues.pass_place();
        } else {
            match idle.find_work(queues) {
                Some(job) => {
                    idle.end(queues);
                    queues.execute(job);
                }
                None if queues.place_wanted() => {
                    idle.end(queues);
                    queues.pass_place();
                }
                None => idle.step(queues, || done() || queues.place_wanted(), deadline),
            }
        }
        finished = done();
    }
    // A notifier may have counted on this worker (woken it, or skipped a
    // wake-up because it spun) for a job it now leaves behind: ending the
    // spin hands that job on.
    idle.end(queues);
    finished
}

/// The pause of idle round `round`: `2^round` spin hints for the first
/// [`SPIN_HINT_ROUNDS`] rounds (127 hints in all), then a `yield_now` per
/// round, so that a spinning thread on an oversubscribed machine lets the
/// thread it waits for run.
pub(crate) fn pause(round: u32) {
    if round < SPIN_HINT_ROUNDS {
        for _ in 0..1u32 << round {
            sync::spin_loop();
        }
    } else {
        sync::thread::yield_now();
    }
}
