//! `shutdown` runs every queued job; `shutdown_now` cancels the queued ones
//! and waits for the running ones; a spawn after shutdown is cancelled at
//! once; dropping the last handle never blocks, and queued work still runs.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::{is_terminating, pool, spin_until, timed, Counter, DropCounter, Gate};
use offload::Pool;

const N: usize = 500;

#[test]
fn shutdown_runs_every_queued_job() {
    timed(|| {
        let pool = pool(1, "graceful");
        let gate = Gate::hold(&pool);
        let runs = Counter::new();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let runs = runs.clone();
                pool.spawn(move || {
                    runs.incr();
                    i
                })
            })
            .collect();
        // Shut down while every job is still queued behind the gate.
        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown());
        spin_until(|| is_terminating(&pool));
        assert_eq!(runs.get(), 0);
        gate.release();
        shutdown.join().unwrap();
        assert_eq!(runs.get(), N);
        for (i, task) in tasks.into_iter().enumerate() {
            assert!(task.is_finished());
            assert_eq!(task.wait().unwrap(), i);
        }
    });
}

#[test]
fn shutdown_on_a_multi_thread_pool_with_jobs_spawning_jobs() {
    timed(|| {
        // Jobs that spawn more jobs while the pool shuts down: each of those
        // Tasks resolves, either Ok or cancelled (spawn after termination).
        let pool = pool(2, "graceful2");
        let runs = Counter::new();
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let inner = pool.clone();
                let runs = runs.clone();
                pool.spawn(move || {
                    runs.incr();
                    let runs = runs.clone();
                    inner.spawn(move || runs.incr())
                })
            })
            .collect();
        pool.shutdown();
        assert!(runs.get() >= N);
        let mut children_ok = 0;
        for task in tasks {
            let child = task.wait().unwrap();
            assert!(child.is_finished());
            match child.wait() {
                Ok(()) => children_ok += 1,
                Err(e) => assert!(e.is_cancelled()),
            }
        }
        assert_eq!(runs.get(), N + children_ok);
    });
}

#[test]
fn shutdown_now_cancels_queued_and_waits_for_running() {
    timed(|| {
        let pool = pool(1, "now");
        let closures = DropCounter::new();
        let runs = Counter::new();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let running = pool.spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            "finished"
        });
        started_rx.recv().unwrap();
        let queued: Vec<_> = (0..N)
            .map(|_| {
                let runs = runs.clone();
                let captured = closures.track();
                pool.spawn(move || {
                    runs.incr();
                    drop(captured);
                })
            })
            .collect();
        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown_now());
        spin_until(|| is_terminating(&pool));
        go_tx.send(()).unwrap();
        shutdown.join().unwrap();
        // The running job completed normally.
        assert!(running.is_finished());
        assert_eq!(running.wait().unwrap(), "finished");
        // Every queued one was cancelled, never run, its closure dropped once.
        assert_eq!(runs.get(), 0);
        assert_eq!(closures.drops(), N);
        for task in queued {
            assert!(task.is_finished());
            assert!(task.wait().unwrap_err().is_cancelled());
        }
    });
}

#[test]
fn shutdown_now_blocks_until_the_running_job_returns() {
    timed(|| {
        let pool = pool(1, "now-blocks");
        let gate = Gate::hold(&pool);
        let (done_tx, done_rx) = mpsc::channel();
        let p = pool.clone();
        let shutdown = thread::spawn(move || {
            p.shutdown_now();
            done_tx.send(()).unwrap();
        });
        spin_until(|| is_terminating(&pool));
        // The gate job still runs, so shutdown_now cannot have returned.
        assert!(done_rx.try_recv().is_err());
        gate.release();
        done_rx.recv().unwrap();
        shutdown.join().unwrap();
    });
}

