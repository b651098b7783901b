//! A panicking job resolves its Task to a JoinError carrying the payload, and
//! never takes a worker down: not even a payload or an output whose own
//! `Drop` panics, nor a waker that panics.

mod common;

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use common::{all_workers, pool, silence_expected_panics, timed, Counter, Gate, EXPECTED};
use offload::JoinError;

#[test]
fn str_payload() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(2, "str");
        let err = pool
            .spawn(|| -> u32 { panic!("expected panic: boom") })
            .wait()
            .unwrap_err();
        assert!(err.is_panic());
        assert!(!err.is_cancelled());
        assert_eq!(err.to_string(), "task panicked: expected panic: boom");
        assert_eq!(
            format!("{err:?}"),
            "JoinError::Panic(\"expected panic: boom\")"
        );
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"expected panic: boom")
        );
    });
}

#[test]
fn string_payload() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(2, "string");
        let n = 17;
        let err = pollster::block_on(pool.spawn(move || -> u32 {
            panic!("{EXPECTED}: formatted {n}");
        }))
        .unwrap_err();
        assert!(err.is_panic());
        assert_eq!(
            err.to_string(),
            "task panicked: expected panic: formatted 17"
        );
        let payload = err.try_into_panic().expect("a panic");
        assert_eq!(
            payload.downcast_ref::<String>().map(String::as_str),
            Some("expected panic: formatted 17")
        );
    });
}

#[derive(Debug, PartialEq)]
struct CustomPayload(u32);

#[test]
fn custom_payload() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "custom");
        let err = pool
            .spawn(|| panic::panic_any(CustomPayload(99)))
            .wait()
            .unwrap_err();
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "task panicked");
        assert_eq!(format!("{err:?}"), "JoinError::Panic(..)");
        let payload = err.into_panic();
        assert_eq!(
            payload.downcast_ref::<CustomPayload>(),
            Some(&CustomPayload(99))
        );
    });
}

#[test]
fn payload_can_be_resumed() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "resume");
        let err = pool
            .spawn(|| panic!("expected panic: resumed"))
            .wait()
            .unwrap_err();
        let caught =
            panic::catch_unwind(AssertUnwindSafe(|| panic::resume_unwind(err.into_panic())))
                .unwrap_err();
        assert_eq!(
            caught.downcast_ref::<&str>(),
            Some(&"expected panic: resumed")
        );
    });
}

#[test]
fn join_error_is_a_std_error() {
    silence_expected_panics();
    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}
    assert_error::<JoinError>();
    timed(|| {
        let pool = pool(1, "error");
        let err = pool
            .spawn(|| panic!("expected panic: io"))
            .wait()
            .unwrap_err();
        let io: std::io::Error = err.into();
        assert_eq!(io.kind(), std::io::ErrorKind::Other);
        assert!(io.to_string().contains("expected panic: io"));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(
            pool.spawn(|| panic!("expected panic: boxed"))
                .wait()
                .unwrap_err(),
        );
        assert_eq!(boxed.to_string(), "task panicked: expected panic: boxed");
    });
}

#[test]
fn pool_keeps_all_threads_after_many_panics() {
    silence_expected_panics();
    timed(|| {
        let n = 2;
        let pool = pool(n, "survivor");
        let (ids_before, names_before) = all_workers(&pool);
        let tasks: Vec<_> = (0..100)
            .map(|i| pool.spawn(move || -> u32 { panic!("expected panic #{i}") }))
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let err = task.wait().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("task panicked: expected panic #{i}")
            );
        }
        // Detached and dropped panicking jobs, too.
        for i in 0..50 {
            pool.spawn(move || panic!("expected panic, detached #{i}"))
                .detach();
        }
        let (ids_after, names_after) = all_workers(&pool);
        assert_eq!(
            ids_before, ids_after,
            "a worker thread was replaced or lost"
        );
        assert_eq!(names_before, names_after);
        assert_eq!(pool.threads(), n);
        // And they compute as usual.
        let sum: u64 = (0..100u64)
            .map(|i| pool.spawn(move || i))
            .map(|t| t.wait().unwrap())
            .sum();
        assert_eq!(sum, 4950);
    });
}

/// A panic payload (or an output) whose `Drop` panics, and counts its drops.
struct PanicOnDrop(Counter);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        self.0.incr();
        panic!("expected panic from a Drop");
    }
}

#[test]
fn payload_with_panicking_drop_awaited() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "payload-drop");
        let drops = Counter::new();
        let d = drops.clone();
        let err = pool
            .spawn(move || panic::panic_any(PanicOnDrop(d)))
            .wait()
            .unwrap_err();
        assert!(err.is_panic());
        assert_eq!(err.to_string(), "task panicked");
        assert_eq!(drops.get(), 0);
        // The payload now belongs to the test: dropping it panics here.
        let payload = err.into_panic();
        assert!(payload.is::<PanicOnDrop>());
        let dropped = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        assert!(dropped.is_err());
        assert_eq!(drops.get(), 1);
        // The worker is fine.
        assert_eq!(pool.spawn(|| 5).wait().unwrap(), 5);
    });
}

