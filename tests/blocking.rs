//! Blocking calls in the pool: `offload::blocking` (a worker lends its
//! place to a stand-in while it blocks) and `spawn_blocking` (jobs on the
//! spare threads): results, panics, the cap and its FIFO queue, shutdown
//! with threads blocked, spare threads exiting, a spare that cannot start.
//!
//! Every test that would deadlock without compensation runs a pool whose
//! workers are all blocked until another job runs: it passes only if a
//! stand-in runs that job. Synchronisation is by channels and barriers.

mod common;

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

#[cfg(target_os = "linux")]
use common::threads_named;
use common::{named_pool, silence_expected_panics, spin_until, thread_name, timed, EXPECTED};

/// A pool for the tests of explicit marking: blocking detection off, so
/// that a worker held on a channel before it calls `blocking` (as these
/// tests do to order their events) gets no helper that would take the
/// queued job first (detection has its own tests, `tests/detect.rs`).
fn marked_pool(threads: usize, prefix: &'static str) -> offload::Builder {
    named_pool(threads, prefix).detect_blocking(false)
}
use offload::Pool;

#[test]
fn blocking_off_a_worker_runs_in_place() {
    let me = thread::current().id();
    let (value, on) = offload::blocking(|| (42, thread::current().id()));
    assert_eq!(value, 42);
    assert_eq!(on, me);
    // Nested calls just run.
    assert_eq!(offload::blocking(|| offload::blocking(|| 7)), 7);
}