#[test]
fn spawn_after_shutdown_is_cancelled_at_once() {
    timed(|| {
        for now in [false, true] {
            let pool = pool(2, "after");
            if now {
                pool.shutdown_now();
            } else {
                pool.shutdown();
            }
            let runs = Counter::new();
            let closures = DropCounter::new();
            let r = runs.clone();
            let captured = closures.track();
            let task = pool.spawn(move || {
                r.incr();
                drop(captured);
            });
            assert!(task.is_finished());
            assert_eq!(closures.drops(), 1);
            assert!(pollster::block_on(task).unwrap_err().is_cancelled());
            assert_eq!(runs.get(), 0);
        }
    });
}

#[test]
fn fork_join_after_shutdown_panics() {
    common::silence_expected_panics();
    timed(|| {
        let pool = pool(1, "after-join");
        pool.shutdown();
        let join = panic::catch_unwind(AssertUnwindSafe(|| pool.join(|| 1, || 2)));
        let scope = panic::catch_unwind(AssertUnwindSafe(|| pool.scope(|_| ())));
        let install = panic::catch_unwind(AssertUnwindSafe(|| pool.install(|| ())));
        for result in [join.map(drop), scope, install] {
            let payload = result.unwrap_err();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            assert!(message.contains("shut down"), "{message}");
        }
    });
}

#[test]
fn dropping_the_last_handle_does_not_block_and_queued_work_runs() {
    timed(|| {
        let stops = Counter::new();
        let s = stops.clone();
        let (stop_tx, stop_rx) = mpsc::channel();
        let stop_tx = Mutex::new(stop_tx);
        let pool = Pool::builder()
            .threads(1)
            .detect_blocking(false) // gated workers must hold the queue
            .on_thread_stop(move |_| {
                s.incr();
                stop_tx.lock().unwrap().send(()).unwrap();
            })
            .build()
            .unwrap();
        let gate = Gate::hold(&pool);
        let (tx, rx) = mpsc::channel();
        let outputs = DropCounter::new();
        let mut held = Vec::new();
        for i in 0..N {
            let tx = tx.clone();
            let outputs = outputs.clone();
            let task = pool.spawn(move || {
                tx.send(i).unwrap();
                outputs.track()
            });
            if i % 2 == 0 {
                task.detach();
            } else {
                held.push(task);
            }
        }
        drop(tx);
        // The only worker is held by the gate: this returns only because
        // dropping the last handle does not wait for anything.
        drop(pool);
        assert_eq!(stops.get(), 0);
        gate.release();
        let mut seen: Vec<usize> = rx.iter().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..N).collect::<Vec<_>>());
        for task in held {
            drop(task.wait().unwrap());
        }
        // The thread then exits.
        stop_rx.recv().unwrap();
        assert_eq!(stops.get(), 1);
        // Detached outputs were dropped on the worker before it stopped.
        assert_eq!(outputs.created(), N);
        assert_eq!(outputs.drops(), N);
    });
}

#[test]
fn clones_keep_the_pool_alive() {
    timed(|| {
        let pool = pool(1, "clones");
        let clone = pool.clone();
        drop(pool);
        assert_eq!(clone.spawn(|| 3).wait().unwrap(), 3);
        assert!(!is_terminating(&clone));
    });
}

#[test]
fn on_thread_stop_runs_once_per_thread_on_shutdown() {
    timed(|| {
        let stopped: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let s = Arc::clone(&stopped);
        let pool = Pool::builder()
            .threads(3)
            .detect_blocking(false) // gated workers must hold the queue
            .on_thread_stop(move |i| *s.lock().unwrap().entry(i).or_default() += 1)
            .build()
            .unwrap();
        for t in (0..100).map(|i| pool.spawn(move || i)).collect::<Vec<_>>() {
            t.wait().unwrap();
        }
        assert!(stopped.lock().unwrap().is_empty());
        pool.shutdown();
        let stopped = stopped.lock().unwrap().clone();
        assert_eq!(stopped, HashMap::from([(0, 1), (1, 1), (2, 1)]));
        pool.shutdown();
    });
}

