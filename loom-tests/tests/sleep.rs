//! Models of the worker loop and the sleep / wake-up protocol of idle
//! workers (src/sched/worker_loop.rs, src/sched/sleep.rs), driven through
//! `offload::loom_api::{run_worker, run_worker_until}`: the very loop every
//! pool worker runs, with its spin token and the library's `Sleep`.
//!
//! Only the queues are the model's own (`Queues` below): the numbers of
//! pending jobs on the injector and on each worker's deque, packed in one
//! loom atomic word, not the library's queues. The injector is checked on
//! its own in `injector.rs`, and crossbeam's deques cannot be seen by loom;
//! a word read with plain Acquire loads leaves the store-buffering race that
//! the SeqCst fences must close, as crossbeam's lock-free deques do. A take
//! from the injector moves a batch of up to two jobs: they leave the
//! injector's count in one step and the rest lands in the taker's own count
//! in a second one, so the window in which a batch is in no queue
//! exists here as in the library. A lost wake-up leaves a worker (and the
//! thread that waits for it) parked for ever, which loom reports as a
//! deadlock.
//!
//! Bookkeeping that no protocol reads across threads (which job is job 0,
//! how many jobs each worker ran) uses std atomics, which loom does not
//! schedule around: they would only multiply the executions.

#![cfg(loom)]

mod common;

use common::{model, model_bounded};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{run_worker, run_worker_until, Parker, Queues, Sleep, Spinning};
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering as StdOrdering};

/// Most jobs one take from the injector moves (the library's batch under
/// loom is two as well).
const BATCH: usize = 2;

/// The fields of the queue word: the injector's count, then each worker's.
const INJECTOR: u32 = 0;
const FIELD_BITS: u32 = 8;
const FIELD: usize = (1 << FIELD_BITS) - 1;

/// The shift of worker `worker`'s field.
fn own(worker: usize) -> u32 {
    FIELD_BITS * (worker as u32 + 1)
}

struct Pool {
    sleep: Sleep,
    /// Pending jobs: the injector's and each worker deque's counts, one
    /// field each (see the module docs).
    queues: AtomicUsize,
    /// Jobs run so far.
    ran: AtomicUsize,
    /// Jobs run by each worker (bookkeeping, see the module docs).
    ran_by: [StdAtomicUsize; 2],
    stop: AtomicBool,
    /// What a waiting worker waits for (a join latch, say).
    latch: AtomicBool,
    /// Unparked after each job run (the submitter waits on it).
    done: Parker,
    /// Jobs started so far: the id of the next job taken (bookkeeping).
    started: StdAtomicUsize,
    /// Whether job 0 blocks until job 1 ran (see
    /// `spinner_that_finds_work_wakes_a_sleeper`).
    job0_waits_for_job1: bool,
    /// Job 0 parks here while it waits.
    job0: Parker,
    /// Whether the workers spin a round before they sleep (a learnt spin).
    spin: bool,
}

impl Pool {
    /// Takes up to `most` jobs from the field at `shift`; how many it took.
    fn take(&self, shift: u32, most: usize) -> usize {
        // Acquire: the jobs' contents were published with their push.
        match self
            .queues
            .fetch_update(Ordering::Acquire, Ordering::Acquire, |word| {
                let n = (word >> shift) & FIELD;
                (n > 0).then(|| word - (n.min(most) << shift))
            }) {
            Ok(word) => ((word >> shift) & FIELD).min(most),
            Err(_) => 0,
        }
    }
}

impl Queues for Pool {
    type Job = ();

    fn pop_own(&self, worker: usize) -> Option<()> {
        (self.take(own(worker), 1) > 0).then_some(())
    }

    fn take_shared(&self, worker: usize, _spinning: &Spinning<'_>) -> Option<()> {
        // A batch from the injector: it leaves the injector here...
        let taken = self.take(INJECTOR, BATCH);
        if taken > 1 {
            // ...and its rest lands in this worker's deque only now.
            // Release: publishes the jobs to thieves.
            self.queues
                .fetch_add((taken - 1) << own(worker), Ordering::Release);
        }
        if taken > 0 {
            return Some(());
        }
        // A steal from the other worker's deque.
        (self.take(own(1 - worker), 1) > 0).then_some(())
    }

    fn has_work(&self, _worker: usize) -> bool {
        // Acquire: as a take; the sleep protocol's fences, not this load,
        // decide whether a push before them is seen.
        self.queues.load(Ordering::Acquire) != 0
    }

    fn execute(&self, worker: usize, _job: ()) {
        self.run_job();
        self.ran_by[worker].fetch_add(1, StdOrdering::Relaxed);
    }

    fn spins(&self, _worker: usize) -> bool {
        self.spin
    }
}

