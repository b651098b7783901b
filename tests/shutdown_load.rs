//! Shutdown under load: `shutdown`, `shutdown_now` and the drop of the last
//! handle with a million jobs queued on the injector, more on the workers'
//! own deques, and every worker busy with a running job.
//!
//! `tests/shutdown.rs` checks each path's semantics on a few hundred jobs
//! and one thread; these check that they hold at scale and on every
//! thread: every Task resolves (to the right outcome) within a bound, every
//! worker thread ends, and `on_thread_stop` runs exactly once per thread.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{is_terminating, spin_until, timed};
use offload::{Pool, Task};

/// Jobs queued from outside (on the injector).
const QUEUED: usize = 1_000_000;
/// Jobs each running job queues on its own worker's deque.
const LOCAL: usize = 1_000;
const THREADS: usize = 2;
/// How long the pool may take to resolve everything once unblocked: far
/// more than it needs (about a second in debug), far less than a hang.
const BOUND: Duration = Duration::from_secs(40);

/// Counts a closure's drop (it captures one).
struct DropGuard(&'static AtomicUsize);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> &'static AtomicUsize {
    Box::leak(Box::default())
}

/// A pool with every worker held by a running job, `LOCAL` jobs on each
/// worker's deque and `QUEUED` on the injector.
struct Loaded {
    /// `None` once the test dropped it.
    pool: Option<Pool>,
    release: Vec<mpsc::Sender<()>>,
    running: Vec<Task<Vec<Task<()>>>>,
    queued: Vec<Task<()>>,
    runs: &'static AtomicUsize,
    closure_drops: &'static AtomicUsize,
    stops: Arc<Mutex<HashMap<usize, usize>>>,
    thread_ends: Receiver<usize>,
}

impl Loaded {
    fn new() -> Loaded {
        let runs = counter();
        let closure_drops = counter();
        let stops: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let (end_tx, thread_ends) = mpsc::channel();
        let end_tx = Mutex::new(end_tx);
        let s = Arc::clone(&stops);
        let pool = Pool::builder()
            .threads(THREADS)
            .detect_blocking(false) // gated workers must hold the queue
            .thread_name(|i| format!("loaded-{i}"))
            .on_thread_start(move |i| common::report_thread_end(i, end_tx.lock().unwrap().clone()))
            .on_thread_stop(move |i| *s.lock().unwrap().entry(i).or_default() += 1)
            .build()
            .unwrap();
        let job = move || {
            let guard = DropGuard(closure_drops);
            move || {
                let _guard = guard;
                runs.fetch_add(1, Ordering::SeqCst);
            }
        };

        // One running job per worker: they meet at the barrier (so each
        // holds its own worker), queue LOCAL jobs on that worker's deque,
        // and block until released.
        let all_running = Arc::new(Barrier::new(THREADS + 1));
        let mut release = Vec::new();
        let running = (0..THREADS)
            .map(|_| {
                let (release_tx, release_rx) = mpsc::channel::<()>();
                release.push(release_tx);
                let (p, all_running) = (pool.clone(), Arc::clone(&all_running));
                pool.spawn(move || {
                    all_running.wait();
                    let local: Vec<Task<()>> = (0..LOCAL).map(|_| p.spawn(job())).collect();
                    all_running.wait();
                    let _ = release_rx.recv();
                    local
                })
            })
            .collect();
        all_running.wait();
        all_running.wait();
        let queued = (0..QUEUED).map(|_| pool.spawn(job())).collect();
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        Loaded {
            pool: Some(pool),
            release,
            running,
            queued,
            runs,
            closure_drops,
            stops,
            thread_ends,
        }
    }

    /// Lets the running jobs return.
    fn release(&mut self) {
        self.release.clear();
    }

    /// Waits (within the bound) for every worker thread to end, checks the
    /// stop hooks, and returns the queued Tasks (`LOCAL` per worker first),
    /// every one already finished.
    fn finish(self, released_at: Instant) -> Vec<Task<()>> {
        let mut ended: Vec<usize> = (0..THREADS)
            .map(|_| {
                let left = BOUND.saturating_sub(released_at.elapsed());
                self.thread_ends
                    .recv_timeout(left)
                    .expect("every worker thread ends within the bound")
            })
            .collect();
        ended.sort_unstable();
        assert_eq!(ended, (0..THREADS).collect::<Vec<_>>());
        let stops = self.stops.lock().unwrap().clone();
        assert_eq!(stops, (0..THREADS).map(|i| (i, 1)).collect());
        assert_eq!(
            self.closure_drops.load(Ordering::SeqCst),
            QUEUED + THREADS * LOCAL
        );
        let mut all = Vec::with_capacity(QUEUED + THREADS * LOCAL);
        for task in self.running {
            assert!(task.is_finished());
            // The running jobs were not cancellable: they completed.
            all.extend(task.wait().expect("a running job completes"));
        }
        all.extend(self.queued);
        assert!(all.iter().all(Task::is_finished), "an unresolved Task");
        all
    }
}

/// Runs `shutdown` (or `shutdown_now`) on another thread while the workers
/// are held, releases them once the pool is terminating, and returns when
/// the call returned, and when the workers were released.
fn shut_down_while_held(loaded: &mut Loaded, now: bool) -> Instant {
    let (done_tx, done_rx) = mpsc::channel();
    let pool = loaded.pool.clone().expect("the pool");
    let held = pool.clone();
    thread::spawn(move || {
        if now {
            pool.shutdown_now();
        } else {
            pool.shutdown();
        }
        let _ = done_tx.send(());
    });
    spin_until(|| is_terminating(&held));
    // Every worker is still held: the call cannot have returned.
    assert!(done_rx.try_recv().is_err());
    loaded.release();
    let released_at = Instant::now();
    done_rx
        .recv_timeout(BOUND)
        .expect("the shutdown returns within the bound");
    released_at
}

#[test]
fn shutdown_with_a_million_queued_jobs_runs_every_one() {
    timed(|| {
        let mut loaded = Loaded::new();
        let released_at = shut_down_while_held(&mut loaded, false);
        let runs = loaded.runs;
        assert_eq!(runs.load(Ordering::SeqCst), QUEUED + THREADS * LOCAL);
        for task in loaded.finish(released_at) {
            task.wait().expect("a queued job runs under shutdown");
        }
    });
}

#[test]
fn shutdown_now_with_a_million_queued_jobs_cancels_every_one() {
    timed(|| {
        let mut loaded = Loaded::new();
        let released_at = shut_down_while_held(&mut loaded, true);
        // Queued jobs never ran: neither those on the injector nor those on
        // the workers' own deques.
        let runs = loaded.runs;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        for task in loaded.finish(released_at) {
            let err = task.wait().unwrap_err();
            assert!(err.is_cancelled(), "{err}");
        }
    });
}

#[test]
fn dropping_the_last_handle_with_a_million_queued_jobs_returns_at_once_and_runs_them() {
    timed(|| {
        let mut loaded = Loaded::new();
        // Every worker is held: this returns only because dropping the last
        // handle does not wait.
        drop(loaded.pool.take());
        assert!(loaded.stops.lock().unwrap().is_empty());
        loaded.release();
        let released_at = Instant::now();
        let runs = loaded.runs;
        let tasks = loaded.finish(released_at);
        assert_eq!(runs.load(Ordering::SeqCst), QUEUED + THREADS * LOCAL);
        for task in tasks {
            task.wait()
                .expect("a queued job runs after the last handle went");
        }
    });
}
