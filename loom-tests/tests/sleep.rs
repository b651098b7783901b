//! Models of the sleep / wake-up protocol of idle workers (src/sleep.rs),
//! driven through `offload::loom_api::Sleep`.
//!
//! The "queue" here is a loom atomic counter of pending jobs, not the
//! library's queue: the loom stand-in for crossbeam-deque is a `Mutex`,
//! whose lock/unlock would order a push before a later re-check on its own
//! and hide a missing fence. An atomic (Release push, Acquire re-check)
//! leaves the store-buffering race that the SeqCst fences must close, as
//! with crossbeam's lock-free deques.
//!
//! Each worker runs the worker loop's logic (src/worker.rs `main_loop`,
//! `idle_step`, `end_idle`): read the stop flag, look for work, exit if
//! stopping and there is none; else go idle: first as a spinner
//! (`start_spinning`) for one more look, then
//! `sleep(i, || has_work() || stopping())`, from which it returns a spinner;
//! a spinner that finds work, or stops waiting, calls `stop_spinning`. A lost wake-up leaves a worker (and the thread that waits
//! for it) parked for ever, which loom reports as a deadlock.

#![cfg(loom)]

mod common;

use common::{model, model_bounded};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{Parker, Sleep};

/// Spin rounds before sleeping: the library has 16; none is enough here,
/// since a worker returns from `sleep` a spinner and looks for work then, so
/// every path (spin, sleep, find work while spinning, stop spinning) is
/// still taken, in far fewer executions.
const SPIN_ROUNDS: usize = 0;

/// A worker's idleness, as src/worker.rs `IdleState`.
#[derive(Default)]
struct Idle {
    rounds: usize,
    spinning: bool,
}

struct Pool {
    sleep: Sleep,
    /// Pending jobs (the queue).
    queued: AtomicUsize,
    /// Jobs run so far.
    ran: AtomicUsize,
    stop: AtomicBool,
    /// What a waiting worker waits for (a join latch, say).
    latch: AtomicBool,
    /// Unparked after each job run (the submitter waits on it).
    done: Parker,
    /// Jobs started so far: the id of the next job taken.
    started: AtomicUsize,
    /// Whether job 0 blocks until job 1 ran (see
    /// `spinner_that_finds_work_wakes_a_sleeper`).
    job0_waits_for_job1: bool,
    /// Job 0 parks here while it waits.
    job0: Parker,
}

impl Pool {
    fn new(workers: usize) -> Arc<Self> {
        Arc::new(Pool {
            sleep: Sleep::new(workers),
            queued: AtomicUsize::new(0),
            ran: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            latch: AtomicBool::new(false),
            done: Parker::new(),
            started: AtomicUsize::new(0),
            job0_waits_for_job1: false,
            job0: Parker::new(),
        })
    }

    fn with_blocking_job0(workers: usize) -> Arc<Self> {
        let mut pool = Self::new(workers);
        Arc::get_mut(&mut pool).unwrap().job0_waits_for_job1 = true;
        pool
    }

    /// Pushes a job and wakes a sleeper, as `Registry::inject` does.
    fn submit(&self) {
        // Release: the job's contents are published with the push.
        self.queued.fetch_add(1, Ordering::Release);
        self.sleep.notify_one();
    }