#[test]
fn payload_with_panicking_drop_detached_or_dropped() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "payload-detach");
        let drops = Counter::new();

        // Detached: the worker drops the payload, and survives its panic.
        for _ in 0..10 {
            let d = drops.clone();
            pool.spawn(move || panic::panic_any(PanicOnDrop(d)))
                .detach();
        }

        // Dropped while running: the job finishes, the worker drops the payload.
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let d = drops.clone();
        let running = pool.spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            panic::panic_any(PanicOnDrop(d))
        });
        started_rx.recv().unwrap();
        drop(running);
        go_tx.send(()).unwrap();

        // Completed, then the Task dropped: the Task drops the payload and
        // contains its panic.
        let d = drops.clone();
        let finished = pool.spawn(move || panic::panic_any(PanicOnDrop(d)));
        assert!(pool.spawn(|| ()).wait().is_ok()); // FIFO from outside
        assert!(finished.is_finished());
        drop(finished);

        // The only worker is still alive and serving.
        assert_eq!(pool.spawn(|| 8).wait().unwrap(), 8);
        assert_eq!(drops.get(), 12);
        all_workers(&pool);
    });
}

/// A payload whose drop panics with another such payload, `depth` times.
struct Hydra {
    depth: u32,
    drops: Counter,
}

impl Drop for Hydra {
    fn drop(&mut self) {
        self.drops.incr();
        if self.depth > 0 {
            panic::panic_any(Hydra {
                depth: self.depth - 1,
                drops: self.drops.clone(),
            });
        }
    }
}

#[test]
fn payload_whose_drop_panics_with_panicking_payloads() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "hydra");
        let drops = Counter::new();
        let d = drops.clone();
        pool.spawn(move || panic::panic_any(Hydra { depth: 3, drops: d }))
            .detach();
        // An endless one is leaked rather than looping for ever.
        let d = Counter::new();
        pool.spawn(move || {
            panic::panic_any(Hydra {
                depth: u32::MAX,
                drops: d,
            })
        })
        .detach();
        assert_eq!(pool.spawn(|| 3).wait().unwrap(), 3);
        assert_eq!(drops.get(), 4);
    });
}

#[test]
fn output_with_panicking_drop() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "output-drop");
        let drops = Counter::new();

        // Awaited: the output is the caller's.
        let d = drops.clone();
        let out = pool.spawn(move || PanicOnDrop(d)).wait().unwrap();
        assert_eq!(drops.get(), 0);
        assert!(panic::catch_unwind(AssertUnwindSafe(move || drop(out))).is_err());
        assert_eq!(drops.get(), 1);

        // Detached: dropped (quietly) on the worker.
        for _ in 0..10 {
            let d = drops.clone();
            pool.spawn(move || PanicOnDrop(d)).detach();
        }

        // Dropped while running.
        let gate_started = mpsc::channel();
        let gate_go = mpsc::channel::<()>();
        let (started_tx, started_rx) = gate_started;
        let (go_tx, go_rx) = gate_go;
        let d = drops.clone();
        let running = pool.spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            PanicOnDrop(d)
        });
        started_rx.recv().unwrap();
        drop(running);
        go_tx.send(()).unwrap();

        // Finished, then dropped: the Task drops it without unwinding here.
        let d = drops.clone();
        let finished = pool.spawn(move || PanicOnDrop(d));
        assert!(pool.spawn(|| ()).wait().is_ok());
        assert!(finished.is_finished());
        drop(finished);

        assert_eq!(pool.spawn(|| 1).wait().unwrap(), 1);
        assert_eq!(drops.get(), 13);
    });
}

/// A waker that panics when woken.
struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("expected panic from a waker");
    }
}

#[test]
fn panicking_waker_does_not_kill_the_worker() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(1, "waker-panic");
        let gate = Gate::hold(&pool);
        let mut task = pool.spawn(|| 11);
        let waker = Waker::from(Arc::new(PanickingWaker));
        assert!(Pin::new(&mut task)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        gate.release();
        assert_eq!(pool.spawn(|| 12).wait().unwrap(), 12);
        assert!(task.is_finished());
        assert_eq!(task.wait().unwrap(), 11);
    });
}

#[test]
fn panic_in_nested_spawn_is_reported_on_its_own_task() {
    silence_expected_panics();
    timed(|| {
        let pool = pool(2, "nested-panic");
        let inner_pool = pool.clone();
        let outer = pool.spawn(move || {
            let inner = inner_pool.spawn(|| -> u8 { panic!("expected panic inside") });
            inner.wait().unwrap_err().to_string()
        });
        assert_eq!(
            outer.wait().unwrap(),
            "task panicked: expected panic inside"
        );
    });
}

#[test]
#[should_panic(expected = "into_panic called on a cancelled task")]
fn into_panic_on_cancelled_panics() {
    let pool = pool(1, "into-panic");
    pool.shutdown();
    let err = pool.spawn(|| ()).wait().unwrap_err();
    assert!(err.is_cancelled());
    let _ = err.into_panic();
}

#[test]
fn try_into_panic_on_cancelled_gives_the_error_back() {
    timed(|| {
        let pool = pool(1, "try-into");
        pool.shutdown();
        let err = pool.spawn(|| ()).wait().unwrap_err();
        assert!(err.is_cancelled() && !err.is_panic());
        assert_eq!(err.to_string(), "task was cancelled");
        assert_eq!(format!("{err:?}"), "JoinError::Cancelled");
        let err = err.try_into_panic().unwrap_err();
        assert!(err.is_cancelled());
    });
}
