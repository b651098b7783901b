//! Models of the injector (src/sched/injector.rs), the intrusive queue of jobs
//! submitted from outside the pool, driven through `loom_api::Injector`
//! with real handoff cells as the jobs.
//!
//! In every execution: each pushed job is popped exactly once (its Task
//! resolves to its value, its captured value is dropped once); one
//! producer's jobs come out in the order it pushed them; no access to a
//! job's contents or to the consumer's position races (loom `UnsafeCell`
//! tracking); and `is_empty()` never hides a pushed job from a thread that
//! is about to sleep.

#![cfg(loom)]

mod common;

use std::future::Future;
use std::sync::{Arc as StdArc, Mutex as StdMutex};
use std::task::{Context, Poll, Waker};

use common::{checked, model, DropCount};
use loom::sync::atomic::{fence, AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{task, Injector, Job};
use offload::Task;

/// The order in which jobs ran.
type RunLog = StdArc<StdMutex<Vec<u32>>>;

/// A job that logs `id` when it runs and owns a counted value.
fn job(id: u32, log: &RunLog, drops: &DropCount) -> (Job, Task<u32>) {
    let log = log.clone();
    let captured = drops.value(id);
    task(move || {
        checked("job", || {
            log.lock().unwrap().push(id);
            captured.payload
        })
    })
}

/// The output of a Task whose job has run.
fn output(mut task: Task<u32>) -> u32 {
    let mut cx = Context::from_waker(Waker::noop());
    match std::pin::Pin::new(&mut task).poll(&mut cx) {
        Poll::Ready(output) => output.expect("the job ran"),
        Poll::Pending => panic!("a job was never run"),
    }
}

/// Runs every job left on the injector, as a drain does; returns how many.
fn run_all(injector: &Injector) -> usize {
    let mut ran = 0;
    while let Some(job) = injector.pop() {
        job.run();
        ran += 1;
    }
    ran
}

/// Two producers (one pushing two jobs) race with a worker taking batches:
/// every job is taken once, and the first producer's two in order. The
/// consumer reads each job's contents through the producers' links, so a
/// link without Release is a causality violation.
#[test]
fn injector_pushes_race_a_worker() {
    model("injector_pushes_race_a_worker", || {
        let injector = Arc::new(Injector::new());
        let log = RunLog::default();
        let drops = DropCount::new();

        let producer = {
            let injector = injector.clone();
            let (log, drops) = (log.clone(), drops.clone());
            thread::spawn(move || {
                let (first, first_task) = job(1, &log, &drops);
                let (second, second_task) = job(2, &log, &drops);
                injector.push(first);
                injector.push(second);
                (first_task, second_task)
            })
        };
        let (third, third_task) = job(3, &log, &drops);
        injector.push(third);

        let mut taken = 0;
        while taken < 3 {
            let batch = injector.try_pop_batch();
            if batch.is_empty() {
                thread::yield_now();
            }
            for job in batch {
                job.run();
                taken += 1;
            }
        }
        assert!(injector.is_empty());
        let (first_task, second_task) = producer.join().unwrap();
        assert_eq!(
            [output(first_task), output(second_task), output(third_task)],
            [1, 2, 3]
        );
        let order = log.lock().unwrap().clone();
        let position = |id| order.iter().position(|&ran| ran == id).unwrap();
        assert!(position(1) < position(2), "FIFO broken: {order:?}");
        assert_eq!(drops.get(), 3);
    });
}

/// A worker's batch and a drain consume at the same time: they take turns
/// at the consumer's position (an unlock without Release is a race on it),
/// and each job is taken once.
#[test]
fn injector_consumers_take_turns() {
    model("injector_consumers_take_turns", || {
        let injector = Arc::new(Injector::new());
        let log = RunLog::default();
        let drops = DropCount::new();
        let (first, first_task) = job(1, &log, &drops);
        let (second, second_task) = job(2, &log, &drops);
        injector.push(first);
        injector.push(second);

        let worker = {
            let injector = injector.clone();
            thread::spawn(move || {
                for job in injector.try_pop_batch() {
                    job.run();
                }
            })
        };
        if let Some(job) = injector.pop() {
            job.run();
        }
        worker.join().unwrap();
        run_all(&injector);
        assert!(injector.is_empty());
        assert_eq!([output(first_task), output(second_task)], [1, 2]);
        assert_eq!(log.lock().unwrap().len(), 2);
        assert_eq!(drops.get(), 2);
    });
}

/// The sleep protocol's use of `is_empty`: a worker takes one job (as a
/// worker whose batch is full), announces that it sleeps, `fence(SeqCst)`,
/// re-checks `is_empty`; a producer pushes, `fence(SeqCst)`, looks for a
/// sleeper. One of them must see the other, or the second job is left
/// behind a sleeping worker. With Vyukov's original stub push (a swap),
/// the stub can land behind a push still being linked, and `is_empty`
/// reports an empty queue that holds that job.
#[test]
fn injector_empty_check_sees_every_push() {
    model("injector_empty_check_sees_every_push", || {
        let injector = Arc::new(Injector::new());
        let log = RunLog::default();
        let drops = DropCount::new();
        let sleeping = Arc::new(AtomicBool::new(false));
        let (first, first_task) = job(1, &log, &drops);
        injector.push(first);

        let worker = {
            let (injector, sleeping) = (injector.clone(), sleeping.clone());
            thread::spawn(move || {
                let first = injector.pop().expect("the first job was pushed");
                first.run();
                // Relaxed: ordered by the fence, as in src/sched/sleep.rs.
                sleeping.store(true, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                !injector.is_empty()
            })
        };
        let (second, second_task) = job(2, &log, &drops);
        injector.push(second);
        fence(Ordering::SeqCst);
        let saw_sleeper = sleeping.load(Ordering::Relaxed);

        let saw_work = worker.join().unwrap();
        assert!(
            saw_sleeper || saw_work,
            "a job was left behind a sleeping worker"
        );
        run_all(&injector);
        assert_eq!([output(first_task), output(second_task)], [1, 2]);
        assert_eq!(drops.get(), 2);
    });
}

/// `shutdown_now`'s sweep takes a job that is not a Task's (a join half)
/// and pushes it again while a producer pushes: the job's link still
/// points at the job that followed it, so `push_again` must clear it, or
/// the queue runs into a cycle and a job is taken twice (mutant
/// `push_again_keeps_link`). Every job is taken exactly once.
#[test]
fn injector_push_again_races_a_push() {
    model("injector_push_again_races_a_push", || {
        let injector = Arc::new(Injector::new());
        let log = RunLog::default();
        let drops = DropCount::new();
        let (first, first_task) = job(1, &log, &drops);
        let (second, second_task) = job(2, &log, &drops);
        injector.push(first);
        injector.push(second);

        let producer = {
            let (injector, log, drops) = (injector.clone(), log.clone(), drops.clone());
            thread::spawn(move || {
                let (third, third_task) = job(3, &log, &drops);
                injector.push(third);
                third_task
            })
        };
        let taken = injector.pop().expect("two jobs were pushed");
        injector.push_again(taken);
        let third_task = producer.join().unwrap();
        assert_eq!(run_all(&injector), 3);
        assert!(injector.is_empty());
        assert_eq!(
            [output(first_task), output(second_task), output(third_task)],
            [1, 2, 3]
        );
        assert_eq!(log.lock().unwrap().len(), 3);
        assert_eq!(drops.get(), 3);
    });
}
