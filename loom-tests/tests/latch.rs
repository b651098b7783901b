//! Models of the latches a blocked thread waits on (src/fork_join/latch.rs), driven
//! through `offload::loom_api::{Latch, CountLatch, Parker}`.
//!
//! The waiter follows the library's pattern: `while !latch.probe() {
//! parker.park() }`, then reads what the setters wrote. The writes live in
//! loom `UnsafeCell`s, so reading them without a happens-before edge from
//! the setter is a loom causality violation, and a lost wake-up leaves the
//! waiter parked for ever (a loom deadlock).

#![cfg(loom)]

mod common;

use std::any::Any;

use common::{model, Counted, DropCount};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{CountLatch, Latch, Parker};

/// What a `join` half hands back: its value, or the payload of its panic
/// (as `JobResult` carries it).
type Outcome = Result<Counted, Box<dyn Any + Send>>;

struct JoinSlot {
    latch: Latch,
    result: UnsafeCell<Option<Outcome>>,
}

// SAFETY: `result` is written by the setter before `set` and read by the
// waiter after `probe()` returned true; the latch orders the two (which is
// what the models check).
unsafe impl Sync for JoinSlot {}

/// How the latch reaches its waiter's parker.
#[derive(Clone, Copy)]
enum Handle {
    /// `Latch::new`: the latch co-owns the parker (a waiter outside the pool).
    Shared,
    /// `Latch::for_worker`: a plain pointer (a private `join` half).
    Worker,
}

/// Runs the join-latch model with a setter that produces `outcome`.
fn join_latch(handle: Handle, outcome: fn(&DropCount) -> Outcome, check: fn(Outcome)) {
    let drops = DropCount::new();
    let waiter = Parker::new();
    let latch = match handle {
        Handle::Shared => Latch::new(&waiter),
        // SAFETY: `waiter` lives until the end of the model, after the
        // setter thread was joined.
        Handle::Worker => unsafe { Latch::for_worker(&waiter) },
    };
    let slot = Arc::new(JoinSlot {
        latch,
        result: UnsafeCell::new(None),
    });
    let setter = {
        let slot = slot.clone();
        let drops = drops.clone();
        thread::spawn(move || {
            let value = outcome(&drops);
            // SAFETY: the waiter reads `result` only after `probe()`.
            slot.result.with_mut(|r| unsafe { *r = Some(value) });
            slot.latch.set();
        })
    };
    while !slot.latch.probe() {
        waiter.park();
    }
    // SAFETY: the latch is set, so the setter's write happened before.
    let value = slot.result.with_mut(|r| unsafe { (*r).take() });
    check(value.expect("latch set before the result was written"));
    setter.join().unwrap();
    assert_eq!(drops.get(), 1, "the value was not dropped exactly once");
}

/// 3(a) Join latch: the waiter never sees the latch set before the setter's
/// result write, and is always woken (parking when it is not set yet).
#[test]
fn join_latch_value() {
    model("join_latch_value", || {
        join_latch(
            Handle::Shared,
            |drops| Ok(drops.value(7)),
            |outcome| assert_eq!(outcome.expect("a value").payload, 7),
        );
    });
}

/// 3(b) Join latch carrying a panic back: the setter stores the payload
/// (as the worker's `catch_unwind` would), the waiter receives it intact.
#[test]
fn join_latch_panic_payload() {
    model("join_latch_panic_payload", || {
        join_latch(
            Handle::Shared,
            |drops| Err(Box::new(drops.value(13))),
            |outcome| {
                let payload = outcome.expect_err("a panic payload");
                let counted = payload.downcast::<Counted>().expect("the payload");
                assert_eq!(counted.payload, 13);
            },
        );
    });
}

/// 3(a') As 3(a), with the latch of a private `join` half, which holds a
/// plain pointer to the worker's parker instead of an `Arc`.
#[test]
fn join_latch_value_worker_handle() {
    model("join_latch_value_worker_handle", || {
        join_latch(
            Handle::Worker,
            |drops| Ok(drops.value(7)),
            |outcome| assert_eq!(outcome.expect("a value").payload, 7),
        );
    });
}

struct ScopeState {
    latch: CountLatch,
    writes: [UnsafeCell<u32>; 2],
}

// SAFETY: job `i` writes `writes[i]` before its decrement; the owner reads
// them after `probe()` returned true.
unsafe impl Sync for ScopeState {}

/// Model 4, scope: two jobs on two threads write their slot and decrement; the
/// owner finishes its body (its own decrement) and waits (probe, else park).
/// The count reaches zero, the owner is woken, and it sees both jobs' writes.
#[test]
fn scope_count_latch() {
    model("scope_count_latch", || {
        let owner = Parker::new();
        let scope = Arc::new(ScopeState {
            latch: CountLatch::new(&owner),
            writes: [UnsafeCell::new(0), UnsafeCell::new(0)],
        });
        let jobs: Vec<_> = (0..2)
            .map(|i| {
                // As `Scope::spawn`: count the job before it can run.
                scope.latch.increment();
                let scope = scope.clone();
                thread::spawn(move || {
                    // SAFETY: only job `i` writes `writes[i]`.
                    scope.writes[i].with_mut(|w| unsafe { *w = 10 + i as u32 });
                    scope.latch.decrement();
                })
            })
            .collect();
        // The body is done.
        scope.latch.decrement();
        while !scope.latch.probe() {
            owner.park();
        }
        for (i, write) in scope.writes.iter().enumerate() {
            // SAFETY: the count reached zero: every job's write happened before.
            write.with(|w| assert_eq!(unsafe { *w }, 10 + i as u32));
        }
        for job in jobs {
            job.join().unwrap();
        }
        assert!(scope.latch.probe(), "the count left zero");
    });
}
