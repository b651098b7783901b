//! `Task::wait` blocks a plain thread; on a worker it keeps the worker
//! running other jobs, so waiting on a job of the same pool never deadlocks,
//! even on a 1-thread pool.

mod common;

use std::sync::mpsc;
use std::thread;

use common::{pool, timed, Gate};
use offload::{Pool, Task};

#[test]
fn wait_from_a_plain_thread() {
    timed(|| {
        let pool = pool(2, "plain");
        let tasks: Vec<_> = (0..1000u64).map(|i| pool.spawn(move || i * 3)).collect();
        let sum: u64 = tasks.into_iter().map(|t| t.wait().unwrap()).sum();
        assert_eq!(sum, 3 * 999 * 1000 / 2);
    });
}

#[test]
fn wait_from_several_plain_threads() {
    timed(|| {
        let pool = pool(2, "threads");
        thread::scope(|s| {
            for t in 0..4u64 {
                let pool = &pool;
                s.spawn(move || {
                    for i in 0..500u64 {
                        assert_eq!(pool.spawn(move || i + t).wait().unwrap(), i + t);
                    }
                });
            }
        });
    });
}

#[test]
fn wait_on_a_finished_task_returns_at_once() {
    timed(|| {
        let pool = pool(1, "finished");
        let task = pool.spawn(|| "done");
        pool.spawn(|| ()).wait().unwrap();
        assert!(task.is_finished());
        assert_eq!(task.wait().unwrap(), "done");
    });
}

#[test]
fn wait_inside_a_job_on_a_one_thread_pool() {
    timed(|| {
        let pool = pool(1, "self-wait");
        let inner = pool.clone();
        let outer = pool.spawn(move || {
            // Queued on this worker's own deque: the waiting worker runs it.
            let tasks: Vec<_> = (0..100u64).map(|i| inner.spawn(move || i)).collect();
            tasks.into_iter().map(|t| t.wait().unwrap()).sum::<u64>()
        });
        assert_eq!(outer.wait().unwrap(), 4950);
    });
}

#[test]
fn wait_inside_a_job_for_a_job_queued_from_outside() {
    timed(|| {
        // The waited job sits in the pool's shared queue, not the worker's
        // deque: the waiting worker must find it there.
        let pool = pool(1, "outside");
        let (task_tx, task_rx) = mpsc::channel::<Task<u32>>();
        let (started_tx, started_rx) = mpsc::channel();
        let waiter = pool.spawn(move || {
            started_tx.send(()).unwrap();
            let task = task_rx.recv().unwrap();
            task.wait().unwrap() + 1
        });
        started_rx.recv().unwrap();
        task_tx.send(pool.spawn(|| 41)).unwrap();
        assert_eq!(waiter.wait().unwrap(), 42);
    });
}

#[test]
fn wait_inside_jobs_on_a_multi_thread_pool() {
    timed(|| {
        let pool = pool(2, "multi-wait");
        let outers: Vec<_> = (0..50u64)
            .map(|i| {
                let inner = pool.clone();
                pool.spawn(move || {
                    let a = inner.spawn(move || i);
                    let b = inner.spawn(move || i * 10);
                    a.wait().unwrap() + b.wait().unwrap()
                })
            })
            .collect();
        for (i, t) in outers.into_iter().enumerate() {
            assert_eq!(t.wait().unwrap(), 11 * i as u64);
        }
    });
}

#[test]
fn wait_on_a_task_of_another_pool_from_a_worker() {
    timed(|| {
        let a = pool(1, "pool-a");
        let b = pool(1, "pool-b");
        let b2 = b.clone();
        let t = a.spawn(move || {
            let name = b2
                .spawn(|| thread::current().name().unwrap().to_owned())
                .wait()
                .unwrap();
            (name, thread::current().name().unwrap().to_owned())
        });
        let (inner, outer) = t.wait().unwrap();
        assert_eq!(inner, "pool-b-0");
        assert_eq!(outer, "pool-a-0");
    });
}