#[test]
fn shutdown_twice_and_both_kinds() {
    timed(|| {
        let pool = pool(2, "twice");
        let t = pool.spawn(|| 1);
        pool.shutdown();
        pool.shutdown();
        pool.shutdown_now();
        assert_eq!(t.wait().unwrap(), 1);
        assert!(is_terminating(&pool));
    });
}

#[test]
fn concurrent_shutdowns_from_several_threads() {
    timed(|| {
        for round in 0..20 {
            let pool = pool(2, "concurrent");
            let tasks: Vec<_> = (0..100).map(|i| pool.spawn(move || i)).collect();
            let barrier = Barrier::new(3);
            thread::scope(|s| {
                for k in 0..3 {
                    let pool = pool.clone();
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        if (k + round) % 2 == 0 {
                            pool.shutdown();
                        } else {
                            pool.shutdown_now();
                        }
                    });
                }
            });
            // Every Task resolved: Ok, or cancelled by a shutdown_now.
            for (i, task) in tasks.into_iter().enumerate() {
                assert!(task.is_finished());
                match task.wait() {
                    Ok(v) => assert_eq!(v, i),
                    Err(e) => assert!(e.is_cancelled()),
                }
            }
        }
    });
}

#[test]
fn shutdown_from_a_worker_only_starts_it() {
    timed(|| {
        let pool = pool(2, "self-shutdown");
        let p = pool.clone();
        let t = pool.spawn(move || {
            p.shutdown();
            "returned"
        });
        assert_eq!(t.wait().unwrap(), "returned");
        pool.shutdown();
        assert!(pool.spawn(|| ()).wait().unwrap_err().is_cancelled());

        let pool = pool_now();
        let p = pool.clone();
        let t = pool.spawn(move || {
            p.shutdown_now();
            "returned"
        });
        assert_eq!(t.wait().unwrap(), "returned");
        pool.shutdown_now();
    });
}

fn pool_now() -> Pool {
    pool(1, "self-shutdown-now")
}