/// The pool's only worker blocks until a job queued behind it has run: a
/// stand-in must run that job.
#[test]
fn blocking_lends_the_place_to_a_stand_in() {
    timed(|| {
        let pool = marked_pool(1, "lend").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let (ran_tx, ran_rx) = mpsc::channel::<String>();
        let blocker = pool.spawn(move || {
            let home = thread_name();
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            let other = offload::blocking(|| ran_rx.recv().unwrap());
            // Back on its own place, on its own thread.
            (home, other, thread_name())
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(move || ran_tx.send(thread_name()).unwrap());
        queued_tx.send(()).unwrap();
        let (home, other, after) = blocker.wait().unwrap();
        queued.wait().unwrap();
        assert_eq!(home, "lend0");
        assert_eq!(after, "lend0");
        assert_eq!(
            other, "lend1",
            "the queued job ran on the first spare thread"
        );
    });
}

/// Two threads with frames on one place, both in a wait: the worker's
/// thread, back from `blocking`, waits for a job it just queued on its own
/// deque, while the stand-in that gave the place back waits (in line) for
/// a blocking job. The waiter holding the place must run the queued job
/// rather than hand the place to the other waiter, which would hand it
/// straight back: that ping-pong ran no job at all (the stress test found
/// it as rounds that stalled for seconds on a pool of one). Detection off,
/// so that no helper runs the job instead. Whether the stand-in is in line
/// by the time the worker's thread waits is a race, so the scene is played
/// 50 times.
#[test]
fn two_waiters_on_one_place_still_run_the_queue() {
    timed(|| {
        for _ in 0..50 {
            two_waiters_on_one_place();
        }
    });
}

fn two_waiters_on_one_place() {
    {
        let pool = marked_pool(1, "wait").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (waiting_tx, waiting_rx) = mpsc::channel();
        // A blocking job that holds no worker: what the stand-in waits for.
        let gate = pool.spawn_blocking(move || gate_rx.recv().unwrap());
        let home = pool.spawn(move || {
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            // Lends the place: the stand-in runs `waiter` below.
            offload::blocking(|| go_rx.recv().unwrap());
            // Back on its place, with the stand-in in line behind it.
            let queued = offload::spawn(|| 6 * 7);
            queued.wait().unwrap()
        });
        started_rx.recv().unwrap();
        let waiter = pool.spawn(move || {
            waiting_tx.send(thread_name()).unwrap();
            gate.wait().unwrap();
        });
        queued_tx.send(()).unwrap();
        assert_eq!(waiting_rx.recv().unwrap(), "wait2", "run by the stand-in");
        go_tx.send(()).unwrap();
        assert_eq!(home.wait().unwrap(), 42);
        gate_tx.send(()).unwrap();
        waiter.wait().unwrap();
        pool.shutdown();
    }
}

/// A job's answer does not wait for its stand-in's job: back from its
/// blocking call, job A finishes without its place while the stand-in
/// still runs B, which ends only once A's Task has resolved. (Waiting for
/// its place at the end of the call, A would wait for B, and B for A.)
#[test]
fn blocking_answers_before_the_stand_in_is_done() {
    timed(|| {
        let pool = marked_pool(1, "early").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let (b_running_tx, b_running_rx) = mpsc::channel::<()>();
        let (a_answered_tx, a_answered_rx) = mpsc::channel::<()>();
        let a = pool.spawn(move || {
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            let x = offload::blocking(move || {
                b_running_rx.recv().unwrap();
                40
            });
            (x + 2, thread_name())
        });
        started_rx.recv().unwrap();
        let b = pool.spawn(move || {
            b_running_tx.send(()).unwrap();
            a_answered_rx.recv().unwrap();
            thread_name()
        });
        queued_tx.send(()).unwrap();
        let (answer, home) = a.wait().unwrap();
        assert_eq!((answer, home.as_str()), (42, "early0"));
        a_answered_tx.send(()).unwrap();
        assert_eq!(b.wait().unwrap(), "early1", "B ran on the stand-in");
        // A's thread is back on its place: the pool runs jobs, nobody is
        // away, and a job that blocks again lends the place again.
        assert_eq!(pool.spawn(|| 5).wait().unwrap(), 5);
        spin_until(|| pool.metrics().blocked() == 0);
        pool.shutdown();
    });
}

/// Back from its blocking call, the rest of a job uses its pool as a
/// thread outside it would: a `spawn` queues on the pool, a `join` and a
/// `scope` run on its workers while the job's thread waits, and a wait
/// for a Task parks until a worker (here the stand-in, or the other
/// worker) has run it. Then the thread takes its place back.
#[test]
fn a_job_back_early_from_blocking_uses_its_pool() {
    timed(|| {
        let pool = marked_pool(2, "rest").build().unwrap();
        for _ in 0..20 {
            let (queued_tx, queued_rx) = mpsc::channel::<()>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let a = pool.spawn(move || {
                queued_rx.recv().unwrap();
                offload::blocking(move || go_rx.recv().unwrap());
                let (x, y) = offload::join(|| 1, || 2);
                let mut z = 0;
                offload::scope(|s| {
                    s.spawn(|_| z = 3);
                });
                let w = offload::spawn(|| 36).wait().unwrap();
                x + y + z + w
            });
            // Queued behind A (or run by the other worker): either way A
            // may lend its place.
            let b = pool.spawn(|| 7);
            queued_tx.send(()).unwrap();
            go_tx.send(()).unwrap();
            assert_eq!(a.wait().unwrap(), 42);
            assert_eq!(b.wait().unwrap(), 7);
        }
        spin_until(|| pool.metrics().blocked() == 0);
        pool.shutdown();
    });
}

/// With nothing waiting, `blocking` runs `f` on the worker (no thread is
/// started), and the worker stays a worker inside it.
#[test]
fn blocking_with_nothing_waiting_keeps_the_place() {
    timed(|| {
        let pool = marked_pool(1, "keep").build().unwrap();
        let inside = pool
            .spawn(|| offload::blocking(|| offload::join(thread_name, thread_name)))
            .wait()
            .unwrap();
        assert_eq!(inside, ("keep0".to_owned(), "keep0".to_owned()));
    });
}

#[test]
fn blocking_inside_join_lends_the_other_half() {
    timed(|| {
        let pool = marked_pool(1, "join").build().unwrap();
        let (tx, rx) = mpsc::channel();
        let (a, b) = pool.install(move || {
            offload::join(
                move || offload::blocking(move || rx.recv().unwrap()),
                move || {
                    tx.send(7).unwrap();
                    thread_name()
                },
            )
        });
        assert_eq!(a, 7);
        assert_eq!(b, "join1", "the second half ran on the stand-in");
    });
}

#[test]
fn blocking_inside_scope_lends_the_scope_jobs() {
    timed(|| {
        let pool = marked_pool(1, "scope").build().unwrap();
        let total = pool.scope(|s| {
            let (tx, rx) = mpsc::channel();
            for i in 0..4u64 {
                let tx = tx.clone();
                s.spawn(move |_| tx.send(i).unwrap());
            }
            drop(tx);
            // Blocks until all four jobs ran: only a stand-in can run them.
            offload::blocking(move || rx.iter().sum::<u64>())
        });
        assert_eq!(total, 6);
    });
}

#[test]
fn nested_blocking_counts_once() {
    timed(|| {
        let pool = marked_pool(1, "nest").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let (ran_tx, ran_rx) = mpsc::channel::<()>();
        let blocker = pool.spawn(move || {
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            offload::blocking(|| offload::blocking(|| ran_rx.recv().unwrap()));
            thread_name()
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(move || {
            ran_tx.send(()).unwrap();
            thread_name()
        });
        queued_tx.send(()).unwrap();
        assert_eq!(blocker.wait().unwrap(), "nest0");
        // One stand-in, the first spare: the inner call started none.
        assert_eq!(queued.wait().unwrap(), "nest1");
    });
}

/// A panic in `f` reaches the caller after the place is back: the job goes
/// on as a worker (a `join` inside it works, on its own thread).
#[test]
fn a_panic_inside_blocking_restores_the_place() {
    silence_expected_panics();
    timed(|| {
        let pool = marked_pool(1, "panic").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let blocker = pool.spawn(move || {
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            let caught = std::panic::catch_unwind(|| {
                offload::blocking(|| panic!("{EXPECTED}: inside blocking"));
            });
            assert!(caught.is_err());
            let (a, b) = offload::join(|| 1, || 2);
            (a + b, thread_name())
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(|| 5);
        queued_tx.send(()).unwrap();
        assert_eq!(blocker.wait().unwrap(), (3, "panic0".to_owned()));
        assert_eq!(queued.wait().unwrap(), 5);
        // And the panic of a blocking job is the Task's JoinError.
        let err = pool
            .spawn_blocking(|| panic!("{EXPECTED}: blocking job"))
            .wait()
            .unwrap_err();
        assert!(err.is_panic());
    });
}

/// Inside `f` the thread is not a worker, but the free functions still use
/// its pool.
#[test]
fn spawn_inside_blocking_uses_the_same_pool() {
    timed(|| {
        let pool = marked_pool(2, "same").build().unwrap();
        let names = pool
            .spawn(|| {
                offload::blocking(|| {
                    let spawned = offload::spawn(thread_name).wait().unwrap();
                    let (a, _) = offload::join(thread_name, || ());
                    let blocking = offload::spawn_blocking(thread_name).wait().unwrap();
                    (spawned, a, blocking)
                })
            })
            .wait()
            .unwrap();
        assert!(names.0.starts_with("same"), "{names:?}");
        assert!(names.1.starts_with("same"), "{names:?}");
        assert!(names.2.starts_with("same"), "{names:?}");
    });
}

/// Eight blocking jobs meet at a barrier: they run at once, on spare
/// threads, while the two workers are free.
#[test]
fn spawn_blocking_runs_beside_the_workers() {
    timed(|| {
        let pool = marked_pool(2, "beside").build().unwrap();
        let barrier = Arc::new(Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                pool.spawn_blocking(move || {
                    barrier.wait();
                    thread_name()
                })
            })
            .collect();
        for task in tasks {
            let name = task.wait().unwrap();
            assert!(!matches!(name.as_str(), "beside0" | "beside1"), "{name}");
        }
        assert_eq!(pool.spawn(|| 6 * 7).wait().unwrap(), 42);
    });
}

/// A burst of 64 blocking jobs that must all run at once (they meet at a
/// barrier): the spare threads it needs are started as a tree, by the new
/// threads, and none of the jobs waits for another.
#[test]
fn a_burst_of_blocking_jobs_gets_a_thread_each() {
    timed(|| {
        let pool = marked_pool(1, "burst").build().unwrap();
        let barrier = Arc::new(Barrier::new(64));
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                pool.spawn_blocking(move || {
                    barrier.wait();
                    i
                })
            })
            .collect();
        let sum: u64 = tasks.into_iter().map(|task| task.wait().unwrap()).sum();
        assert_eq!(sum, 63 * 64 / 2);
    });
}

fn four_blocking_jobs(pool: &Pool) -> Vec<offload::Task<u64>> {
    let barrier = Arc::new(Barrier::new(4));
    (0..4u64)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            pool.spawn_blocking(move || {
                barrier.wait();
                i
            })
        })
        .collect()
}

#[test]
fn spawn_blocking_from_four_executors() {
    timed(|| {
        let pool = marked_pool(1, "exec").build().unwrap();
        let sum = |results: Vec<Result<u64, offload::JoinError>>| -> u64 {
            results.into_iter().map(Result::unwrap).sum()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let tokio = rt.block_on(futures::future::join_all(four_blocking_jobs(&pool)));
        assert_eq!(sum(tokio), 6);
        let smol = smol::block_on(futures::future::join_all(four_blocking_jobs(&pool)));
        assert_eq!(sum(smol), 6);
        let ex = async_executor::Executor::new();
        let handles: Vec<_> = four_blocking_jobs(&pool)
            .into_iter()
            .map(|task| ex.spawn(task))
            .collect();
        let async_executor = smol::block_on(ex.run(futures::future::join_all(handles)));
        assert_eq!(sum(async_executor), 6);
        let futures =
            futures::executor::block_on(futures::future::join_all(four_blocking_jobs(&pool)));
        assert_eq!(sum(futures), 6);
        // And the free function, on the global pool.
        assert_eq!(
            pollster::block_on(offload::spawn_blocking(|| 5)).unwrap(),
            5
        );
    });
}

/// Past the cap, blocking jobs wait in FIFO order, and none is lost.
#[test]
fn the_cap_queues_blocking_jobs_in_order() {
    timed(|| {
        let pool = marked_pool(1, "cap")
            .max_blocking_threads(1)
            .build()
            .unwrap();
        assert_eq!(pool.max_blocking_threads(), 1);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let first = pool.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            thread_name()
        });
        started_rx.recv().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let queued: Vec<_> = (0..20)
            .map(|i| {
                let order = Arc::clone(&order);
                pool.spawn_blocking(move || {
                    order.lock().unwrap().push(i);
                    thread_name()
                })
            })
            .collect();
        // The workers are not used for them: a CPU job runs meanwhile.
        assert_eq!(pool.spawn(|| 1).wait().unwrap(), 1);
        assert!(order.lock().unwrap().is_empty());
        release_tx.send(()).unwrap();
        assert_eq!(first.wait().unwrap(), "cap1");
        for task in queued {
            assert_eq!(task.wait().unwrap(), "cap1", "one spare thread at most");
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    });
}

#[test]
fn zero_max_blocking_threads_is_invalid_input() {
    let err = Pool::builder()
        .threads(1)
        .max_blocking_threads(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

/// `shutdown` with blocking jobs running and queued: it waits for them, the
/// queued ones run, every Task resolves, and every thread exits.
#[cfg(target_os = "linux")]
#[test]
fn shutdown_waits_for_blocked_threads() {
    timed(|| {
        let pool = marked_pool(2, "sdw")
            .max_blocking_threads(3)
            .build()
            .unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let running: Vec<_> = (0..3)
            .map(|i| {
                let (barrier, release_rx) = (Arc::clone(&barrier), Arc::clone(&release_rx));
                pool.spawn_blocking(move || {
                    barrier.wait();
                    release_rx.lock().unwrap().recv().unwrap();
                    i
                })
            })
            .collect();
        barrier.wait();
        let queued: Vec<_> = (3..6).map(|i| pool.spawn_blocking(move || i)).collect();
        // Two workers and three spares. A thread names itself when it first
        // runs, and a worker (at nice +10) may not have run yet on a loaded
        // machine: wait for the count, under the test's timeout.
        spin_until(|| threads_named("sdw") == 5);
        let handle = pool.clone();
        let shutdown = thread::spawn(move || handle.shutdown());
        spin_until(|| common::is_terminating(&pool));
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
        shutdown.join().unwrap();
        let mut results: Vec<i32> = running
            .into_iter()
            .chain(queued)
            .map(|task| task.wait().unwrap())
            .collect();
        results.sort_unstable();
        assert_eq!(results, [0, 1, 2, 3, 4, 5]);
        // The threads have said they exit; the OS takes a moment more.
        spin_until(|| threads_named("sdw") == 0);
        assert!(pool.spawn_blocking(|| 1).wait().unwrap_err().is_cancelled());
    });
}

/// `shutdown_now` with blocking jobs running and queued: the running ones
/// see `is_cancelled`, the queued ones are cancelled, every thread exits.
#[cfg(target_os = "linux")]
#[test]
fn shutdown_now_cancels_blocked_threads() {
    timed(|| {
        let pool = marked_pool(1, "sdn")
            .max_blocking_threads(2)
            .build()
            .unwrap();
        let barrier = Arc::new(Barrier::new(3));
        let running: Vec<_> = (0..2)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                pool.spawn_blocking(move || {
                    barrier.wait();
                    while !offload::is_cancelled() {
                        thread::yield_now();
                    }
                    "stopped"
                })
            })
            .collect();
        barrier.wait();
        let queued: Vec<_> = (0..3).map(|_| pool.spawn_blocking(|| "ran")).collect();
        pool.shutdown_now();
        for task in running {
            assert_eq!(task.wait().unwrap(), "stopped");
        }
        for task in queued {
            assert!(task.wait().unwrap_err().is_cancelled());
        }
        spin_until(|| threads_named("sdn") == 0);
    });
}

/// A worker away in `blocking` at shutdown: the pool waits for it, and its
/// stand-in exits too.
#[cfg(target_os = "linux")]
#[test]
fn shutdown_while_a_worker_is_away() {
    timed(|| {
        let pool = marked_pool(1, "away").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = pool.spawn(move || {
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            offload::blocking(|| release_rx.recv().unwrap());
            "back"
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(|| "ran on the stand-in");
        queued_tx.send(()).unwrap();
        assert_eq!(queued.wait().unwrap(), "ran on the stand-in");
        let handle = pool.clone();
        let shutdown = thread::spawn(move || handle.shutdown());
        spin_until(|| common::is_terminating(&pool));
        release_tx.send(()).unwrap();
        shutdown.join().unwrap();
        assert_eq!(blocker.wait().unwrap(), "back");
        spin_until(|| threads_named("away") == 0);
    });
}

/// Idle spare threads exit after the keep-alive; the pool goes on.
#[cfg(target_os = "linux")]
#[test]
fn idle_spare_threads_exit_after_the_keep_alive() {
    timed(|| {
        let pool = marked_pool(1, "keepalive")
            .blocking_keep_alive(Duration::from_millis(1))
            .build()
            .unwrap();
        let barrier = Arc::new(Barrier::new(3));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                pool.spawn_blocking(move || barrier.wait())
            })
            .collect();
        for task in tasks {
            task.wait().unwrap();
        }
        spin_until(|| threads_named("keepalive") == 1);
        assert_eq!(pool.spawn_blocking(|| 3).wait().unwrap(), 3);
        assert_eq!(pool.spawn(|| 4).wait().unwrap(), 4);
    });
}

/// A spare thread that cannot be started (here: the user's name hook
/// panics for it): blocking jobs run on the workers, `blocking` runs
/// uncompensated, nothing panics at the caller.
#[test]
fn a_spare_that_cannot_start() {
    silence_expected_panics();
    timed(|| {
        let pool = Pool::builder()
            .threads(1)
            .thread_name(|i| {
                assert!(i < 1, "{EXPECTED}: no name for a spare thread");
                format!("nospare{i}")
            })
            .build()
            .unwrap();
        assert_eq!(
            pool.spawn_blocking(thread_name).wait().unwrap(),
            "nospare0",
            "the blocking job ran on the worker"
        );
        let (started_tx, started_rx) = mpsc::channel();
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let blocker = pool.spawn(move || {
            started_tx.send(()).unwrap();
            queued_rx.recv().unwrap();
            offload::blocking(|| 1)
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(|| 2);
        queued_tx.send(()).unwrap();
        assert_eq!(blocker.wait().unwrap(), 1);
        assert_eq!(queued.wait().unwrap(), 2);
    });
}

#[test]
fn blocking_inside_a_blocking_job_just_runs() {
    timed(|| {
        let pool = marked_pool(1, "inner").build().unwrap();
        let (value, name) = pool
            .spawn_blocking(|| offload::blocking(|| (9, thread_name())))
            .wait()
            .unwrap();
        assert_eq!(value, 9);
        assert_eq!(name, "inner1");
    });
}

/// A job that, inside `blocking`, waits for a `spawn_blocking` job gets its
/// answer at every `max_blocking_threads`, 1 included: the stand-in that
/// holds a spare while the job is away is counted apart from blocking jobs.
#[test]
fn a_job_inside_blocking_that_waits_for_spawn_blocking_completes_at_every_cap() {
    for max in 1..=3 {
        timed(move || {
            let pool = marked_pool(1, "starve")
                .max_blocking_threads(max)
                .build()
                .unwrap();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (started_tx, started_rx) = mpsc::channel();
            let waiter = pool.spawn(move || {
                started_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                // A job waits behind this one: the place is lent to a
                // stand-in, which takes a spare thread.
                let (stood_in, answer) = offload::blocking(|| {
                    (
                        thread_name(),
                        offload::spawn_blocking(|| 42).wait().unwrap(),
                    )
                });
                (stood_in, answer)
            });
            started_rx.recv().unwrap();
            let behind = pool.spawn(thread_name);
            go_tx.send(()).unwrap();
            // Usually the stand-in runs it ("starve1"), but the lender may
            // come back before the stand-in reached it, and then runs it
            // itself: either way it runs, and the point is that the waiter
            // gets its answer while the stand-in holds a spare.
            let ran_on = behind.wait().unwrap();
            assert!(ran_on == "starve0" || ran_on == "starve1", "{ran_on}");
            assert_eq!(waiter.wait().unwrap(), ("starve0".to_owned(), 42));
        });
    }
}

/// Every thread that runs the pool's jobs ran the pool's `on_thread_start`
/// hook first (a thread-local it sets is there for every job: on the
/// worker, on a stand-in, on a `spawn_blocking` spare, join halves and
/// scope jobs included), and runs `on_thread_stop` when it leaves.
#[test]
fn every_thread_that_runs_jobs_ran_the_start_hook_and_runs_the_stop_hook() {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};

    thread_local!(static SET_UP: Cell<Option<usize>> = const { Cell::new(None) });
    /// The hook's index on this thread, or a panic: no set-up here.
    fn set_up() -> usize {
        SET_UP
            .with(Cell::get)
            .unwrap_or_else(|| panic!("a job ran on {} without set-up", thread_name()))
    }

    timed(|| {
        let starts = Arc::new(AtomicUsize::new(0));
        let stops = Arc::new(AtomicUsize::new(0));
        let (s, t) = (Arc::clone(&starts), Arc::clone(&stops));
        let pool = marked_pool(1, "hooked")
            .on_thread_start(move |i| {
                SET_UP.with(|set| set.set(Some(i)));
                s.fetch_add(1, Ordering::Relaxed);
            })
            .on_thread_stop(move |i| {
                assert_eq!(SET_UP.with(Cell::get), Some(i), "stop after start");
                t.fetch_add(1, Ordering::Relaxed);
            })
            .build()
            .unwrap();
        // A stand-in runs plain jobs, join halves and scope jobs.
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        // The lender stays in `blocking` until a job behind it has run, so
        // the stand-in runs at least one of them on any machine.
        let (ran_tx, ran_rx) = mpsc::channel::<()>();
        let lender = pool.spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let mine = set_up();
            offload::blocking(|| ran_rx.recv().unwrap());
            mine
        });
        started_rx.recv().unwrap();
        let behind: Vec<_> = (0..4)
            .map(|_| {
                let ran = ran_tx.clone();
                pool.spawn(move || {
                    let _ = ran.send(());
                    let (a, b) = offload::join(set_up, set_up);
                    let in_scope = Mutex::new(Vec::new());
                    offload::scope(|s| {
                        for _ in 0..2 {
                            s.spawn(|_| in_scope.lock().unwrap().push(set_up()));
                        }
                    });
                    // Every call above checked its thread's set-up; a join
                    // half may have run on another thread than this one.
                    assert_eq!(in_scope.into_inner().unwrap().len(), 2);
                    (thread_name(), set_up(), a.min(b))
                })
            })
            .collect();
        go_tx.send(()).unwrap();
        assert_eq!(lender.wait().unwrap(), 0);
        let mut on_spare = 0;
        for task in behind {
            let (name, index, _) = task.wait().unwrap();
            if name != "hooked0" {
                on_spare += 1;
                assert!(index >= 1, "{name} ran with a worker's set-up");
            }
        }
        assert!(on_spare > 0, "the stand-in ran some of the jobs");
        // Blocking jobs on spare threads.
        let blocking: Vec<_> = (0..4).map(|_| pool.spawn_blocking(set_up)).collect();
        for task in blocking {
            assert!(task.wait().unwrap() >= 1);
        }
        pool.shutdown();
        let started = starts.load(Ordering::Relaxed);
        assert!(started >= 2, "the worker and at least one spare");
        assert_eq!(
            stops.load(Ordering::Relaxed),
            started,
            "every thread's stop"
        );
    });
}