#[test]
fn worker_waiting_on_another_pool_keeps_serving_its_own() {
    timed(|| {
        // A's only worker waits on a job of B that is held by a gate; jobs
        // queued on A meanwhile still run, on that waiting worker.
        let a = pool(1, "serve-a");
        let b = pool(1, "serve-b");
        let gate = Gate::hold(&b);
        let held = b.spawn(|| 1);
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let waiter = a.spawn(move || {
            waiting_tx.send(()).unwrap();
            held.wait().unwrap()
        });
        waiting_rx.recv().unwrap();
        let served: Vec<_> = (0..20).map(|i| a.spawn(move || i)).collect();
        let served: Vec<i32> = served.into_iter().map(|t| t.wait().unwrap()).collect();
        assert_eq!(served, (0..20).collect::<Vec<_>>());
        assert!(!waiter.is_finished());
        gate.release();
        assert_eq!(waiter.wait().unwrap(), 1);
    });
}

#[test]
fn waits_across_two_pools_in_both_directions() {
    timed(|| {
        let a = pool(1, "cross-a");
        let b = pool(1, "cross-b");
        let (a2, b2) = (a.clone(), b.clone());
        let t = a.spawn(move || {
            let a3 = a2.clone();
            b2.spawn(move || a3.spawn(|| 5).wait().unwrap() * 2)
                .wait()
                .unwrap()
        });
        assert_eq!(t.wait().unwrap(), 10);
    });
}

fn nested(pool: Pool, depth: u32) -> u32 {
    if depth == 0 {
        return 0;
    }
    let inner = pool.clone();
    pool.spawn(move || nested(inner, depth - 1) + 1)
        .wait()
        .unwrap()
}

#[test]
fn nested_waits_on_a_one_thread_pool() {
    timed(|| {
        let pool = pool(1, "nested");
        assert_eq!(nested(pool, 100), 100);
    });
}

#[test]
fn nested_waits_on_a_two_thread_pool() {
    timed(|| {
        let pool = pool(2, "nested2");
        let results: Vec<_> = (0..8)
            .map(|_| {
                let p = pool.clone();
                thread::spawn(move || nested(p, 50))
            })
            .collect();
        for r in results {
            assert_eq!(r.join().unwrap(), 50);
        }
    });
}

#[test]
fn wait_on_a_cancelled_task() {
    timed(|| {
        let pool = pool(1, "cancelled");
        pool.shutdown_now();
        assert!(pool.spawn(|| 1).wait().unwrap_err().is_cancelled());
    });
}

/// A `thread_local!` destructor that waits on a Task: by then offload's own
/// per-thread parker may be gone (it is here: it was made after the guard,
/// so it is destroyed first), and the wait falls back to a fresh one. The
/// result still comes back, and nothing hangs or aborts.
#[test]
fn wait_from_a_thread_local_destructor() {
    struct WaitsOnDrop {
        pool: Pool,
        result: mpsc::Sender<u64>,
    }

    impl Drop for WaitsOnDrop {
        fn drop(&mut self) {
            let value = self.pool.spawn(|| 6 * 7).wait().unwrap();
            let _ = self.result.send(value);
        }
    }

    thread_local! {
        static GUARD: std::cell::RefCell<Option<WaitsOnDrop>> =
            const { std::cell::RefCell::new(None) };
    }

    timed(|| {
        let pool = pool(2, "tls");
        let (result, results) = mpsc::channel();
        let pool_for_thread = pool.clone();
        thread::spawn(move || {
            // The guard's slot is registered first, then offload's parker
            // (by the first wait), so the parker's destructor runs first.
            GUARD.with(|guard| {
                *guard.borrow_mut() = Some(WaitsOnDrop {
                    pool: pool_for_thread.clone(),
                    result,
                })
            });
            assert_eq!(pool_for_thread.spawn(|| 1).wait().unwrap(), 1);
        })
        .join()
        .unwrap();
        assert_eq!(results.recv().unwrap(), 42);
        drop(pool);
    });
}