impl Pool {
    fn new(workers: usize) -> Arc<Self> {
        assert!(workers <= 2, "the model's pool has at most two workers");
        Arc::new(Pool {
            sleep: Sleep::new(workers),
            queues: AtomicUsize::new(0),
            ran: AtomicUsize::new(0),
            ran_by: [StdAtomicUsize::new(0), StdAtomicUsize::new(0)],
            stop: AtomicBool::new(false),
            latch: AtomicBool::new(false),
            done: Parker::new(),
            started: StdAtomicUsize::new(0),
            job0_waits_for_job1: false,
            job0: Parker::new(),
            spin: false,
        })
    }

    fn spinning(workers: usize) -> Arc<Self> {
        let mut pool = Self::new(workers);
        Arc::get_mut(&mut pool).unwrap().spin = true;
        pool
    }

    fn with_blocking_job0(workers: usize) -> Arc<Self> {
        let mut pool = Self::new(workers);
        Arc::get_mut(&mut pool).unwrap().job0_waits_for_job1 = true;
        pool
    }

    /// Pushes a job on the injector and wakes a sleeper, as
    /// `Registry::inject` does.
    fn submit(&self) {
        // Release: the job's contents are published with the push.
        self.queues.fetch_add(1 << INJECTOR, Ordering::Release);
        self.sleep.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Runs the job just taken.
    fn run_job(&self) {
        let id = self.started.fetch_add(1, StdOrdering::Relaxed);
        if id == 0 && self.job0_waits_for_job1 {
            while self.ran.load(Ordering::Acquire) < 1 {
                self.job0.park();
            }
        }
        self.ran.fetch_add(1, Ordering::Release);
        self.done.unpark();
        if self.job0_waits_for_job1 {
            self.job0.unpark();
        }
    }

    /// The worker loop (`run_until_terminated`): worker `index` runs jobs
    /// until the pool shuts down.
    fn work(&self, index: usize) {
        run_worker(&self.sleep, self, index, || self.stopping());
    }

    /// A worker blocked on `latch` (`wait_until`): it runs jobs until the
    /// latch is set, spinning and sleeping when there are none. Leaving, it
    /// ends its spin: if a notifier counted on it for a job (woke it, or
    /// skipped a wake-up because it spun), the spin's end hands that job on.
    fn wait_until_latch(&self, index: usize) {
        run_worker_until(&self.sleep, self, index, || {
            self.latch.load(Ordering::Acquire)
        });
    }

    /// The worker loop, cut short: worker `index` spins and sleeps until it
    /// has run one job, then leaves (with no shutdown to wake it, only a
    /// submission's wake-up gets it out of a sleep).
    fn take_one_job(&self, index: usize) {
        run_worker_until(&self.sleep, self, index, || {
            self.ran_by[index].load(StdOrdering::Relaxed) > 0
        });
    }

    /// Waits until `n` jobs have run.
    fn wait_ran(&self, n: usize) {
        while self.ran.load(Ordering::Acquire) < n {
            self.done.park();
        }
    }

    /// Shutdown: set the flag, wake everyone (as `Registry::terminate`).
    fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        self.sleep.notify_all();
    }

    fn queued(&self) -> usize {
        // Relaxed: read after joining every worker, which orders it.
        self.queues.load(Ordering::Relaxed)
    }
}

/// 2(a) A job submitted while the only worker decides to sleep is always
/// run: either the worker's re-check sees it, or the submitter's
/// `notify_one` sees the worker listed and unparks it.
#[test]
fn submit_races_sleep_one_worker() {
    model("submit_races_sleep_one_worker", || {
        let pool = Pool::new(1);
        let worker = {
            let pool = pool.clone();
            thread::spawn(move || pool.take_one_job(0))
        };
        pool.submit();
        worker.join().unwrap();
        assert_eq!(pool.queued(), 0);
    });
}

/// 2(b) Two submissions racing with two workers going to sleep: both jobs
/// run. Each worker runs the worker loop until it has run one job, then
/// exits (no shutdown, so only the submissions' wake-ups can get a worker
/// out of its sleep; a lost one is a deadlock).
#[test]
fn two_submits_two_sleepers() {
    model_bounded("two_submits_two_sleepers", Some(2), || {
        let pool = Pool::new(2);
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || pool.take_one_job(i))
            })
            .collect();
        pool.submit();
        pool.submit();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(pool.ran.load(Ordering::Relaxed), 2);
    });
}

/// Two workers run the worker loop; the submitter pushes two jobs, waits
/// until both ran (a lost wake-up is a deadlock), then shuts down, and every
/// worker exits.
fn two_jobs_on_two_workers(pool: Arc<Pool>) {
    let workers: Vec<_> = (0..2)
        .map(|i| {
            let pool = pool.clone();
            thread::spawn(move || pool.work(i))
        })
        .collect();
    pool.submit();
    pool.submit();
    pool.wait_ran(2);
    pool.shutdown();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(pool.ran.load(Ordering::Relaxed), 2);
}

