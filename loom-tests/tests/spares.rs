//! Models of a pool's spare threads (src/blocking/spares.rs), with a real
//! `offload::Pool` of one worker: blocking jobs and compensation (stand-ins)
//! are counted apart, so a stand-in never keeps a blocking job from a spare.
//!
//! Every model ends with every thread exited (`shutdown` waits for the
//! worker and the spares; one left parked is a loom deadlock).

#![cfg(loom)]

mod common;

use common::{model_bounded, Signal};
use offload::Pool;

/// With `max_blocking_threads(1)`, job A waits until job B is queued, then,
/// inside `offload::blocking` (its place lent to a stand-in, the one spare
/// thread that may compensate), waits for a `spawn_blocking` job: that job
/// gets a spare of its own, and A its answer. Counted together (the
/// mutant `spares_turns_count_as_jobs`), the blocking job would queue
/// behind the stand-in, which waits for A: a deadlock.
///
/// Bound 0, as the pool models of `blocking.rs`: the spares' counts are
/// under one lock, and the hand-over itself is modelled there.
#[test]
fn a_stand_in_leaves_a_spare_for_spawn_blocking() {
    model_bounded(
        "a_stand_in_leaves_a_spare_for_spawn_blocking",
        Some(0),
        || {
            let pool = Pool::builder()
                .threads(1)
                .max_blocking_threads(1)
                .build()
                .unwrap();
            let queued = Signal::new();
            let a = {
                let queued = queued.clone();
                pool.spawn(move || {
                    queued.wait();
                    offload::blocking(|| offload::spawn_blocking(|| 42).wait().unwrap())
                })
            };
            let b = pool.spawn(|| 5);
            queued.set();
            assert_eq!(b.wait().unwrap(), 5);
            assert_eq!(a.wait().unwrap(), 42);
            pool.shutdown();
        },
    );
}