/// `try_spawn_blocking` admits a job while the blocking queue has room and
/// hands it back when it is full or the pool is shut down.
#[test]
fn try_spawn_blocking_refuses_past_max_queued_blocking_and_after_shutdown() {
    timed(|| {
        let pool = marked_pool(1, "tsb")
            .max_blocking_threads(1)
            .max_queued_blocking(2)
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let running = pool
            .try_spawn_blocking(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                0
            })
            .expect("a spare is free");
        started_rx.recv().unwrap();
        let queued: Vec<_> = (1..=2)
            .map(|i| pool.try_spawn_blocking(move || i).expect("room queued"))
            .collect();
        let refused = pool.try_spawn_blocking(|| 3).unwrap_err();
        assert!(refused.is_full());
        assert_eq!(refused.into_inner()(), 3, "the job comes back, never run");
        // Plain spawn_blocking is never refused; it is queued and counted.
        let forced = pool.spawn_blocking(|| 4);
        assert!(pool.try_spawn_blocking(|| 5).unwrap_err().is_full());
        release_tx.send(()).unwrap();
        assert_eq!(running.wait().unwrap(), 0);
        for (i, task) in queued.into_iter().enumerate() {
            assert_eq!(task.wait().unwrap(), i + 1);
        }
        assert_eq!(forced.wait().unwrap(), 4);
        // Room again.
        assert_eq!(pool.try_spawn_blocking(|| 6).unwrap().wait().unwrap(), 6);
        pool.shutdown();
        let refused = pool.try_spawn_blocking(|| 7).unwrap_err();
        assert!(refused.is_shutdown());
    });
}

#[test]
fn zero_max_queued_blocking_is_invalid_input() {
    let err = Pool::builder()
        .threads(1)
        .max_queued_blocking(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
