//! Blocking detection (`Builder::detect_blocking`): a job that blocks
//! without saying so is noticed, and a helper runs the jobs queued behind
//! it; a job that computes is not; with detection off a blocked job holds
//! its worker as before; helpers leave when the blocked job is back; and
//! `join`, `scope` and `install` work on a helper, shutdown included.
//!
//! Detection needs `/proc` (Linux). Every test that waits for a detection
//! waits for an event (a channel), under the file's timeout; the two that
//! check that nothing is detected give a job a fixed time on the CPU and
//! check the order of events, which a loaded machine cannot reverse.

#![cfg(target_os = "linux")]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{named_pool, spin_until, thread_name, threads_named, timed};
use offload::{Pool, Task};

/// Spawns a job that sleeps in `std::thread::sleep` until `released`, and
/// returns once it runs; it returns the name of its thread.
fn spawn_sleeper(pool: &Pool, released: &Arc<AtomicBool>) -> Task<String> {
    let released = Arc::clone(released);
    let (started_tx, started_rx) = mpsc::channel();
    let task = pool.spawn(move || {
        started_tx.send(()).unwrap();
        while !released.load(Ordering::Acquire) {
            thread::sleep(Duration::from_millis(1));
        }
        thread_name()
    });
    started_rx.recv().unwrap();
    task
}

/// The pool's one worker is stuck in `std::thread::sleep`, unmarked: the
/// job queued behind it runs on a helper while it sleeps; once it is back,
/// the helper leaves and the spare thread exits after its keep-alive.
#[test]
fn a_job_stuck_in_sleep_is_detected_and_a_helper_runs_the_queue() {
    timed(|| {
        let pool = named_pool(1, "sleepy")
            .blocking_keep_alive(Duration::from_millis(20))
            .build()
            .unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let stuck = spawn_sleeper(&pool, &released);
        // Runs only if something else than the stuck worker runs it.
        let queued: Vec<_> = (0..4).map(|_| pool.spawn(thread_name)).collect();
        for task in queued {
            assert_eq!(task.wait().unwrap(), "sleepy1", "ran on the first spare");
        }
        released.store(true, Ordering::Release);
        assert_eq!(stuck.wait().unwrap(), "sleepy0");
        spin_until(|| pool.metrics().detected_blocked() == 0);
        spin_until(|| pool.metrics().spare_threads() == 0);
        spin_until(|| threads_named("sleepy1") == 0);
        assert_eq!(threads_named("sleepy0"), 1, "the worker stays");
    });
}

/// A job that computes for 100 ms is never taken for a blocked one: the
/// job queued behind it starts after it ends.
#[test]
fn a_job_on_the_cpu_is_not_detected() {
    a_computing_job_gets_no_helper("busy", false);
}

