//! Hostile jobs and hooks: what the pool does when user code misbehaves.
//!
//! - panic payloads (and captured values) whose `Drop` panics, on the paths
//!   `tests/panics.rs` does not take: the losing half of a `join`, the
//!   losing jobs of a `scope`, hooks, and every way a closure is cancelled;
//! - panics in `on_thread_start` / `on_thread_stop`: `run_hook` catches
//!   the panic (after the panic hook has reported it), drops the payload
//!   quietly, and the worker carries on — it serves, it still runs its stop
//!   hook, and it exits normally;
//! - jobs that `wait` on Tasks of their own pool, recursively, even while
//!   `shutdown_now` cancels those Tasks: a waiting worker runs other jobs,
//!   so this never deadlocks;
//! - a job that does not return while the pool shuts down: `shutdown_now`
//!   waits for it, and the jobs queued behind it are cancelled only by a
//!   worker that is free to do so.

mod common;

use std::any::Any;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use common::{
    all_workers, is_terminating, panic_message, pool, report_thread_end, spin_until, timed,
    Counter, Gate, EXPECTED,
};
use offload::Pool;

/// A panic payload (or a captured value) whose `Drop` panics; counts its
/// drops. Its tag tells where it came from.
struct Hostile {
    tag: &'static str,
    drops: Counter,
}

impl Hostile {
    fn new(tag: &'static str, drops: &Counter) -> Self {
        Hostile {
            tag,
            drops: drops.clone(),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.drops.incr();
        panic!("{EXPECTED}: dropping a Hostile ({})", self.tag);
    }
}

/// Drops a `Hostile` (or a payload holding one) here, where its panic is
/// expected, and returns whether the drop panicked.
fn drop_expecting_panic<T>(value: T) -> bool {
    panic::catch_unwind(AssertUnwindSafe(move || drop(value))).is_err()
}

fn tag_of(payload: &(dyn Any + Send)) -> Option<&'static str> {
    payload.downcast_ref::<Hostile>().map(|h| h.tag)
}

/// Hostile payloads the panic hook was called with: (tag, thread name).
static REPORTED: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());

/// A panic hook that records the `Hostile` payloads it sees and stays quiet
/// for them and for the expected panics; others print as usual.
fn record_hostile_panics() {
    common::quiet_panics_where(|payload| match tag_of(payload) {
        Some(tag) => {
            let name = thread::current().name().unwrap_or("").to_owned();
            REPORTED.lock().unwrap().push((tag, name));
            true
        }
        None => panic_message(payload).contains(EXPECTED),
    });
}

/// The threads the panic hook saw a `Hostile` tagged `tag` panic on.
fn reported(tag: &str) -> Vec<String> {
    let mut threads: Vec<String> = REPORTED
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| *t == tag)
        .map(|(_, name)| name.clone())
        .collect();
    threads.sort_unstable();
    threads
}

/// Calls `shutdown_now` on another thread and returns once the pool is
/// terminating; the receiver hears when the call returned.
fn shutdown_now_in_background(pool: &Pool) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel();
    let p = pool.clone();
    thread::spawn(move || {
        p.shutdown_now();
        done_tx.send(()).unwrap();
    });
    spin_until(|| is_terminating(pool));
    done_rx
}

// ---- payloads whose drop panics ------------------------------------------

/// Runs `f` under `depth` nested joins, so that the innermost `join` is a
/// private join (depth < 3) or an inline one (deeper).
fn nested<R: Send>(depth: u32, f: impl FnOnce() -> R + Send) -> R {
    if depth == 0 {
        f()
    } else {
        offload::join(|| nested(depth - 1, f), || ()).0
    }
}

#[test]
fn losing_join_half_whose_payload_drop_panics_is_dropped_quietly() {
    record_hostile_panics();
    timed(|| {
        let pool = pool(2, "hostile-join");
        for depth in 0..6 {
            let (won, lost) = (Counter::new(), Counter::new());
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.install(|| {
                    nested(depth, || {
                        offload::join(
                            || -> u8 { panic::panic_any(Hostile::new("a", &won)) },
                            || -> u8 { panic::panic_any(Hostile::new("b", &lost)) },
                        )
                    })
                })
            }));
            // a's panic reaches the caller intact; b's payload was dropped
            // once, on the pool, and its drop's panic went nowhere.
            let payload = result.unwrap_err();
            assert_eq!(tag_of(&*payload), Some("a"), "depth {depth}");
            assert_eq!(lost.get(), 1, "depth {depth}");
            assert_eq!(won.get(), 0);
            assert!(drop_expecting_panic(payload));
            assert_eq!(won.get(), 1);
        }
        all_workers(&pool);
    });
}

