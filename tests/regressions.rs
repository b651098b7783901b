//! Regression tests, each named after what it guards.

mod common;

use std::panic;
use std::sync::{mpsc, Mutex};
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

/// A panic while `Builder::build` starts the threads — from the user's
/// `thread_name` callback, or from std itself on a name with a NUL byte —
/// unwound out of `build` and left the workers already started running for
/// ever: no handle existed to shut them down, so their `on_thread_stop`
/// never ran and their threads never ended. `build` must stop them, as it
/// does when a thread fails to start, before the panic goes on.
///
/// (std prints its own panic message for the NUL byte.)
#[test]
fn panic_while_building_stops_the_workers_already_started() {
    common::silence_expected_panics();
    common::timed(|| {
        for nul_byte in [false, true] {
            let (tx, rx) = mpsc::channel();
            let tx = Mutex::new(tx);
            let result = panic::catch_unwind(|| {
                Pool::builder()
                    .threads(3)
                    .thread_name(move |i| match i {
                        0 => "started".to_owned(),
                        _ if nul_byte => "nul\0byte".to_owned(),
                        _ => panic!("{}: thread_name", common::EXPECTED),
                    })
                    .on_thread_stop(move |i| tx.lock().unwrap().send(i).unwrap())
                    .build()
            });
            assert!(result.is_err(), "build returned");
            // Worker 0 had started: it was stopped before the panic went on.
            let stopped: Vec<usize> = rx.try_iter().collect();
            assert_eq!(stopped, [0], "NUL byte: {nul_byte}");
        }
    });
}

/// A worker back from a job took a batch of injected jobs into
/// its own deque without counting as a spinner; a worker falling asleep
/// while the batch was in no queue (between the injector and the taker's
/// deque) missed it, and nobody woke it. J2 then waited behind J1 on the
/// taker while the other worker slept: here J1 waits for J2 through a std
/// channel, so the pair would hang until the timeout.
///
/// The race needs the second worker's last look to fall in a window of a
/// few instructions, so no round is sure to hit it; the loom model
/// `batch_landing_wakes_a_sleeper` (loom-tests/tests/sleep.rs) checks it
/// exhaustively. Here a short job S keeps one worker busy at a varying
/// moment while the other goes idle, round after round; with the fix, no
/// round can time out.
#[test]
fn a_batch_taken_after_a_job_is_handed_to_a_sleeper() {
    common::timed(|| {
        let pool = Pool::builder().threads(2).build().unwrap();
        for round in 0..500u32 {
            let short = pool.spawn(move || common::spin_work(u64::from(round % 8) * 200));
            let (tx, rx) = mpsc::channel::<()>();
            let j1 = pool.spawn(move || rx.recv_timeout(Duration::from_secs(10)).is_ok());
            let j2 = pool.spawn(move || tx.send(()).unwrap());
            assert!(
                j1.wait().unwrap(),
                "round {round}: J2 stayed behind J1 while the other worker slept"
            );
            j2.wait().unwrap();
            short.wait().unwrap();
        }
        pool.shutdown();
    });
}