    fn has_work(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Pops a job if there is one.
    fn take(&self) -> bool {
        self.queued
            .fetch_update(Ordering::Acquire, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Runs the job just taken.
    fn run_job(&self) {
        // Relaxed: only numbers the jobs; the queue orders their contents.
        let id = self.started.fetch_add(1, Ordering::Relaxed);
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

    /// One step of idleness (src/worker.rs `idle_step`): a spin round, or
    /// once the spin is over, a sleep (from which the worker returns a
    /// spinner).
    fn idle_step(&self, idle: &mut Idle, index: usize, wake: impl Fn() -> bool) {
        if !idle.spinning {
            idle.spinning = true;
            self.sleep.start_spinning();
        }
        #[allow(clippy::absurd_extreme_comparisons)]
        if idle.rounds < SPIN_ROUNDS {
            idle.rounds += 1;
        } else {
            idle.rounds = 0;
            self.sleep.sleep(index, || wake() || self.has_work());
        }
    }

    /// Leaves idleness (src/worker.rs `end_idle`).
    fn end_idle(&self, idle: &mut Idle) {
        idle.rounds = 0;
        if idle.spinning {
            idle.spinning = false;
            self.sleep.stop_spinning(|| self.has_work());
        }
    }

    /// The worker loop (src/worker.rs `main_loop`).
    fn work(&self, index: usize) {
        let mut idle = Idle::default();
        loop {
            let stopping = self.stopping();
            if self.take() {
                self.end_idle(&mut idle);
                self.run_job();
            } else if stopping {
                self.end_idle(&mut idle);
                return;
            } else {
                self.idle_step(&mut idle, index, || self.stopping());
            }
        }
    }

    /// A worker blocked on `latch` (src/worker.rs `wait_until`): it runs
    /// jobs until the latch is set, spinning and sleeping when there are
    /// none. Leaving, it ends its spin: if a notifier counted on it for a job
    /// (woke it, or skipped a wake-up because it spun), `stop_spinning`
    /// hands that job on.
    fn wait_until_latch(&self, index: usize) {
        let done = || self.latch.load(Ordering::Acquire);
        let mut idle = Idle::default();
        while !done() {
            if self.take() {
                self.end_idle(&mut idle);
                self.run_job();
            } else {
                self.idle_step(&mut idle, index, done);
            }
        }
        self.end_idle(&mut idle);
    }

    /// The worker loop, cut short: worker `index` spins and sleeps until it
    /// takes one job, then leaves (with no shutdown to wake it, only a
    /// submission's wake-up gets it out of a sleep).
    fn take_one_job(&self, index: usize) {
        let mut idle = Idle::default();
        loop {
            if self.take() {
                self.end_idle(&mut idle);
                return;
            }
            self.idle_step(&mut idle, index, || false);
        }
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
        assert_eq!(pool.queued.load(Ordering::Relaxed), 0);
    });
}

/// 2(b) Two submissions racing with two workers going to sleep: both jobs
/// run. Each worker runs the worker loop until it has run one job, then
/// exits (no shutdown, so only the submissions' wake-ups can get a worker
/// out of its sleep; a lost one is a deadlock).
#[test]
fn two_submits_two_sleepers() {
    model("two_submits_two_sleepers", || {
        let pool = Pool::new(2);
        let workers: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || {
                    pool.take_one_job(i);
                    pool.ran.fetch_add(1, Ordering::Relaxed);
                })
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
/// Runs at preemption bound 2 (371k executions, ~80 s): set
/// `OFFLOAD_LOOM_FULL=1` to run it at `LOOM_MAX_PREEMPTIONS`.
#[test]
fn two_submits_two_sleepers_then_shutdown() {
    model_bounded("two_submits_two_sleepers_then_shutdown", Some(2), || {
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
    model("waiting_worker_passes_wakeup_on", || {
        let pool = Pool::new(2);
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
    });
}

/// 2(f) Spinners: a notifier that sees a spinner wakes nobody, so a spinner
/// that finds a job must, when it stops spinning, wake a sleeper for any job
/// still queued. Job 0 blocks its worker until job 1 has run, so if W0 spins
/// while both jobs are pushed (both notifiers skip the wake-up), takes job 0
/// and does not hand job 1 on, W1 sleeps for ever: a deadlock.
#[test]
fn spinner_that_finds_work_wakes_a_sleeper() {
    model_bounded("spinner_that_finds_work_wakes_a_sleeper", Some(2), || {
        two_jobs_on_two_workers(Pool::with_blocking_job0(2));
    });
}
