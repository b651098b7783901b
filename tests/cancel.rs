//! Dropping a Task cancels its job if it has not started: the job never runs
//! and its closure is dropped exactly once. A job already running finishes
//! and its output is dropped. `detach` lets the job run.

mod common;

use std::sync::mpsc;

use common::{pool, timed, Counter, DropCounter, Gate};

const N: usize = 1000;

#[test]
fn dropped_tasks_never_run_and_their_closures_drop_once() {
    timed(|| {
        let pool = pool(1, "cancel");
        let gate = Gate::hold(&pool);
        let runs = Counter::new();
        let closures = DropCounter::new();
        let outputs = DropCounter::new();
        for _ in 0..N {
            let runs = runs.clone();
            let captured = closures.track();
            let outputs = outputs.clone();
            let task = pool.spawn(move || {
                runs.incr();
                let _keep = &captured;
                outputs.track()
            });
            drop(task);
        }
        // Cancelling takes the closure at once, on the dropping thread.
        assert_eq!(closures.drops(), N);
        gate.release();
        // A job queued after them has run: so have (or have been skipped)
        // every one before it; shutdown then proves nothing is left.
        assert_eq!(pool.spawn(|| 1).wait().unwrap(), 1);
        pool.shutdown();
        assert_eq!(runs.get(), 0, "a cancelled job ran");
        assert_eq!(closures.drops(), N, "a closure was dropped twice");
        assert_eq!(outputs.created(), 0);
    });
}

#[test]
fn some_dropped_some_kept() {
    timed(|| {
        let pool = pool(1, "mixed");
        let gate = Gate::hold(&pool);
        let runs = Counter::new();
        let closures = DropCounter::new();
        let mut kept = Vec::new();
        for i in 0..N {
            let runs = runs.clone();
            let captured = closures.track_value(i as u64);
            let task = pool.spawn(move || {
                runs.incr();
                let captured = captured; // capture the whole value, not the field
                captured.value
            });
            if i % 2 == 0 {
                kept.push((i as u64, task));
            }
        }
        assert_eq!(closures.drops(), N / 2);
        gate.release();
        for (i, task) in kept {
            assert_eq!(task.wait().unwrap(), i);
        }
        pool.shutdown();
        assert_eq!(runs.get(), N / 2);
        assert_eq!(closures.drops(), N);
    });
}

#[test]
fn running_job_finishes_when_its_task_is_dropped() {
    timed(|| {
        let pool = pool(1, "running");
        let outputs = DropCounter::new();
        let closures = DropCounter::new();
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (finished_tx, finished_rx) = mpsc::channel();
        let out = outputs.clone();
        let captured = closures.track();
        let task = pool.spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop(captured);
            finished_tx.send(()).unwrap();
            out.track()
        });
        started_rx.recv().unwrap();
        assert!(format!("{task:?}").contains("running"));
        drop(task);
        // Not cancelled: it runs on.
        assert_eq!(closures.drops(), 0);
        go_tx.send(()).unwrap();
        finished_rx.recv().expect("the job finished");
        pool.shutdown();
        assert_eq!(closures.drops(), 1);
        assert_eq!(outputs.created(), 1);
        assert_eq!(
            outputs.drops(),
            1,
            "the output of a dropped Task is dropped once"
        );
    });
}

#[test]
fn detach_lets_queued_jobs_run() {
    timed(|| {
        let pool = pool(1, "detach");
        let gate = Gate::hold(&pool);
        let runs = Counter::new();
        let outputs = DropCounter::new();
        let (tx, rx) = mpsc::channel();
        for i in 0..N {
            let runs = runs.clone();
            let outputs = outputs.clone();
            let tx = tx.clone();
            pool.spawn(move || {
                runs.incr();
                tx.send(i).unwrap();
                outputs.track()
            })
            .detach();
        }
        drop(tx);
        gate.release();
        let mut seen: Vec<usize> = rx.iter().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..N).collect::<Vec<_>>());
        pool.shutdown();
        assert_eq!(runs.get(), N);
        assert_eq!(outputs.created(), N);
        assert_eq!(outputs.drops(), N);
    });
}

#[test]
fn is_finished_tracks_completion() {
    timed(|| {
        let pool = pool(1, "finished");
        let gate = Gate::hold(&pool);
        let task = pool.spawn(|| 5);
        assert!(!task.is_finished());
        assert!(format!("{task:?}").contains("queued"));
        gate.release();
        // The pool is FIFO from outside: a later job's completion implies
        // this one's.
        pool.spawn(|| ()).wait().unwrap();
        assert!(task.is_finished());
        assert_eq!(task.wait().unwrap(), 5);
    });
}

#[test]
fn is_finished_for_a_panicked_and_a_cancelled_job() {
    common::silence_expected_panics();
    timed(|| {
        let pool = pool(1, "finished-err");
        let panicked = pool.spawn(|| panic!("expected panic"));
        pool.spawn(|| ()).wait().unwrap();
        assert!(panicked.is_finished());
        assert!(panicked.wait().unwrap_err().is_panic());

        let gate = Gate::hold(&pool);
        let queued = pool.spawn(|| ());
        let pool2 = pool.clone();
        let shutdown = std::thread::spawn(move || pool2.shutdown_now());
        common::spin_until(|| common::is_terminating(&pool));
        gate.release();
        shutdown.join().unwrap();
        assert!(queued.is_finished());
        assert!(queued.wait().unwrap_err().is_cancelled());
        // After shutdown, a spawn is finished (cancelled) at once.
        assert!(pool.spawn(|| ()).is_finished());
    });
}

#[test]
fn dropping_tasks_from_many_threads_while_workers_run() {
    // Races the cancel against the claim: every job either ran (and its
    // output was dropped) or was cancelled (its closure dropped), never both,
    // never neither.
    timed(|| {
        let pool = pool(2, "race");
        let runs = Counter::new();
        let closures = DropCounter::new();
        let outputs = DropCounter::new();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..5000 {
                        let runs = runs.clone();
                        let captured = closures.track();
                        let outputs = outputs.clone();
                        drop(pool.spawn(move || {
                            runs.incr();
                            drop(captured);
                            outputs.track()
                        }));
                    }
                });
            }
        });
        pool.shutdown();
        assert_eq!(closures.drops(), 10_000);
        assert_eq!(outputs.created(), runs.get());
        assert_eq!(outputs.drops(), runs.get());
    });
}
