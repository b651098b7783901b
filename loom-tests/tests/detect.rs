//! Models of blocking detection (src/blocking/runner.rs, src/sched/sleep.rs):
//! the flag protocol that counts blocked runners and helpers, and the
//! detector's dormancy, which a notifier that finds nobody to wake must end.

#![cfg(loom)]

mod common;

use common::{model, TrackedWaker};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{Compensation, HeldWakeUps, Runner, Sleep};

/// 11(a) The detector flags a runner blocked, starts a helper for it, and
/// later reads it running again and clears the flag, while the runner's
/// job ends (its thread clears its own flag) and the helper, finding no
/// job, leaves. Whoever races, both counts come back to zero: exactly one
/// clear of a set flag takes its count back, and a helper leaves once.
/// The mutant `unflag_load_then_store` clears with a load and a store, so
/// the runner and the detector can both take the count back (it wraps).
#[test]
fn detected_runner_and_helper_counts_return_to_zero() {
    model("detected_runner_and_helper_counts_return_to_zero", || {
        let compensation = Compensation::new();
        let runner = Runner::new();

        let detector = {
            let (compensation, runner) = (compensation.clone(), runner.clone());
            thread::spawn(move || {
                compensation.flag(&runner);
                let helper = compensation.add_helper().then(|| {
                    let compensation = compensation.clone();
                    thread::spawn(move || {
                        // A helper between jobs that finds none.
                        if compensation.helper_stays() {
                            compensation.remove_helper();
                        }
                    })
                });
                // A later look reads the runner's thread on a CPU.
                compensation.unflag(&runner);
                helper
            })
        };
        runner.job_ended(&compensation);

        if let Some(helper) = detector.join().unwrap() {
            helper.join().unwrap();
        }
        assert_eq!(compensation.blocked(), 0, "{compensation:?}");
        assert_eq!(compensation.helpers(), 0, "{compensation:?}");
    });
}

/// 11(b) The detector falls dormant (no timer) while a job is pushed by a
/// thread that finds no worker to wake (the only worker is busy, not
/// listed as a sleeper). Either the detector's look after its flag and
/// fence sees the job, or the notifier, after its own fence, sees the flag
/// and unparks it: a dormant detector left parked is a loom deadlock. The
/// mutant `dormancy_no_fence` drops the detector's fence.
#[test]
fn dormant_detector_is_woken_by_a_push_that_wakes_nobody() {
    model(
        "dormant_detector_is_woken_by_a_push_that_wakes_nobody",
        || {
            let sleep = Arc::new(Sleep::new(1));
            let queued = Arc::new(AtomicBool::new(false));

            let pusher = {
                let (sleep, queued) = (Arc::clone(&sleep), Arc::clone(&queued));
                thread::spawn(move || {
                    // Relaxed: the push; `notify_one`'s fence orders it.
                    queued.store(true, Ordering::Relaxed);
                    sleep.notify_one();
                })
            };
            // Relaxed: ordered by the dormancy's fence (the queues' emptiness
            // checks are as weak).
            sleep.detector_sleep_unless(|| queued.load(Ordering::Relaxed));
            pusher.join().unwrap();
        },
    );
}

/// 11(c) A worker holds a completion's wake-up back (its pool is
/// backlogged) while the detector falls dormant: either the detector's look
/// after its flag and fence sees the held wake-up (and wakes it at its
/// tick), or the worker, after its own fence, sees the flag and unparks it.
/// The wake-up is woken exactly once. The mutant `deferred_no_fence` drops
/// the worker's fence: the detector sleeps for good with a wake-up held (a
/// deadlock).
#[test]
fn held_back_wake_up_reaches_the_dormant_detector() {
    model("held_back_wake_up_reaches_the_dormant_detector", || {
        let sleep = Arc::new(Sleep::new(1));
        let held = Arc::new(HeldWakeUps::new());
        let family = TrackedWaker::new();

        let worker = {
            let (sleep, held, family) = (Arc::clone(&sleep), Arc::clone(&held), family.clone());
            thread::spawn(move || held.hold(family.waker(), &sleep))
        };
        // The detector: dormant unless it sees a held wake-up; awake, it
        // wakes what is held at its tick.
        sleep.detector_sleep_unless(|| held.is_pending());
        held.wake_all();
        worker.join().unwrap();
        assert_eq!(family.wakes(), 1);
    });
}

/// 11(d) A marked call (`offload::blocking` in a pool with a detector)
/// returns while the detector, which read its thread blocked in it, flags
/// it. Either the thread's look at its flag after its fence sees the flag
/// and clears it, or the detector's re-check after its own fence sees the
/// call ended and takes the flag back: the count returns to zero, and no
/// flag is left on a thread that runs again (it would keep a helper
/// running beside it). The mutant `marked_end_no_fence` drops the thread's
/// fence: both looks can then miss the other's store.
#[test]
fn a_marked_call_that_ends_while_flagged_leaves_no_flag() {
    model(
        "a_marked_call_that_ends_while_flagged_leaves_no_flag",
        || {
            let compensation = Compensation::new();
            let runner = Runner::new();
            runner.mark(1);
            // What the detector read at its look: the call, due and blocked.
            let token = runner.marked_token();

            let detector = {
                let (compensation, runner) = (compensation.clone(), runner.clone());
                thread::spawn(move || {
                    compensation.flag_marked(&runner, token);
                })
            };
            runner.marked_call_ended(&compensation);

            detector.join().unwrap();
            assert_eq!(compensation.blocked(), 0, "{compensation:?}");
        },
    );
}
