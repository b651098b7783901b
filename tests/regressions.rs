//! Regression tests, each named after what it guards.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use offload::Pool;

/// A worker woken by `notify_one` for a new job, that wakes inside
/// `wait_until` (here `Task::wait`) and finds its own condition already
/// true, must pass the wake-up on instead of swallowing it; otherwise the
/// job sits queued while another worker sleeps (and the pool deadlocks if
/// the waiter then needs that job).
///
/// The two short sleeps only give A's workers time to fall asleep, which
/// makes the race likely; they synchronise nothing, and the test cannot fail
/// because of them when the protocol is right.
#[test]
fn woken_waiter_passes_on_a_job_wake_up() {
    common::timed(|| {
        for round in 0..20 {
            let a = Pool::builder().threads(2).build().unwrap();
            let b = Pool::builder().threads(1).build().unwrap();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let (j_tx, j_rx) = mpsc::channel::<()>();
            let a2 = a.clone();
            // On B: once released, queue job J on A (the notification pops
            // P's worker, the last to fall asleep), then complete (waking
            // that worker again: a no-op, it already has the token).
            let b_task = b.spawn(move || {
                go_rx.recv().unwrap();
                a2.spawn(move || {
                    let _ = j_tx.send(());
                })
                .detach();
                42
            });
            std::thread::sleep(Duration::from_millis(2));
            // P on A: waits for B's Task, then needs J to run on A's other
            // worker.
            let (res_tx, res_rx) = mpsc::channel();
            a.spawn(move || {
                let v = b_task.wait().unwrap();
                let j_ran = j_rx.recv_timeout(Duration::from_secs(10)).is_ok();
                res_tx.send((v, j_ran)).unwrap();
            })
            .detach();
            std::thread::sleep(Duration::from_millis(2));
            go_tx.send(()).unwrap();
            let (v, j_ran) = res_rx.recv().unwrap();
            assert_eq!(v, 42);
            assert!(
                j_ran,
                "round {round}: J stayed queued while A's other worker slept"
            );
        }
    });
}