#[test]
fn spawns_racing_with_shutdown_all_resolve() {
    timed(|| {
        for round in 0..10 {
            let pool = pool(2, "race");
            let runs = Counter::new();
            let closures = DropCounter::new();
            let barrier = Barrier::new(3);
            let tasks = thread::scope(|s| {
                let spawners: Vec<_> = (0..2)
                    .map(|_| {
                        let pool = &pool;
                        let barrier = &barrier;
                        let runs = &runs;
                        let closures = &closures;
                        s.spawn(move || {
                            barrier.wait();
                            (0..2000)
                                .map(|_| {
                                    let runs = runs.clone();
                                    let captured = closures.track();
                                    pool.spawn(move || {
                                        runs.incr();
                                        drop(captured);
                                    })
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                barrier.wait();
                if round % 2 == 0 {
                    pool.shutdown();
                } else {
                    pool.shutdown_now();
                }
                spawners
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect::<Vec<_>>()
            });
            let mut ok = 0;
            for task in tasks {
                match task.wait() {
                    Ok(()) => ok += 1,
                    Err(e) => assert!(e.is_cancelled()),
                }
            }
            assert_eq!(ok, runs.get());
            assert_eq!(closures.drops(), 4000);
        }
    });
}

#[test]
fn fork_join_in_progress_completes_under_shutdown_now() {
    // Parts of a join/scope/install already running are not cancellable.
    timed(|| {
        let pool = pool(1, "in-progress");
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let p = pool.clone();
        let installer = thread::spawn(move || {
            p.install(move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                let (a, b) = offload::join(|| 1, || 2);
                let mut parts = [0u8; 4];
                offload::scope(|s| {
                    for part in parts.iter_mut() {
                        s.spawn(move |_| *part = 1);
                    }
                });
                (a, b, parts)
            })
        });
        started_rx.recv().unwrap();
        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown_now());
        spin_until(|| is_terminating(&pool));
        go_tx.send(()).unwrap();
        assert_eq!(installer.join().unwrap(), (1, 2, [1; 4]));
        shutdown.join().unwrap();
    });
}

#[test]
fn threads_of_dropped_pools_exit() {
    timed(|| {
        let (stop_tx, stop_rx) = mpsc::channel();
        let pools = 30;
        for k in 0..pools {
            let stop_tx = Mutex::new(stop_tx.clone());
            let pool = Pool::builder()
                .threads(2)
                .detect_blocking(false) // gated workers must hold the queue
                .on_thread_stop(move |i| stop_tx.lock().unwrap().send((k, i)).unwrap())
                .build()
                .unwrap();
            for _ in 0..10 {
                pool.spawn(|| common::spin_work(100)).detach();
            }
            // The last handle goes from inside the pool, on a worker.
            let last = pool.clone();
            pool.spawn(move || drop(last)).detach();
        }
        drop(stop_tx);
        let mut stopped: Vec<(usize, usize)> = stop_rx.iter().collect();
        stopped.sort_unstable();
        let expected: Vec<(usize, usize)> = (0..pools).flat_map(|k| [(k, 0), (k, 1)]).collect();
        assert_eq!(stopped, expected);
    });
}

/// Shutting down pool B from a worker of pool A keeps A's worker serving
/// A's jobs while it waits: here B's last job waits on a job queued on A,
/// whose only worker is the one calling `shutdown`.
#[test]
fn shutdown_from_another_pools_worker_keeps_that_worker_serving() {
    timed(|| {
        let a = pool(1, "a");
        let b = pool(1, "b");
        let a2 = a.clone();
        let outcome = a
            .spawn(move || {
                let on_a = a2.spawn(|| 5);
                let on_b = b.spawn(move || on_a.wait().unwrap() + 1);
                b.shutdown();
                on_b.wait().unwrap()
            })
            .wait()
            .unwrap();
        assert_eq!(outcome, 6);
    });
}

#[test]
fn shutdown_timeout_reports_a_worker_still_busy_then_one_done() {
    timed(|| {
        let pool = pool(1, "timeout");
        let gate = Gate::hold(&pool);
        let queued = pool.spawn(|| 7);
        // The gate holds the only worker: it cannot exit in time.
        assert!(!pool.shutdown_timeout(Duration::ZERO));
        assert!(!pool.shutdown_timeout(Duration::from_millis(20)));
        assert!(is_terminating(&pool));
        // The shutdown goes on: the queued job still runs once released.
        gate.release();
        assert!(pool.shutdown_timeout(Duration::MAX), "waits for ever");
        assert_eq!(queued.wait().unwrap(), 7);
        assert!(pool.shutdown_timeout(Duration::ZERO), "already exited");
    });
}

#[test]
fn shutdown_timeout_on_its_own_worker_only_starts_it() {
    timed(|| {
        let pool = pool(1, "timeout-own");
        let p = pool.clone();
        let on_worker = pool
            .spawn(move || p.shutdown_timeout(Duration::from_secs(60)))
            .wait()
            .unwrap();
        assert!(!on_worker, "a worker cannot wait for itself");
        pool.shutdown();
    });
}

#[test]
fn shutdown_async_resolves_on_every_executor_without_parking_it() {
    timed(|| {
        // A current-thread tokio loop keeps serving while the pool drains:
        // the ticker task makes progress while the shutdown is pending.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let pool = pool(1, "async-tokio");
            let gate = Gate::hold(&pool);
            let queued = pool.spawn(|| 5);
            let shutdown = pool.shutdown_async();
            let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let ticker = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                })
            };
            // Release the gate only once the loop has shown it runs.
            while ticks.load(std::sync::atomic::Ordering::Relaxed) < 10 {
                tokio::task::yield_now().await;
            }
            let open = gate.open();
            shutdown.await;
            ticker.abort();
            assert_eq!(queued.await.unwrap(), 5);
            assert!(open.await.is_ok());
        });
        // smol and a futures executor; shutdown_now cancels what is queued.
        smol::block_on(async {
            let pool = pool(2, "async-smol");
            pool.spawn(|| 1).await.unwrap();
            pool.shutdown_async().await;
            pool.shutdown_async().await; // again: already exited
        });
        futures::executor::block_on(async {
            let pool = pool(1, "async-futures");
            let gate = Gate::hold(&pool);
            let queued = pool.spawn(|| 1);
            let shutdown = pool.shutdown_now_async();
            let open = gate.open();
            shutdown.await;
            assert!(queued.await.unwrap_err().is_cancelled());
            assert!(open.await.is_ok());
        });
    });
}

