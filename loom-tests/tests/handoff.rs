//! Models of the handoff cell between a job and its `Task` (src/task/handoff.rs),
//! driven through `offload::loom_api::task`: the `Job` runs (or is
//! cancelled) on a loom thread while the task side polls, waits, detaches or
//! drops the `Task` on another.
//!
//! In every execution: the closure runs at most once and is dropped exactly
//! once; the output is delivered or dropped exactly once; no value, waker or
//! cell leaks (each holds a loom `Arc`); no access to the stage or the waker
//! slot races (loom `UnsafeCell` tracking); no wake-up is lost (a lost one
//! leaves a thread parked, which loom reports as a deadlock).

#![cfg(loom)]

mod common;

use std::task::Poll;

use common::{block_on, checked, model, poll_once, Counted, DropCount, TrackedWaker};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{task, Job};
use offload::Task;

/// A job whose closure owns a counted value and returns another one;
/// `ran` records whether the closure was called.
struct Fixture {
    closure_drops: DropCount,
    output_drops: DropCount,
    ran: Arc<AtomicBool>,
}

impl Fixture {
    fn new() -> (Self, Job, Task<Counted>) {
        let fixture = Fixture {
            closure_drops: DropCount::new(),
            output_drops: DropCount::new(),
            ran: Arc::new(AtomicBool::new(false)),
        };
        let captured = fixture.closure_drops.value(1);
        let output = fixture.output_drops.clone();
        let ran = fixture.ran.clone();
        let (job, task) = task(move || {
            checked("closure", || {
                ran.store(true, Ordering::Relaxed);
                drop(captured);
                output.value(42)
            })
        });
        (fixture, job, task)
    }

    /// Whether the closure ran (call after joining every thread).
    fn ran(&self) -> bool {
        self.ran.load(Ordering::Relaxed)
    }

    /// The end-of-model accounting (after joining every thread).
    fn check(&self, expect_ran: Option<bool>) {
        let ran = self.ran();
        if let Some(expected) = expect_ran {
            assert_eq!(ran, expected, "the closure ran (or not) unexpectedly");
        }
        assert_eq!(self.closure_drops.get(), 1, "closure dropped != once");
        assert_eq!(
            self.output_drops.get(),
            usize::from(ran),
            "output dropped != once per run"
        );
    }
}

/// 1(a) Completion racing with polls from two threads and two wakers: the
/// Task is polled once on the main thread with waker A, then moved to
/// another thread that drives it with waker B. Completion must wake whichever
/// waker is registered last (a lost wake leaves that thread parked: loom
/// reports a deadlock), and the waker slot is never read and written at once.
#[test]
fn completion_races_poll_with_new_waker() {
    model("completion_races_poll_with_new_waker", || {
        let (fx, job, mut task) = Fixture::new();
        let worker = thread::spawn(move || job.run());

        let waker_a = TrackedWaker::new();
        let first = poll_once(&mut task, &waker_a.waker());
        let output = match first {
            Poll::Ready(output) => output,
            Poll::Pending => {
                let waker_b = TrackedWaker::new();
                thread::spawn(move || block_on(&waker_b, task))
                    .join()
                    .unwrap()
            }
        };
        let output = output.expect("the job ran");
        assert_eq!(output.payload, 42);
        drop(output);
        worker.join().unwrap();
        fx.check(Some(true));
    });
}

/// 1(b) The Task dropped racing with the job (before it starts, while it
/// runs, after it completed): if the drop wins the race for the closure, the
/// closure never runs and is dropped once; otherwise the output is dropped
/// once, by whichever side sees the other gone.
#[test]
fn task_drop_races_job() {
    model("task_drop_races_job", || {
        let (fx, job, task) = Fixture::new();
        let worker = thread::spawn(move || job.run());
        drop(task);
        worker.join().unwrap();
        fx.check(None);
    });
}

/// 1(b) As above, but the Task registered a waker first: the waker slot is
/// then freed by whichever side releases the cell last, which must first
/// synchronise with the other side's release (the Acquire fence in
/// `release`); the waker clone's loom cell checks exactly that.
#[test]
fn task_drop_after_poll_races_job() {
    model("task_drop_after_poll_races_job", || {
        let (fx, job, mut task) = Fixture::new();
        let worker = thread::spawn(move || job.run());
        let wakers = TrackedWaker::new();
        let polled = poll_once(&mut task, &wakers.waker());
        if let Poll::Ready(output) = polled {
            assert_eq!(output.expect("the job ran").payload, 42);
        }
        drop(task);
        worker.join().unwrap();
        fx.check(None);
    });
}

/// 1(b) The Task dropped before the job starts: the closure is dropped at
/// once and never runs; the job then only releases its reference.
#[test]
fn task_drop_before_start() {
    model("task_drop_before_start", || {
        let (fx, job, task) = Fixture::new();
        drop(task);
        assert_eq!(fx.closure_drops.get(), 1, "closure not dropped by the Task");
        thread::spawn(move || job.run()).join().unwrap();
        fx.check(Some(false));
    });
}

/// 1(c) `detach` racing with completion: the closure always runs and its
/// output is dropped exactly once (by the worker, or by the detaching thread
/// if the job completed first).
#[test]
fn detach_races_completion() {
    model("detach_races_completion", || {
        let (fx, job, task) = Fixture::new();
        let worker = thread::spawn(move || job.run());
        task.detach();
        worker.join().unwrap();
        fx.check(Some(true));
    });
}

/// 1(d) `Task::wait` on one thread racing with completion on another: the
/// waiter (parked on its own parker, woken through the Task's waker) always
/// returns the output.
#[test]
fn wait_races_completion() {
    model("wait_races_completion", || {
        let (fx, job, task) = Fixture::new();
        let waiter = thread::spawn(move || task.wait());
        job.run();
        let output = waiter.join().unwrap().expect("the job ran");
        assert_eq!(output.payload, 42);
        drop(output);
        fx.check(Some(true));
    });
}

/// 1(d') The Task awaited (polled, then parked until its waker is woken) on
/// one thread while the job completes on another: the first poll's spin
/// (one look under loom, `crate::poll_spin`) that sees the output must have
/// acquired it, and a poll that misses must still be woken.
#[test]
fn await_races_completion() {
    model("await_races_completion", || {
        let (fx, job, task) = Fixture::new();
        let waiter = thread::spawn(move || block_on(&TrackedWaker::new(), task));
        job.run();
        let output = waiter.join().unwrap().expect("the job ran");
        assert_eq!(output.payload, 42);
        drop(output);
        fx.check(Some(true));
    });
}

/// 1(e) `Job::cancel` (a worker during `shutdown_now`) racing with the Task
/// being dropped: the closure never runs and is dropped exactly once, by
/// whichever side claims it.
#[test]
fn cancel_races_task_drop() {
    model("cancel_races_task_drop", || {
        let (fx, job, task) = Fixture::new();
        let worker = thread::spawn(move || job.cancel());
        drop(task);
        worker.join().unwrap();
        fx.check(Some(false));
    });
}

/// 1(e) `Job::cancel` racing with the Task being awaited: the Task resolves
/// to a cancelled `JoinError`, the closure never runs and is dropped once.
#[test]
fn cancel_races_poll() {
    model("cancel_races_poll", || {
        let (fx, job, task) = Fixture::new();
        let worker = thread::spawn(move || job.cancel());
        let wakers = TrackedWaker::new();
        let err = block_on(&wakers, task).expect_err("a cancelled job has no output");
        assert!(err.is_cancelled(), "expected cancelled, got {err:?}");
        worker.join().unwrap();
        fx.check(Some(false));
    });
}
