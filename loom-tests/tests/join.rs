//! Models of `join` on a real `offload::Pool` of two workers
//! (src/fork_join/join.rs, src/sched/worker.rs): the hand-off of a join's second half to
//! whichever worker is free, on the loom stand-in for the deques.
//!
//! A join publishes its second half on its worker's deque and wakes a
//! sleeper for it before it runs the first half, so an idle worker takes
//! it whatever that worker was doing when the join began (not started
//! yet, spinning, asleep) and whether or not the first half ever joins
//! again.

#![cfg(loom)]

mod common;

use common::model_bounded;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use offload::loom_api::Parker;
use offload::Pool;

/// The first half waits (parked, running nothing) until the second half
/// has run, which only the other worker can do: the join completes only if
/// that worker takes the half, whether it was asleep, spinning or not yet
/// started when the join published it. A half nobody wakes a sleeper for
/// leaves every thread parked: a loom deadlock (mutant
/// `join_publish_no_wake`).
///
/// Bound 1 (the two workers' start, sleep and wake-up orders are all
/// explored at bound 0; bound 1 adds a preemption anywhere).
#[test]
fn join_half_is_taken_by_an_idle_worker() {
    model_bounded("join_half_is_taken_by_an_idle_worker", Some(1), || {
        let pool = Pool::builder()
            .threads(2)
            .detect_blocking(false)
            .build()
            .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let first = Parker::new();
        let (done_b, first_b) = (Arc::clone(&done), first.clone());
        let (x, y) = pool.install(move || {
            offload::join(
                move || {
                    // Acquire: pairs with the second half's Release.
                    while !done.load(Ordering::Acquire) {
                        first.park();
                    }
                    1
                },
                move || {
                    // Release: the first half reads the flag, then returns.
                    done_b.store(true, Ordering::Release);
                    first_b.unpark();
                    2
                },
            )
        });
        assert_eq!((x, y), (1, 2));
        pool.shutdown();
    });
}