#[test]
fn dropping_a_shutdown_future_does_not_stop_the_shutdown() {
    timed(|| {
        let pool = pool(1, "async-drop");
        let queued = {
            let gate = Gate::hold(&pool);
            let queued = pool.spawn(|| 3);
            drop(pool.shutdown_async());
            assert!(is_terminating(&pool));
            gate.release();
            queued
        };
        assert_eq!(queued.wait().unwrap(), 3);
        pool.shutdown();
    });
}

/// A waker whose `wake` panics (user code from an executor).
struct PanickingWaker;

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("{}: a Shutdown waker", common::EXPECTED);
    }
}

#[test]
fn a_panicking_shutdown_waker_does_not_take_the_worker_down() {
    common::silence_expected_panics();
    timed(|| {
        let pool = pool(1, "async-panic");
        let gate = Gate::hold(&pool);
        let mut shutdown = pool.shutdown_async();
        let waker = std::task::Waker::from(Arc::new(PanickingWaker));
        let mut cx = std::task::Context::from_waker(&waker);
        // Registered while the gate holds the only worker.
        assert!(std::pin::Pin::new(&mut shutdown).poll(&mut cx).is_pending());
        gate.release();
        // The last worker wakes the panicking waker as it exits; the panic
        // is contained, so the exit completes and `shutdown` returns.
        pool.shutdown();
        assert!(std::pin::Pin::new(&mut shutdown).poll(&mut cx).is_ready());
    });
}

// ---- shutdown_now resolves queued Tasks before it returns ---------------

/// One worker stuck in a job that had queued `on_deque` Tasks on its own
/// deque first; `injected` more Tasks queued from outside; `blocking` more
/// waiting for the one spare thread, which is stuck too. Returns the stuck
/// jobs' releases and every queued Task.
#[allow(clippy::type_complexity)]
fn stuck_pool_with_queued_tasks(
    prefix: &'static str,
    on_deque: usize,
    injected: usize,
    blocking: usize,
) -> (
    Pool,
    Vec<mpsc::Sender<()>>,
    Vec<offload::Task<usize>>,
    Counter,
) {
    let pool = Pool::builder()
        .threads(1)
        .max_blocking_threads(1)
        .detect_blocking(false) // the stuck worker must hold the queue
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .unwrap();
    let ran = Counter::new();
    let (started_tx, started) = mpsc::channel();
    let (release_cpu, gate) = mpsc::channel::<()>();
    let inner = pool.clone();
    let inner_ran = ran.clone();
    let stuck = pool.spawn(move || {
        let tasks: Vec<_> = (0..on_deque)
            .map(|i| {
                let ran = inner_ran.clone();
                inner.spawn(move || {
                    ran.incr();
                    i
                })
            })
            .collect();
        started_tx.send(tasks).unwrap();
        let _ = gate.recv();
        0
    });
    let mut tasks = started.recv().unwrap();
    let (blocking_started_tx, blocking_started) = mpsc::channel();
    let (release_blocking, blocking_gate) = mpsc::channel::<()>();
    let stuck_blocking = pool.spawn_blocking(move || {
        blocking_started_tx.send(()).unwrap();
        let _ = blocking_gate.recv();
        0
    });
    blocking_started.recv().unwrap();
    for i in 0..injected {
        let ran = ran.clone();
        tasks.push(pool.spawn(move || {
            ran.incr();
            i
        }));
    }
    for i in 0..blocking {
        let ran = ran.clone();
        tasks.push(pool.spawn_blocking(move || {
            ran.incr();
            i
        }));
    }
    stuck.detach();
    stuck_blocking.detach();
    (pool, vec![release_cpu, release_blocking], tasks, ran)
}

