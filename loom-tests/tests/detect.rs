//! Models of blocking detection (src/blocking/runner.rs, src/sched/sleep.rs):
//! the flag protocol that counts blocked runners and helpers, and the
//! detector's dormancy, which a notifier that finds nobody to wake must end.

#![cfg(loom)]

mod common;

use common::model;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{Compensation, Runner, Sleep};

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