#[test]
fn losing_scope_panics_whose_payload_drop_panics_are_dropped_quietly() {
    record_hostile_panics();
    timed(|| {
        let pool = pool(2, "hostile-scope");
        let jobs = 4;

        for body_panics in [true, false] {
            let lost = Counter::new();
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.scope(|s| {
                    for _ in 0..jobs {
                        let lost = &lost;
                        s.spawn(move |_| panic::panic_any(Hostile::new("scope job", lost)));
                    }
                    if body_panics {
                        panic!("{EXPECTED}: the body wins");
                    }
                })
            }));
            let payload = result.unwrap_err();
            if body_panics {
                // The body's panic wins; every job's payload was dropped
                // quietly.
                assert_eq!(panic_message(&*payload), "expected panic: the body wins");
                assert_eq!(lost.get(), jobs);
            } else {
                // One job's payload is re-raised, the others were dropped
                // quietly.
                assert_eq!(tag_of(&*payload), Some("scope job"));
                assert_eq!(lost.get(), jobs - 1);
                assert!(drop_expecting_panic(payload));
                assert_eq!(lost.get(), jobs);
            }
        }
        all_workers(&pool);
    });
}

#[test]
fn closure_whose_drop_panics_is_contained_on_every_cancel_path() {
    record_hostile_panics();
    timed(|| {
        let stops = Counter::new();
        let s = stops.clone();
        let pool = Pool::builder()
            .threads(1)
            .detect_blocking(false) // gated workers must hold the queue
            .on_thread_stop(move |_| s.incr())
            .build()
            .unwrap();
        let drops = Counter::new();
        let job = |tag| {
            let captured = Hostile::new(tag, &drops);
            move || {
                let _keep = &captured;
                7u8
            }
        };

        // Runs: the captured value is dropped when the closure returns,
        // inside the job, so the Task resolves to that panic.
        let err = pool.spawn(job("ran")).wait().unwrap_err();
        assert!(err.is_panic());
        assert!(panic_message(&*err.into_panic()).contains("dropping a Hostile (ran)"));
        assert_eq!(drops.get(), 1);

        // Task dropped while queued: the closure is dropped on this thread,
        // and its panic does not unwind out of `drop`.
        let gate = Gate::hold(&pool);
        drop(pool.spawn(job("dropped")));
        assert_eq!(drops.get(), 2);

        // Cancelled by shutdown_now on the worker.
        let queued: Vec<_> = (0..10).map(|_| pool.spawn(job("cancelled"))).collect();
        let shutdown = shutdown_now_in_background(&pool);
        gate.release();
        shutdown.recv().unwrap();
        for task in queued {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        assert_eq!(drops.get(), 12);

        // Refused after shutdown: cancelled (and dropped) on this thread.
        let refused = pool.spawn(job("refused"));
        assert_eq!(drops.get(), 13);
        assert!(refused.wait().unwrap_err().is_cancelled());

        // The worker survived all of it and stopped normally.
        assert_eq!(stops.get(), 1);
    });
}

// ---- hooks that panic ------------------------------------------------------

#[test]
fn start_hook_panicking_on_every_worker_leaves_each_serving_and_stopping() {
    record_hostile_panics();
    timed(|| {
        let threads = 3;
        let payload_drops = Counter::new();
        let stops: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let (end_tx, end_rx) = mpsc::channel();
        let end_tx = Mutex::new(end_tx);
        let (d, s) = (payload_drops.clone(), Arc::clone(&stops));
        let pool = Pool::builder()
            .threads(threads)
            .detect_blocking(false) // gated workers must hold the queue
            .thread_name(|i| format!("hostile-start-{i}"))
            .on_thread_start(move |i| {
                report_thread_end(i, end_tx.lock().unwrap().clone());
                panic::panic_any(Hostile::new("on_thread_start", &d));
            })
            .on_thread_stop(move |i| *s.lock().unwrap().entry(i).or_default() += 1)
            .build()
            .unwrap();
        // Every worker serves (they meet at a barrier), so every hook has
        // panicked and its payload has been dropped, once, quietly.
        let (ids, _) = all_workers(&pool);
        assert_eq!(ids.len(), threads);
        assert_eq!(payload_drops.get(), threads);
        // The panic hook reported each hook's panic, on its worker.
        let names: Vec<String> = (0..threads).map(|i| format!("hostile-start-{i}")).collect();
        assert_eq!(reported("on_thread_start"), names);

        pool.shutdown();
        let stops = stops.lock().unwrap().clone();
        assert_eq!(stops, (0..threads).map(|i| (i, 1)).collect());
        let mut ended: Vec<usize> = (0..threads)
            .map(|_| end_rx.recv().expect("every worker thread ends"))
            .collect();
        ended.sort_unstable();
        assert_eq!(ended, (0..threads).collect::<Vec<_>>());
    });
}

#[test]
fn stop_hook_panicking_on_every_worker_does_not_stop_the_pool_from_exiting() {
    record_hostile_panics();
    timed(|| {
        let threads = 2;
        let payload_drops = Counter::new();
        let (end_tx, end_rx) = mpsc::channel();
        let end_tx = Mutex::new(end_tx);
        let d = payload_drops.clone();
        let pool = Pool::builder()
            .threads(threads)
            .detect_blocking(false) // gated workers must hold the queue
            .thread_name(|i| format!("hostile-stop-{i}"))
            .on_thread_start(move |i| report_thread_end(i, end_tx.lock().unwrap().clone()))
            .on_thread_stop(move |_| panic::panic_any(Hostile::new("on_thread_stop", &d)))
            .build()
            .unwrap();
        let gate = Gate::hold(&pool);
        let tasks: Vec<_> = (0..1000u32).map(|i| pool.spawn(move || i)).collect();
        // The last handle goes while a worker is held: queued jobs still
        // run, then each worker's stop hook panics, and each thread ends
        // anyway (the last one after its final drain).
        drop(pool);
        gate.release();
        let mut ended: Vec<usize> = (0..threads)
            .map(|_| end_rx.recv().expect("every worker thread ends"))
            .collect();
        ended.sort_unstable();
        assert_eq!(ended, (0..threads).collect::<Vec<_>>());
        assert_eq!(payload_drops.get(), threads);
        for (i, task) in (0..).zip(tasks) {
            assert!(task.is_finished());
            assert_eq!(task.wait().unwrap(), i);
        }
        let names: Vec<String> = (0..threads).map(|i| format!("hostile-stop-{i}")).collect();
        assert_eq!(reported("on_thread_stop"), names);
    });
}

// ---- waiting on the own pool -------------------------------------------------

/// Holds the first leaf each worker runs until the test lets them go.
struct Pause {
    paused: AtomicUsize,
    threads: usize,
    all_paused: Barrier,
    go: Barrier,
}

/// A binary tree of jobs on one pool: each node spawns its two children on
/// its own pool and waits on both (one after the other, or in the two
/// halves of a `join`).
#[derive(Clone)]
struct Tree {
    pool: Pool,
    ran: Arc<AtomicUsize>,
    pause: Option<Arc<Pause>>,
}

impl Tree {
    /// Runs the node; returns how many nodes of its subtree ran, and how
    /// many children in it were cancelled.
    fn node(self, depth: u32) -> (usize, usize) {
        self.ran.fetch_add(1, Ordering::SeqCst);
        if depth == 0 {
            if let Some(pause) = &self.pause {
                if pause.paused.fetch_add(1, Ordering::SeqCst) < pause.threads {
                    pause.all_paused.wait();
                    pause.go.wait();
                }
            }
            common::spin_work(200);
            return (1, 0);
        }
        let spawn = || {
            let tree = self.clone();
            self.pool.spawn(move || tree.node(depth - 1))
        };
        let (a, b) = (spawn(), spawn());
        let count = |result: Result<(usize, usize), offload::JoinError>| match result {
            Ok(counts) => counts,
            Err(err) => {
                assert!(err.is_cancelled(), "{err}");
                (0, 1)
            }
        };
        let (a, b) = if depth % 2 == 0 {
            (count(a.wait()), count(b.wait()))
        } else {
            offload::join(|| count(a.wait()), || count(b.wait()))
        };
        (1 + a.0 + b.0, a.1 + b.1)
    }
}

#[test]
fn recursive_waits_on_the_own_pool_do_not_deadlock() {
    timed(|| {
        for threads in [1, 2] {
            let tree = Tree {
                pool: pool(threads, "hostile-wait"),
                ran: Arc::default(),
                pause: None,
            };
            let depth = 9;
            let nodes = (1 << (depth + 1)) - 1;
            let root = tree.clone();
            let waited = tree.pool.spawn(move || root.node(depth));
            assert_eq!(waited.wait().unwrap(), (nodes, 0), "{threads} threads");
            // And awaited from an executor rather than waited.
            let root = tree.clone();
            let awaited = tree.pool.spawn(move || root.node(depth));
            assert_eq!(futures::executor::block_on(awaited).unwrap(), (nodes, 0));
            assert_eq!(tree.ran.load(Ordering::SeqCst), 2 * nodes);
        }
    });
}

#[test]
fn recursive_waits_resolve_when_shutdown_now_cancels_what_they_wait_on() {
    timed(|| {
        for threads in [1, 2, 4] {
            let pause = Arc::new(Pause {
                paused: AtomicUsize::new(0),
                threads,
                all_paused: Barrier::new(threads + 1),
                go: Barrier::new(threads + 1),
            });
            let tree = Tree {
                pool: pool(threads, "hostile-wait-now"),
                ran: Arc::default(),
                pause: Some(Arc::clone(&pause)),
            };
            let root = tree.clone();
            let task = tree.pool.spawn(move || root.node(12));
            // Every worker is inside a leaf, below nodes that wait on their
            // children, with part of the tree still queued.
            pause.all_paused.wait();
            let shutdown = shutdown_now_in_background(&tree.pool);
            pause.go.wait();
            shutdown.recv().unwrap();
            // Every wait returned (Ok, or cancelled), so the root, which was
            // running, completed; every node that ran accounted for both
            // of its children, which ran or were cancelled.
            let (nodes, cancelled) = task.wait().unwrap();
            assert_eq!(nodes, tree.ran.load(Ordering::SeqCst));
            assert_eq!((nodes - 1 + cancelled) % 2, 0, "a child unaccounted for");
            assert!(cancelled > 0, "{threads} threads: nothing was cancelled");
        }
    });
}

// ---- a job that does not return while the pool shuts down --------------------

/// `shutdown_now` cancels the queue itself: while the only worker is stuck
/// in a job, the Tasks queued behind it resolve as cancelled, and only the
/// call itself waits for the stuck job to return.
#[test]
fn shutdown_now_cancels_the_queue_while_the_only_worker_is_stuck() {
    timed(|| {
        let pool = pool(1, "stuck-one");
        let gate = Gate::hold(&pool);
        let queued: Vec<_> = (0..100).map(|i| pool.spawn(move || i)).collect();
        let done_rx = shutdown_now_in_background(&pool);
        for task in queued {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        // New submissions are refused at once...
        assert!(pool.spawn(|| 0).is_finished());
        // ...and the call waits for the stuck job.
        assert!(done_rx.try_recv().is_err());
        gate.release();
        done_rx.recv().unwrap();
    });
}

/// With a free worker, `shutdown_now` cancels the whole queue (and that
/// worker exits) while a stuck job keeps the call itself waiting.
#[test]
fn shutdown_now_cancels_the_queue_on_a_free_worker_while_a_job_is_stuck() {
    timed(|| {
        let (stop_tx, stop_rx) = mpsc::channel();
        let stop_tx = Mutex::new(stop_tx);
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false) // gated workers must hold the queue
            .on_thread_stop(move |i| stop_tx.lock().unwrap().send(i).unwrap())
            .build()
            .unwrap();
        // Hold both workers so that the jobs below stay queued.
        let stuck = Gate::hold(&pool);
        let other = Gate::hold(&pool);
        let queued: Vec<_> = (0..1000).map(|i| pool.spawn(move || i)).collect();
        let done_rx = shutdown_now_in_background(&pool);
        other.release();
        // The free worker cancels every queued job, then exits...
        for task in queued {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        stop_rx.recv().unwrap();
        // ...while the stuck job keeps shutdown_now waiting.
        assert!(done_rx.try_recv().is_err());
        let stuck_task = stuck.open();
        done_rx.recv().unwrap();
        stop_rx.recv().unwrap();
        // The stuck job was running: it completed.
        assert!(stuck_task.wait().is_ok());
    });
}