/// Runs a job that computes for 100 ms (inside `offload::blocking` if
/// `marked`) on a pool of one, with a job queued behind it: that job must
/// start after the computation ends, on the worker, and nothing is
/// detected.
fn a_computing_job_gets_no_helper(prefix: &'static str, marked: bool) {
    timed(move || {
        let pool = named_pool(1, prefix).build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let busy = pool.spawn(move || {
            started_tx.send(()).unwrap();
            let compute = || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(100) {
                    std::hint::spin_loop();
                }
                Instant::now()
            };
            if marked {
                offload::blocking(compute)
            } else {
                compute()
            }
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(|| (Instant::now(), thread_name()));
        let ended = busy.wait().unwrap();
        let (started, on) = queued.wait().unwrap();
        assert!(started >= ended, "a helper ran the queue beside a CPU job");
        assert_eq!(on, format!("{prefix}0"));
        assert_eq!(pool.metrics().detected_total(), 0);
    });
}

/// With detection off, a job stuck in `sleep` holds its worker as before:
/// the job queued behind it waits for it.
#[test]
fn with_detection_off_a_blocked_job_holds_its_worker() {
    timed(|| {
        let pool = named_pool(1, "undetected")
            .detect_blocking(false)
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let stuck = pool.spawn(move || {
            started_tx.send(()).unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(100) {
                thread::sleep(Duration::from_millis(1));
            }
            Instant::now()
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(|| (Instant::now(), thread_name()));
        let ended = stuck.wait().unwrap();
        let (started, on) = queued.wait().unwrap();
        assert!(started >= ended);
        assert_eq!(on, "undetected0");
        assert_eq!(threads_named("undetected1"), 0, "no spare thread");
    });
}

/// On a helper, `join`, `scope` and `install` of the pool run there (a
/// helper has no place, so they cannot go to a worker's), also while the
/// pool shuts down; every Task resolves and every thread exits.
#[test]
fn join_scope_and_install_on_a_helper_and_shutdown_while_blocked() {
    timed(|| {
        let pool = named_pool(1, "helped").build().unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let stuck = spawn_sleeper(&pool, &released);
        let p = pool.clone();
        let forks = pool.spawn(move || {
            let on = thread_name();
            let (a, b) = offload::join(|| 1, || 2);
            let mut parts = [0u64; 4];
            offload::scope(|s| {
                for (i, part) in parts.iter_mut().enumerate() {
                    s.spawn(move |_| *part = i as u64 * 10);
                }
            });
            let (c, d) = p.join(|| 3, || 4);
            let e = p.install(|| offload::join(|| 5, || 6).1);
            (on, a + b + c + d + e, parts)
        });
        let (on, sum, parts) = forks.wait().unwrap();
        assert_eq!(on, "helped1", "ran on a helper");
        assert_eq!(sum, 1 + 2 + 3 + 4 + 6);
        assert_eq!(parts, [0, 10, 20, 30]);

        // Shut down while the worker is still stuck and jobs are queued.
        let queued: Vec<_> = (0..16u64).map(|i| pool.spawn(move || i)).collect();
        let closer = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown())
        };
        for (i, task) in queued.into_iter().enumerate() {
            assert_eq!(task.wait().unwrap(), i as u64);
        }
        released.store(true, Ordering::Release);
        assert_eq!(stuck.wait().unwrap(), "helped0");
        closer.join().unwrap();
        // Counted out just before they return: gone a moment later.
        spin_until(|| threads_named("helped") == 0);
    });
}

/// `shutdown_now` while a detected job blocks: the queue is cancelled or
/// run, the stuck job completes once released, and every thread exits.
#[test]
fn shutdown_now_while_a_detected_job_blocks() {
    timed(|| {
        let pool = named_pool(2, "stopnow").build().unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (started_tx, started_rx) = mpsc::channel();
        let stuck: Vec<_> = (0..2)
            .map(|_| {
                let (started_tx, release_rx) = (started_tx.clone(), Arc::clone(&release_rx));
                pool.spawn(move || {
                    started_tx.send(()).unwrap();
                    // Blocked in a futex, unmarked.
                    let _ = release_rx.lock().unwrap().recv();
                })
            })
            .collect();
        // Both started (the second one may have waited in the first one's
        // deque for a thief or a helper): neither is still queued when
        // `shutdown_now` cancels the queue.
        for _ in 0..2 {
            started_rx.recv().unwrap();
        }
        let queued: Vec<_> = (0..64u64).map(|i| pool.spawn(move || i)).collect();
        let first = queued
            .into_iter()
            .map(|task| task.wait())
            .collect::<Vec<_>>();
        // Helpers ran them all while the workers were stuck.
        assert!(first.iter().all(Result::is_ok));
        let late: Vec<_> = (0..64u64).map(|i| pool.spawn(move || i)).collect();
        let closer = {
            let pool = pool.clone();
            thread::spawn(move || pool.shutdown_now())
        };
        for task in late {
            // Run by a helper before the shutdown, or cancelled by it.
            match task.wait() {
                Ok(_) => {}
                Err(err) => assert!(err.is_cancelled(), "{err}"),
            }
        }
        drop(release_tx);
        for task in stuck {
            task.wait().unwrap();
        }
        closer.join().unwrap();
        spin_until(|| threads_named("stopnow") == 0);
    });
}

/// The helper rule, on the pile-up pattern (one long unmarked sleep, then
/// many short ones, on one worker): each runner seen blocked, helpers
/// included, gets one helper, and at most `max_blocking_threads` threads
/// compensate at once, so at most `threads + max_blocking_threads` jobs
/// run at once; every job completes.
#[test]
fn helpers_pile_up_no_further_than_max_blocking_threads() {
    use std::sync::atomic::AtomicUsize;

    timed(|| {
        const THREADS: usize = 1;
        const MAX: usize = 2;
        let pool = named_pool(THREADS, "pile")
            .max_blocking_threads(MAX)
            .build()
            .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let counted = |running: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>, sleep: Duration| {
            let (running, peak) = (Arc::clone(running), Arc::clone(peak));
            move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                thread::sleep(sleep);
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        // The long sleep lasts at least 50 ms, and until a short job ran
        // beside it (on a helper: the worker is in it).
        let helped = Arc::new(AtomicBool::new(false));
        let long = {
            let (running, peak, helped) =
                (Arc::clone(&running), Arc::clone(&peak), Arc::clone(&helped));
            pool.spawn(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let start = Instant::now();
                while start.elapsed() < Duration::from_millis(50) || !helped.load(Ordering::SeqCst)
                {
                    thread::sleep(Duration::from_millis(1));
                }
                running.fetch_sub(1, Ordering::SeqCst);
            })
        };
        let short: Vec<_> = (0..200)
            .map(|_| {
                let job = counted(&running, &peak, Duration::from_micros(500));
                let helped = Arc::clone(&helped);
                pool.spawn(move || {
                    job();
                    helped.store(true, Ordering::SeqCst);
                })
            })
            .collect();
        long.wait().unwrap();
        for task in short {
            task.wait().unwrap();
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= THREADS + MAX,
            "{peak} jobs at once on {THREADS} thread(s) and {MAX} compensating"
        );
        assert!(peak >= 2, "a short job ran beside the long sleep");
    });
}

/// A worker that completes a Task while jobs wait behind it may hold the
/// wake-up back for a moment, to wake its loop once for several Tasks.
/// Here the next job on that worker waits for what the loop does once
/// woken (a channel send), and blocks: the wake-up must still come (the
/// detector wakes what a blocked worker holds), and everything resolves.
#[test]
fn a_job_that_waits_for_the_loop_after_a_completion_gets_its_answer() {
    timed(|| {
        let pool = named_pool(1, "held").build().unwrap();
        let registered = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<u32>();
        let mut first = {
            let registered = Arc::clone(&registered);
            pool.spawn(move || {
                spin_until(|| registered.load(Ordering::Acquire));
                1
            })
        };
        // Queued behind `first` on the one worker: a backlog.
        let second = pool.spawn(move || rx.recv().unwrap() + 1);
        let third = pool.spawn(|| 3);
        let sum = futures::executor::block_on(async move {
            // The waker is registered before `first` can end.
            assert!(futures::poll!(&mut first).is_pending());
            registered.store(true, Ordering::Release);
            let one = first.await.unwrap();
            tx.send(one).unwrap();
            second.await.unwrap() + third.await.unwrap()
        });
        assert_eq!(sum, 5);
    });
}

/// With detection on, `offload::blocking` marks the call for the detector
/// instead of lending the place at once: the worker keeps its place and its
/// thread, and once the call has been off the CPU for the threshold a
/// helper runs the jobs queued behind it; when it returns the helper
/// leaves. A nested call counts once.
#[test]
fn a_marked_call_keeps_its_place_and_a_helper_runs_the_queue() {
    timed(|| {
        let pool = named_pool(1, "marked")
            .blocking_keep_alive(Duration::from_millis(20))
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (ran_tx, ran_rx) = mpsc::channel::<String>();
        let caller = pool.spawn(move || {
            started_tx.send(()).unwrap();
            let inside =
                offload::blocking(|| offload::blocking(|| (thread_name(), ran_rx.recv().unwrap())));
            (inside, thread_name())
        });
        started_rx.recv().unwrap();
        // Runs only if a helper runs it: the one worker is in the call.
        let queued = pool.spawn(move || ran_tx.send(thread_name()).unwrap());
        let ((inside, helper), after) = caller.wait().unwrap();
        queued.wait().unwrap();
        assert_eq!(inside, "marked0", "the call runs on the worker's thread");
        assert_eq!(after, "marked0");
        assert_eq!(helper, "marked1", "the queued job ran on the first spare");
        assert!(pool.metrics().detected_total() >= 1);
        spin_until(|| pool.metrics().detected_blocked() == 0);
        spin_until(|| pool.metrics().spare_threads() == 0);
    });
}

/// A marked call that computes (100 ms on the CPU) is not compensated: the
/// job queued behind it starts after it returns.
#[test]
fn a_marked_call_on_the_cpu_gets_no_helper() {
    a_computing_job_gets_no_helper("markbusy", true);
}

/// A marked call that panics after it was compensated: the panic reaches
/// the Task, the flag is taken back (the helper leaves), and the worker
/// goes on running jobs on its own thread.
#[test]
fn a_marked_call_that_panics_takes_its_flag_back() {
    common::silence_expected_panics();
    timed(|| {
        let pool = named_pool(1, "markpanic")
            .blocking_keep_alive(Duration::from_millis(20))
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (ran_tx, ran_rx) = mpsc::channel::<()>();
        let caller = pool.spawn(move || {
            started_tx.send(()).unwrap();
            offload::blocking(|| {
                ran_rx.recv().unwrap();
                panic!("{}", common::EXPECTED);
            })
        });
        started_rx.recv().unwrap();
        let queued = pool.spawn(move || ran_tx.send(()).unwrap());
        queued.wait().unwrap();
        assert!(caller.wait().unwrap_err().is_panic());
        spin_until(|| pool.metrics().detected_blocked() == 0);
        spin_until(|| pool.metrics().spare_threads() == 0);
        assert_eq!(pool.spawn(thread_name).wait().unwrap(), "markpanic0");
    });
}

/// Inside a marked call, a job that waits for a `spawn_blocking` job gets
/// its answer at `max_blocking_threads(1)`: helpers and blocking jobs are
/// counted apart.
#[test]
fn a_marked_call_that_waits_for_spawn_blocking_completes_at_a_cap_of_one() {
    timed(|| {
        let pool = named_pool(1, "markcap")
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let waiter = pool.spawn(move || {
            started_tx.send(()).unwrap();
            offload::blocking(|| {
                go_rx.recv().unwrap();
                offload::spawn_blocking(|| 42).wait().unwrap()
            })
        });
        started_rx.recv().unwrap();
        let behind = pool.spawn(move || {
            go_tx.send(()).unwrap();
            thread_name()
        });
        assert_eq!(behind.wait().unwrap(), "markcap1", "run by a helper");
        assert_eq!(waiter.wait().unwrap(), 42);
    });
}

/// A place whose last marked call lasted 10 ms or more and blocked lends
/// its place at once on the next (a long call, a network round trip, is not
/// worth the detector's delay): the job queued behind it then runs on a
/// stand-in, and the pool counts the worker as away (`Metrics::blocked`).
/// After a long call that the detector read on the CPU, the next call is
/// marked as before: a helper runs that job, and nothing is away. A job
/// waits behind the first call too, so that the detector reads it.
#[test]
fn after_a_long_blocked_call_the_next_one_lends_its_place_at_once() {
    assert_eq!(
        next_call_after(|| thread::sleep(Duration::from_millis(12))),
        1
    );
}

#[test]
fn after_a_long_computing_call_the_next_one_is_marked() {
    // Long enough for the detector to read it on a loaded machine.
    let compute = || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::spin_loop();
        }
    };
    assert_eq!(next_call_after(compute), 0);
}