/// 2(b') As 2(b) with the full worker loop (`two_jobs_on_two_workers`).
///
/// Bound 1 (100k executions, 21 s): the real loop's extra looks (its own
/// deque, then the shared queues, each a loom scheduling point) put bound 2
/// past five minutes. 2b checks the same two-sleeper race at bound 2; set
/// `OFFLOAD_LOOM_FULL=1` to run this one at `LOOM_MAX_PREEMPTIONS`.
#[test]
fn two_submits_two_sleepers_then_shutdown() {
    model_bounded("two_submits_two_sleepers_then_shutdown", Some(1), || {
        two_jobs_on_two_workers(Pool::new(2));
    });
}

/// 2(c) Shutdown (`notify_all` after setting the stop flag) racing with two
/// workers falling asleep: every worker exits.
#[test]
fn shutdown_wakes_all_sleepers() {
    model("shutdown_wakes_all_sleepers", || {
        let pool = Pool::new(2);
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || pool.work(i))
            })
            .collect();
        pool.shutdown();
        for worker in workers {
            worker.join().unwrap();
        }
    });
}

/// 2(d) One submission, then shutdown, racing with one worker: the job
/// pushed before the shutdown still runs (the worker reads the stop flag
/// before looking for work), and the worker exits.
#[test]
fn submit_then_shutdown_runs_job() {
    model("submit_then_shutdown_runs_job", || {
        let pool = Pool::new(1);
        let worker = {
            let pool = pool.clone();
            thread::spawn(move || pool.work(0))
        };
        pool.submit();
        pool.shutdown();
        worker.join().unwrap();
        assert_eq!(pool.ran.load(Ordering::Relaxed), 1);
    });
}

/// 2(e) A worker blocked in `wait_until` (on a join latch, say) and an idle
/// worker: a job is submitted while the latch gets set. If the notifier
/// picks the waiting worker (or skips the wake-up because it spins), which
/// then leaves because its latch is set, the wake-up must be passed on to
/// the idle worker, or the job is stranded (the submitter waits for it
/// before shutting down, so a swallowed wake-up is a deadlock).
#[test]
fn waiting_worker_passes_wakeup_on() {
    model_bounded("waiting_worker_passes_wakeup_on", Some(2), || {
        waiting_worker_and_idle_worker(Pool::new(2));
    });
}

/// 2(h) 2(e) with workers that spin a round before they sleep (a learnt
/// spin, `src/sched/spin_budget.rs`): a notifier that skipped its wake-up because the
/// waiting worker spun is answered by that spin's end. Mutant
/// `spin_round_leaks_token` never ends the spin it started: the job is
/// stranded.
#[test]
fn a_spinning_waiter_passes_wakeup_on() {
    model_bounded("a_spinning_waiter_passes_wakeup_on", Some(2), || {
        waiting_worker_and_idle_worker(Pool::spinning(2));
    });
}

/// The body of 2(e) and 2(h).
fn waiting_worker_and_idle_worker(pool: Arc<Pool>) {
    let waiting = {
        let pool = pool.clone();
        thread::spawn(move || pool.wait_until_latch(0))
    };
    let idle = {
        let pool = pool.clone();
        thread::spawn(move || pool.work(1))
    };
    pool.submit();
    // Set the latch and wake its waiter, as `Latch::set` does.
    pool.latch.store(true, Ordering::Release);
    pool.sleep.unpark(0);
    pool.wait_ran(1);
    waiting.join().unwrap();
    pool.shutdown();
    idle.join().unwrap();
    assert_eq!(pool.ran.load(Ordering::Relaxed), 1);
}

/// 2(f) Spinners: a notifier that sees a spinner wakes nobody, so a spinner
/// that finds a job must, when it stops spinning, wake a sleeper for any job
/// still queued. Job 0 blocks its worker until job 1 has run, so if W0 spins
/// while both jobs are pushed (both notifiers skip the wake-up), takes job 0
/// and does not hand job 1 on, W1 sleeps for ever: a deadlock.
#[test]
fn spinner_that_finds_work_wakes_a_sleeper() {
    model_bounded("spinner_that_finds_work_wakes_a_sleeper", Some(1), || {
        two_jobs_on_two_workers(Pool::with_blocking_job0(2));
    });
}

/// 2(g) A batch taken by a worker that was not spinning (the gap of issue
/// 13): both jobs are queued before the workers start, so worker 0's first
/// look may take both from the injector in one batch, and worker 1 may look
/// (and fall asleep) while the second job is in no queue. Job 0 blocks its
/// worker until job 1 has run, so unless worker 0's spin, which ends after
/// the batch landed in its deque, sees job 1 and wakes worker 1 for it, the
/// pool deadlocks. Mutant `batch_taken_outside_spin` takes the batch
/// without a spin, as the loop did before.
#[test]
fn batch_landing_wakes_a_sleeper() {
    model_bounded("batch_landing_wakes_a_sleeper", Some(2), || {
        let pool = Pool::with_blocking_job0(2);
        pool.submit();
        pool.submit();
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || pool.work(i))
            })
            .collect();
        pool.wait_ran(2);
        pool.shutdown();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(pool.ran.load(Ordering::Relaxed), 2);
    });
}
