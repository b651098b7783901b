//! Models with a real `offload::Pool` (one worker thread): the registry's
//! submission, the worker loop, sleep, and termination (src/sched/registry.rs,
//! src/sched/worker.rs) together, on the loom stand-in for the deques.
//!
//! Every model ends with every worker exited (`shutdown` waits for it; a
//! worker left parked is a loom deadlock) and every value dropped (each
//! holds a loom `Arc`, which loom reports if leaked).

#![cfg(loom)]

mod common;

use common::{checked, model, model_bounded, DropCount};
use offload::Pool;

/// 5(a) Spawn a job from outside, wait for its Task (the caller parks; the
/// worker wakes it through the Task's waker), shut down: the job ran once,
/// its output and closure were dropped once, and the worker exited.
#[test]
fn pool_spawn_wait_shutdown() {
    model("pool_spawn_wait_shutdown", || {
        let pool = Pool::builder().threads(1).build().unwrap();
        let captured = DropCount::new();
        let outputs = DropCount::new();
        let value = captured.value(1);
        let out = outputs.clone();
        let task = pool.spawn(move || {
            let value = value; // capture the whole value, not just its field
            checked("job", || out.value(value.payload + 1))
        });
        let output = task.wait().expect("the job ran");
        assert_eq!(output.payload, 2);
        drop(output);
        pool.shutdown();
        drop(pool);
        assert_eq!(captured.get(), 1);
        assert_eq!(outputs.get(), 1);
    });
}

/// 5(b) No stranded job: a spawn from outside races with the worker's exit
/// (the first job shuts the pool down from the worker, which only starts
/// the termination). The second job is accepted and run, or cancelled
/// (refused, or drained by the last worker or by the submitter itself), but
/// its Task always resolves; then every worker has exited.
///
/// Bound 2 (90k executions, 8 s): at bound 3 it takes 1.2M executions and
/// about 2 minutes since the deque stand-in's `is_empty` became lock-free
/// (`OFFLOAD_LOOM_FULL=1` runs it there).
#[test]
fn pool_spawn_races_exit() {
    model_bounded("pool_spawn_races_exit", Some(2), || {
        let pool = Pool::builder().threads(1).build().unwrap();
        let handle = pool.clone();
        let first = pool.spawn(move || handle.shutdown());
        let drops = DropCount::new();
        let value = drops.value(5);
        let second = pool.spawn(move || {
            let value = value; // capture the whole value, not just its field
            checked("job", || value.payload)
        });
        match second.wait() {
            Ok(payload) => assert_eq!(payload, 5),
            Err(err) => assert!(err.is_cancelled(), "expected cancelled, got {err:?}"),
        }
        assert_eq!(drops.get(), 1, "the closure was not dropped exactly once");
        first.wait().expect("the first job ran");
        pool.shutdown();
    });
}

/// 5(c) `shutdown_now` racing with a queued job: the job runs or is
/// cancelled (its closure dropped, never called), its Task resolves either
/// way, and the worker exits.
#[test]
fn pool_shutdown_now_races_job() {
    model("pool_shutdown_now_races_job", || {
        let pool = Pool::builder().threads(1).build().unwrap();
        let drops = DropCount::new();
        let value = drops.value(3);
        let task = pool.spawn(move || {
            let value = value; // capture the whole value, not just its field
            checked("job", || value.payload)
        });
        pool.shutdown_now();
        match task.wait() {
            Ok(payload) => assert_eq!(payload, 3),
            Err(err) => assert!(err.is_cancelled(), "expected cancelled, got {err:?}"),
        }
        assert_eq!(drops.get(), 1, "the closure was not dropped exactly once");
    });
}

/// 5(d) `join` from outside on a two-worker pool: the caller parks on a
/// latch (`in_worker`), a worker runs `a` and pushes `b` on its deque, where
/// the other worker may steal it; both results come back.
///
/// Bound 1 (see loom-tests/README.md): with the injector's own spin-waits
/// (a consumer waiting for an in-flight push, a worker retrying while
/// another has the consumer's turn) bound 2 reaches schedules in which the
/// two workers spin in turn for ever, which loom explores until its branch
/// limit (no preemption is spent on a switch away from a yielding thread).
/// The injector itself is checked at bound 3 in `injector.rs`, and this
/// model's join logic ran at bound 3 on the earlier queue.
#[test]
fn pool_join_two_workers() {
    model_bounded("pool_join_two_workers", Some(1), || {
        let pool = Pool::builder().threads(2).build().unwrap();
        let (a, b) = pool.join(|| checked("a", || 1), || checked("b", || 2));
        assert_eq!((a, b), (1, 2));
        pool.shutdown();
    });
}

/// 5(e) `Scope::spawn` from inside a scope on a one-worker pool, called
/// from outside: the scope's jobs go through the one submission routing
/// (`Registry::push`: the worker's own deque), each runs once, the scope
/// returns only after both, with their writes visible, and the worker
/// exits on shutdown.
#[test]
fn pool_scope_spawn() {
    model_bounded("pool_scope_spawn", Some(2), || {
        let pool = Pool::builder().threads(1).build().unwrap();
        let (mut a, mut b) = (0, 0);
        pool.scope(|s| {
            s.spawn(|_| checked("a", || a = 1));
            s.spawn(|_| checked("b", || b = 2));
        });
        assert_eq!((a, b), (1, 2));
        pool.shutdown();
    });
}

/// 5(f) `install` across two pools (`in_worker` from a worker of another
/// pool): the caller parks on pool A's latch; A's worker injects the inner
/// operation into pool B and, while it waits, runs A's loop (`wait_until`)
/// until B's worker sets the latch and unparks it. A lost wake-up between
/// the two pools is a deadlock.
#[test]
fn pool_install_across_two_pools() {
    model_bounded("pool_install_across_two_pools", Some(2), || {
        let a = Pool::builder().threads(1).build().unwrap();
        let b = Pool::builder().threads(1).build().unwrap();
        let n = a.install(|| b.install(|| checked("inner", || 7)));
        assert_eq!(n, 7);
        a.shutdown();
        b.shutdown();
    });
}

/// 5(g) A bounded pool end to end: `try_spawn` takes the only slot, and a
/// `reserve` waiter (parked in `Reserve::wait`) is handed it when the
/// worker starts that job: the slot comes back through the cell's claim on
/// a worker, and the waiter's waker reaches the parked thread (a lost
/// wake-up is a loom deadlock). The permit, dropped unused, frees the slot
/// for a last `try_spawn`.
///
/// Bound 1 (the slot protocol itself is modelled at bound 3 in `flow.rs`):
/// at bound 2 it takes millions of executions.
#[test]
fn pool_reserve_waits_for_a_job_start() {
    model_bounded("pool_reserve_waits_for_a_job_start", Some(1), || {
        let pool = Pool::builder().threads(1).max_queued(1).build().unwrap();
        let first = pool
            .try_spawn(|| checked("first", || 1))
            .expect("one free slot");
        let permit = pool.reserve().wait().expect("the pool runs");
        drop(permit);
        let last = pool.try_spawn(|| 2).expect("the permit's slot came back");
        pool.shutdown();
        assert_eq!(first.wait().unwrap(), 1);
        assert_eq!(last.wait().unwrap(), 2);
    });
}
