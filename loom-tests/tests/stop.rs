//! A model of `offload::stop_if_cancelled` (src/flow/cancel.rs) racing
//! `Task::cancel` and the job's completion, on a real handoff cell run
//! through `loom_api`.
//!
//! In every execution the Task resolves to the job's value (the job
//! finished first, or looked before the cancel) or to a cancelled
//! `JoinError` (never a panic); and a look that comes after `cancel`
//! returned (ordered by a flag the canceller raises) always stops the job.

#![cfg(loom)]

mod common;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use common::model;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::task;

/// A job looks once while the main thread cancels its Task; then, if it
/// sees the canceller's flag (raised after `cancel` returned), it looks
/// again, which must stop it. Without the Task's bit in the job's scope
/// (mutant `stop_ignores_task`), the second look runs on and the job
/// returns 2.
#[test]
fn stop_if_cancelled_races_cancel_and_completion() {
    model("stop_if_cancelled_races_cancel_and_completion", || {
        let cancel_returned = Arc::new(AtomicBool::new(false));
        let seen = cancel_returned.clone();
        // Not under `checked`: the stop's unwind is meant to be caught by
        // the job side, and the job touches no loom cell.
        let (job, mut task) = task(move || {
            // Races the cancel: either outcome is correct.
            offload::stop_if_cancelled();
            // Acquire: pairs with the Release below, so the cancel's
            // write to the cell happens before the next look.
            if seen.load(Ordering::Acquire) {
                offload::stop_if_cancelled();
                return 2;
            }
            1
        });
        let worker = thread::spawn(move || job.run());
        task.cancel();
        cancel_returned.store(true, Ordering::Release);
        worker.join().unwrap();

        let mut cx = Context::from_waker(Waker::noop());
        match std::pin::Pin::new(&mut task).poll(&mut cx) {
            Poll::Ready(Ok(value)) => assert_eq!(value, 1, "the job ran on after its cancel"),
            Poll::Ready(Err(err)) => {
                assert!(err.is_cancelled() && !err.is_panic(), "{err:?}");
            }
            Poll::Pending => panic!("the Task never resolved"),
        }
    });
}