#[test]
fn shutdown_now_async_resolves_every_queued_task_before_it_returns() {
    timed(|| {
        let (pool, releases, tasks, ran) = stuck_pool_with_queued_tasks("now-sweep", 300, 600, 100);
        assert_eq!(tasks.len(), 1000);
        assert!(tasks.iter().all(|t| !t.is_finished()));
        let start = std::time::Instant::now();
        let shutdown = pool.shutdown_now_async();
        let elapsed = start.elapsed();
        // Every queued Task has resolved, with both stuck jobs still stuck.
        let unresolved = tasks.iter().filter(|t| !t.is_finished()).count();
        assert_eq!(
            unresolved, 0,
            "{unresolved} of 1000 queued Tasks still pending"
        );
        eprintln!("shutdown_now_async resolved 1000 queued Tasks in {elapsed:?}");
        for task in tasks {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        assert_eq!(ran.get(), 0);
        let metrics = pool.metrics();
        assert!(metrics.cancelled() >= 1000, "{metrics:?}");
        drop(releases);
        pollster::block_on(shutdown);
    });
}

#[test]
fn shutdown_now_resolves_queued_tasks_while_it_waits_for_a_stuck_job() {
    timed(|| {
        let (pool, releases, tasks, ran) =
            stuck_pool_with_queued_tasks("now-sweep-sync", 10, 10, 10);
        let p = pool.clone();
        let shutdown = thread::spawn(move || p.shutdown_now());
        // The stuck jobs hold `shutdown_now`, not the queued Tasks: each
        // resolves, awaited on tokio, smol and a futures executor in turn.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (i, task) in tasks.into_iter().enumerate() {
            let result = match i % 3 {
                0 => rt.block_on(task),
                1 => smol::block_on(task),
                _ => futures::executor::block_on(task),
            };
            assert!(result.unwrap_err().is_cancelled());
        }
        assert!(!shutdown.is_finished());
        assert_eq!(ran.get(), 0);
        drop(releases);
        shutdown.join().unwrap();
    });
}

#[test]
fn shutdown_now_sweep_leaves_running_computations_their_parts() {
    timed(|| {
        // Jobs of a running join and scope, and an install body from
        // outside, are queued while the pool's one worker is stuck: the
        // sweep takes them out of the queues but they still run.
        let pool = pool(1, "now-sweep-parts");
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let joined = pool.spawn(move || {
            offload::join(
                move || {
                    offload::scope(move |s| {
                        s.spawn(|_| ());
                        started_tx.send(()).unwrap();
                        let _ = gate.recv();
                    });
                    1
                },
                || 2,
            )
        });
        started.recv().unwrap();
        let p = pool.clone();
        let (installing_tx, installing) = mpsc::channel();
        let install = thread::spawn(move || {
            installing_tx.send(()).unwrap();
            p.install(|| 3)
        });
        installing.recv().unwrap();
        let queued = pool.spawn(|| 4);
        let shutdown = pool.shutdown_now_async();
        assert!(queued.wait().unwrap_err().is_cancelled());
        release.send(()).unwrap();
        assert_eq!(joined.wait().unwrap(), (1, 2));
        pollster::block_on(shutdown);
        // The install either ran before the shutdown or panics as any
        // install on a shut-down pool does; it never hangs.
        if let Ok(n) = install.join() {
            assert_eq!(n, 3);
        }
    });
}