/// On a pool of one, a job makes the marked call `first` with a job
/// waiting behind it, then (once one more waits) a call that waits for
/// that one; returns how many threads it saw away from their place.
fn next_call_after(first: fn()) -> usize {
    timed(move || {
        let pool = named_pool(1, "marklong").build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (ran_tx, ran_rx) = mpsc::channel::<usize>();
        let [waiting, queued] = [(); 2].map(|()| Arc::new(AtomicBool::new(false)));
        let caller = {
            let (waiting, queued) = (Arc::clone(&waiting), Arc::clone(&queued));
            pool.spawn(move || {
                started_tx.send(()).unwrap();
                // On the CPU (never taken for blocked) until a job waits.
                spin_until(|| waiting.load(Ordering::Acquire));
                offload::blocking(first);
                started_tx.send(()).unwrap();
                spin_until(|| queued.load(Ordering::Acquire));
                offload::blocking(|| ran_rx.recv().unwrap())
            })
        };
        started_rx.recv().unwrap();
        let filler = pool.spawn(|| ());
        waiting.store(true, Ordering::Release);
        started_rx.recv().unwrap();
        let behind = {
            let pool2 = pool.clone();
            pool.spawn(move || ran_tx.send(pool2.metrics().blocked()).unwrap())
        };
        queued.store(true, Ordering::Release);
        let away = caller.wait().unwrap();
        filler.wait().unwrap();
        behind.wait().unwrap();
        away
    })
}

/// A call nested in a marked call just runs, even on a place whose last
/// call was long and with a job queued by then: the outer call stays
/// marked (a helper runs the job), the place is never lent, and the
/// thread is the worker's own throughout.
#[test]
fn a_call_nested_in_a_marked_call_just_runs() {
    timed(|| {
        let pool = named_pool(1, "marknest").build().unwrap();
        let seen = {
            let pool2 = pool.clone();
            pool.spawn(move || {
                // Long and off the CPU: the next call would lend at once.
                offload::blocking(|| thread::sleep(Duration::from_millis(12)));
                // Nothing waits now: the call is marked.
                offload::blocking(|| {
                    let (tx, rx) = mpsc::channel::<usize>();
                    let pool3 = pool2.clone();
                    let behind = pool2.spawn(move || tx.send(pool3.metrics().blocked()).unwrap());
                    let away = offload::blocking(|| rx.recv().unwrap());
                    behind.wait().unwrap();
                    (away, thread_name())
                })
            })
        };
        assert_eq!(seen.wait().unwrap(), (0, "marknest0".to_owned()));
    });
}
