//! Models of the priority lanes (src/sched/lanes.rs) with a real
//! `offload::Pool` of one worker: a job pushed on the `High` lane while the
//! worker is deciding between lanes (taking the `Low` job, spinning, or
//! falling asleep) is not lost, and a worker asleep is woken for it.
//!
//! The lanes' count is a Relaxed hint read before the `High` and `Low`
//! queues are looked at; the sleep protocol's re-check reads it after its
//! fence, and a pusher counts the job before its own fence. The mutant
//! `lane_counted_after_wake` counts it only after the fence and the
//! wake-up: a worker that was spinning when the pusher looked (so the
//! pusher woke nobody) then re-checks, reads a zero count, and parks with
//! the `High` job queued; the model's `wait` never returns (a loom
//! deadlock).

#![cfg(loom)]

mod common;

use common::{checked, model_bounded};
use offload::{Pool, Priority};

/// A `Low` job, then a `High` one, from outside a one-worker pool: both
/// run, each once, whatever the worker was doing when the `High` job
/// arrived (taking the `Low` job with both lanes busy, spinning, or falling
/// asleep); the worker exits on shutdown.
///
/// Bound 1: at 2 this model takes over a million executions (about four
/// minutes on 2 cores). The lost wake-up is the next model's.
#[test]
fn high_job_pushed_while_a_worker_decides_between_lanes() {
    model_bounded(
        "high_job_pushed_while_a_worker_decides_between_lanes",
        Some(1),
        || {
            let pool = Pool::builder().threads(1).build().unwrap();
            let low = pool
                .with_priority(Priority::Low)
                .spawn(|| checked("low", || 1));
            let high = pool
                .with_priority(Priority::High)
                .spawn(|| checked("high", || 2));
            assert_eq!(high.wait().expect("the High job ran"), 2);
            assert_eq!(low.wait().expect("the Low job ran"), 1);
            pool.shutdown();
        },
    );
}

/// A `High` job pushed from another thread while the one worker looks for
/// work, spins or falls asleep: it runs (a worker asleep is woken for it,
/// or one about to sleep sees it), and the worker exits on shutdown. The
/// job comes from a thread of its own so that the schedule that loses it
/// under the mutant (the worker preempted while it spins, the pusher
/// preempted between its look at the spinners and its count) costs two
/// preemptions, not three.
#[test]
fn high_job_pushed_while_the_worker_falls_asleep_wakes_it() {
    model_bounded(
        "high_job_pushed_while_the_worker_falls_asleep_wakes_it",
        Some(2),
        || {
            let pool = Pool::builder().threads(1).build().unwrap();
            let high = pool.with_priority(Priority::High);
            let pusher = loom::thread::spawn(move || high.spawn(|| checked("high", || 2)));
            let task = pusher.join().unwrap();
            assert_eq!(task.wait().expect("the High job ran"), 2);
            pool.shutdown();
        },
    );
}
