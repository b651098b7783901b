//! Models of flow control (src/flow/): the queue-slot count and its FIFO
//! line of waiters, cancellation of a job racing its start, and a timed
//! park racing an unpark (src/sched/parker.rs, used by `Task::wait_timeout`).
//!
//! In every execution: no more than `max` slots are taken by the takers
//! that check (`try_acquire`, a waiter); every slot comes back (the count
//! ends at zero); a waiter is never left asleep while a slot is free (a
//! lost wake-up leaves its thread parked, which loom reports as a
//! deadlock); a job that started sees its cancellation, and one that did
//! not start never runs.

#![cfg(loom)]

mod common;

use std::task::Poll;

use common::{block_on, checked, model, poll_once, TrackedWaker};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{task_with_slot, Parker, Slots};

/// 6(a) A job starting (its slot comes back) while a `reserve` waiter lines
/// up for the only slot: the waiter gets the slot (a release that misses
/// the line leaves it asleep: loom reports a deadlock), the count never
/// exceeds one, and it ends at zero.
#[test]
fn slot_release_wakes_a_reserve_waiter() {
    model("slot_release_wakes_a_reserve_waiter", || {
        let slots = Slots::new(1);
        let slot = slots.try_acquire().expect("a free slot");
        let (job, task) = task_with_slot(|| checked("job", || 7), slot);
        let worker = thread::spawn(move || job.run());

        let wakers = TrackedWaker::new();
        let granted = block_on(&wakers, slots.acquire()).expect("the line is open");
        assert_eq!(slots.held(), 1, "one slot, held by the waiter");
        drop(granted);

        worker.join().unwrap();
        assert_eq!(slots.held(), 0, "a slot leaked");
        drop(task);
    });
}

/// 6(b) `try_spawn` racing a job's start and a Task's cancel, with one
/// slot: whoever takes the free slot never pushes the count past one, the
/// cancelled job's slot and the started job's slot both come back, and the
/// count ends at zero whatever the order.
#[test]
fn try_acquire_races_start_and_cancel() {
    model("try_acquire_races_start_and_cancel", || {
        let slots = Slots::new(2);
        let (job_a, task_a) = task_with_slot(|| (), slots.try_acquire().expect("slot a"));
        let (job_b, task_b) = task_with_slot(|| (), slots.try_acquire().expect("slot b"));
        assert!(slots.try_acquire().is_none(), "two of two slots taken");

        let worker = thread::spawn(move || {
            job_a.run();
            job_b.run();
        });
        let submitter = {
            let slots = slots.clone();
            thread::spawn(move || {
                let taken = slots.try_acquire();
                if taken.is_some() {
                    assert!(slots.held() <= 2, "more slots taken than the bound");
                }
                taken
            })
        };
        task_b.cancel();
        let taken = submitter.join().unwrap();
        worker.join().unwrap();
        drop(taken);
        drop((task_a, task_b));
        assert_eq!(slots.held(), 0, "a slot leaked");
    });
}

/// 6(c) Two waiters and a release: FIFO hand-over under a race with a
/// waiter that gives up. The first in line gets the released slot unless
/// it left first; a granted slot whose waiter gives up passes on; nobody
/// sleeps while a slot is free, and the count ends at zero.
#[test]
fn waiter_gives_up_as_a_slot_is_granted() {
    model("waiter_gives_up_as_a_slot_is_granted", || {
        let slots = Slots::new(1);
        let held = slots.try_acquire().expect("a free slot");

        // The first waiter lines up, then gives up (drops its future),
        // possibly after it was granted the slot.
        let mut first = slots.acquire();
        let first_wakers = TrackedWaker::new();
        assert!(poll_once(&mut first, &first_wakers.waker()).is_pending());
        let second = {
            let slots = slots.clone();
            // Lines up behind the first (same thread: the order is fixed).
            let mut second = slots.acquire();
            let wakers = TrackedWaker::new();
            let waker = wakers.waker();
            assert!(poll_once(&mut second, &waker).is_pending());
            thread::spawn(move || {
                let granted = block_on(&wakers, second).expect("the line is open");
                drop(granted);
            })
        };
        let releaser = thread::spawn(move || drop(held));
        drop(first);

        releaser.join().unwrap();
        second.join().unwrap();
        assert_eq!(slots.held(), 0, "a slot leaked");
    });
}

/// 6(d) Cancel racing a job's start: a job that started is always told
/// (it waits until `cancel` returned, then must see `is_cancelled`), and a
/// job that did not start never runs (the Task resolves as cancelled).
#[test]
fn cancel_races_job_start() {
    model("cancel_races_job_start", || {
        let slots = Slots::new(1);
        let cancel_returned = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicBool::new(false));
        let (job, task) = {
            let cancel_returned = cancel_returned.clone();
            let ran = ran.clone();
            task_with_slot(
                move || {
                    ran.store(true, Ordering::Relaxed);
                    while !cancel_returned.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                    offload::is_cancelled()
                },
                slots.try_acquire().expect("a free slot"),
            )
        };
        let worker = thread::spawn(move || job.run());
        task.cancel();
        cancel_returned.store(true, Ordering::Release);
        worker.join().unwrap();

        let waker = TrackedWaker::new().waker();
        let mut task = task;
        match poll_once(&mut task, &waker) {
            Poll::Ready(Ok(saw_cancel)) => {
                assert!(ran.load(Ordering::Relaxed));
                assert!(saw_cancel, "a running job was not told of its cancel");
            }
            Poll::Ready(Err(err)) => {
                assert!(err.is_cancelled(), "expected cancelled, got {err:?}");
                assert!(!ran.load(Ordering::Relaxed), "a cancelled job ran");
            }
            Poll::Pending => panic!("the Task did not resolve"),
        }
        assert_eq!(slots.held(), 0, "a slot leaked");
    });
}

/// 6(e) A timed park that gives up racing an unpark: the token is never
/// lost. If the timed park did not consume it, the next `park` does
/// (a lost token leaves it parked: loom reports a deadlock).
#[test]
fn timed_park_races_unpark() {
    model("timed_park_races_unpark", || {
        let parker = Parker::new();
        let unparker = parker.clone();
        let thread = thread::spawn(move || unparker.unpark());
        if !parker.park_timed_out() {
            parker.park();
        }
        thread.join().unwrap();
    });
}

/// 8(f) A blocking wait on a worker steps out of the line while its
/// worker runs another job, which waits for a slot too (same thread). The
/// only slot comes back meanwhile: granted to the stepped-out waiter, it
/// goes on to the new one; the old waiter comes back to its place and gets
/// the slot when the new one frees it. A grant kept by a waiter that
/// cannot collect it leaves the thread asleep for ever (a loom deadlock).
#[test]
fn a_waiter_steps_out_while_its_worker_runs_a_job() {
    model("a_waiter_steps_out_while_its_worker_runs_a_job", || {
        let slots = Slots::new(1);
        let held = slots.try_acquire().expect("a free slot");
        let wakers = TrackedWaker::new();
        let mut outer = slots.acquire();
        assert!(poll_once(&mut outer, &wakers.waker()).is_pending());

        let releaser = thread::spawn(move || drop(held));
        // The worker runs a job, which waits for a slot itself.
        outer.step_out();
        let inner = block_on(&wakers, slots.acquire()).expect("the line is open");
        assert_eq!(slots.held(), 1, "one slot, held by the inner wait");
        drop(inner);
        outer.step_in();
        let outer = block_on(&wakers, outer).expect("the line is open");
        drop(outer);

        releaser.join().unwrap();
        assert_eq!(slots.held(), 0, "a slot leaked");
    });
}