// ---- dropping the last handle: continuations still run -----------------

/// A 2-thread pool that reports each thread's stop.
fn pool_reporting_stops(prefix: &'static str) -> (Pool, mpsc::Receiver<usize>) {
    let (stop_tx, stops) = mpsc::channel();
    let stop_tx = Mutex::new(stop_tx);
    let pool = Pool::builder()
        .threads(2)
        .detect_blocking(false)
        .thread_name(move |i| format!("{prefix}-{i}"))
        .on_thread_stop(move |i| stop_tx.lock().unwrap().send(i).unwrap())
        .build()
        .unwrap();
    (pool, stops)
}

#[test]
fn jobs_spawned_by_running_jobs_after_the_last_handle_is_dropped_still_run() {
    timed(|| {
        let (pool, stops) = pool_reporting_stops("detached");
        let (dropped_tx, dropped) = mpsc::channel::<()>();
        let (tasks_tx, tasks) = mpsc::channel();
        let parent = pool.spawn(move || {
            dropped.recv().unwrap(); // the last user handle is gone now
                                     // A continuation chain three deep, a blocking job, and one
                                     // spawned from inside the blocking job.
            let chained = offload::spawn(|| {
                offload::spawn(|| offload::spawn(|| 7).wait().unwrap() * 2)
                    .wait()
                    .unwrap()
                    + 1
            });
            let blocking = offload::spawn_blocking(|| offload::spawn(|| 3).wait().unwrap());
            tasks_tx.send((chained, blocking)).unwrap();
            1
        });
        parent.detach();
        drop(pool);
        dropped_tx.send(()).unwrap();
        let (chained, blocking) = tasks.recv().unwrap();
        // Awaited from tokio and smol.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(chained).unwrap(), 15);
        assert_eq!(smol::block_on(blocking).unwrap(), 3);
        // Then, with no work left, both workers exit, and so does the
        // spare thread that ran the blocking job (spares run the stop
        // hook too, with indices from `threads` on).
        let mut stopped: Vec<usize> = stops.iter().collect();
        stopped.sort_unstable();
        assert!(stopped.len() >= 3 && stopped[..2] == [0, 1], "{stopped:?}");
    });
}

#[test]
fn a_detached_continuation_runs_after_the_last_handle_is_dropped() {
    timed(|| {
        let (pool, stops) = pool_reporting_stops("continuation");
        let (done_tx, done) = futures::channel::oneshot::channel();
        let (go_tx, go) = mpsc::channel::<()>();
        pool.spawn(move || {
            go.recv().unwrap();
            offload::spawn(move || done_tx.send(42).unwrap()).detach();
        })
        .detach();
        drop(pool);
        go_tx.send(()).unwrap();
        assert_eq!(futures::executor::block_on(done).unwrap(), 42);
        assert_eq!(stops.iter().count(), 2);
    });
}

#[test]
fn an_explicit_shutdown_still_refuses_jobs_spawned_by_running_jobs() {
    timed(|| {
        let (pool, stops) = pool_reporting_stops("explicit");
        let (go_tx, go) = mpsc::channel::<()>();
        let parent = pool.spawn(move || {
            go.recv().unwrap();
            let cpu = offload::spawn(|| 1).wait();
            let blocking = offload::spawn_blocking(|| 2).wait();
            (
                cpu.unwrap_err().is_cancelled(),
                blocking.unwrap_err().is_cancelled(),
            )
        });
        let shutdown = pool.shutdown_async();
        drop(pool);
        go_tx.send(()).unwrap();
        assert_eq!(pollster::block_on(parent).unwrap(), (true, true));
        pollster::block_on(shutdown);
        assert_eq!(stops.iter().count(), 2);
    });
}
