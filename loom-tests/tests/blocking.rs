//! Models of a worker's place passing to a stand-in and back
//! (src/blocking/baton.rs, src/blocking/spares.rs), with a real
//! `offload::Pool` of one worker: the hand-over runs the registry, the
//! worker loop, the sleep protocol and the spare threads as they ship.
//!
//! Every model ends with every thread exited (`shutdown` waits for the
//! worker and the spare; one left parked is a loom deadlock) and every
//! value dropped.

#![cfg(loom)]

mod common;

use common::{checked, model, model_bounded, DropCount, Signal};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use offload::loom_api::{Baton, Parker};
use offload::Pool;

/// 9(a) The hand-over while a job is pushed at the same moment. The only
/// worker runs job A, which calls `offload::blocking` while the test
/// thread spawns job B. If A sees B waiting, it lends its place to a spare
/// that stands in (and runs B, or finds it already gone), and takes the
/// place back when its call returns, passed at the stand-in's next job
/// boundary or woken out of its sleep; if not, A keeps its place. Either
/// way no job is stranded (both Tasks resolve), no wake-up is lost (every
/// thread exits at shutdown: one left parked is a loom deadlock), and A
/// ends on its own place (a `join` there runs as on any worker).
///
/// Bound 0 (40 s; at bound 1 it runs past 15 minutes): it still covers
/// the place passed at a boundary and taken from a sleeping stand-in, and
/// the baton protocol itself is modelled at the full bound in 9(c).
#[test]
fn pool_blocking_hands_the_place_over_and_back() {
    model_bounded(
        "pool_blocking_hands_the_place_over_and_back",
        Some(0),
        || {
            let pool = Pool::builder().threads(1).build().unwrap();
            let drops = DropCount::new();
            let value = drops.value(1);
            let a = pool.spawn(move || {
                let value = value; // capture the whole value, not just its field
                offload::blocking(|| ());
                let (x, y) = offload::join(|| 1, || 2);
                checked("a", || value.payload + x + y)
            });
            let b = pool.spawn(|| 5);
            assert_eq!(b.wait().unwrap(), 5);
            assert_eq!(a.wait().unwrap(), 4);
            pool.shutdown();
            drop(pool);
            assert_eq!(drops.get(), 1);
        },
    );
}

/// 9(b) The hand-over for certain: A waits until B is queued before it
/// blocks, and blocks until B has run, which only a stand-in can do. B's
/// job spawns C, which lands on the lent place's deque: the stand-in or
/// A, back on its place, runs it.
///
/// Bound 0: the hand-over itself is 9(a)'s at bound 1.
#[test]
fn pool_blocking_stand_in_runs_the_queued_job() {
    model_bounded(
        "pool_blocking_stand_in_runs_the_queued_job",
        Some(0),
        || {
            let pool = Pool::builder().threads(1).build().unwrap();
            let queued = Signal::new();
            let b_ran = Signal::new();
            let a = {
                let (queued, b_ran) = (queued.clone(), b_ran.clone());
                pool.spawn(move || {
                    queued.wait();
                    offload::blocking(|| b_ran.wait());
                    1
                })
            };
            let b = pool.spawn(move || {
                let c = offload::spawn(|| 3);
                b_ran.set();
                c
            });
            queued.set();
            assert_eq!(a.wait().unwrap(), 1);
            let c = b.wait().unwrap();
            assert_eq!(c.wait().unwrap(), 3);
            pool.shutdown();
        },
    );
}

/// 9(d) Coming back early. A waits until B is queued, lends its place
/// (B holds the stand-in in `blocking` until A's call has returned), and,
/// back from its call without its place, waits for a job C it spawns: the
/// stand-in, still on the place, runs C, and A takes its place back at its
/// job's end, after its Task resolved. No wake-up is lost (every thread
/// exits at shutdown), and A's thread ends on its own place (it runs D, a
/// job spawned after A's answer, or D runs on the stand-in).
///
/// Mutant `worker_job_end_skips_hold`: A's job ends and its thread goes on
/// in the place's loop without taking the place back; still counted away
/// from it, the worker never leaves, and `shutdown` waits for ever (a loom
/// deadlock).
///
/// Bound 0, as the other pool models.
#[test]
fn pool_blocking_comes_back_early() {
    model_bounded("pool_blocking_comes_back_early", Some(0), || {
        let pool = Pool::builder().threads(1).build().unwrap();
        let queued = Signal::new();
        let returned = Signal::new();
        let a = {
            let (queued, returned) = (queued.clone(), returned.clone());
            pool.spawn(move || {
                queued.wait();
                offload::blocking(|| ());
                returned.set();
                // Off its place: C goes to the injector, and this thread
                // waits for it as a thread outside the pool would.
                offload::spawn(|| 3).wait().unwrap()
            })
        };
        let b = pool.spawn(move || {
            returned.wait();
            5
        });
        queued.set();
        assert_eq!(a.wait().unwrap(), 3);
        assert_eq!(b.wait().unwrap(), 5);
        assert_eq!(pool.spawn(|| 7).wait().unwrap(), 7);
        pool.shutdown();
    });
}

/// The place's data in 9(c): written by whoever holds the place.
struct Place {
    baton: Baton,
    parker: Parker,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is touched only by the holder of the place (what the
// model checks).
unsafe impl Sync for Place {}

/// 9(c) The baton protocol alone, at the full bound: the home thread lends
/// its place to a stand-in and comes back while the stand-in runs or
/// sleeps (its worker loop reduced to what matters here: pass the place if
/// it is wanted, else sleep on the place's parker after looking once
/// more). The stand-in is always woken to pass the place (a lost wake-up is
/// a loom deadlock), its writes to the place happen before the home
/// thread's reads (a causality violation otherwise), and nobody is away at
/// the end.
#[test]
fn baton_lend_and_come_back() {
    model("baton_lend_and_come_back", || {
        let place = Arc::new(Place {
            baton: Baton::new(),
            parker: Parker::new(),
            data: UnsafeCell::new(0),
        });
        let mut stand_in = None;
        let lent = place.baton.lend(|| {
            let place = place.clone();
            stand_in = Some(loom::thread::spawn(move || {
                // SAFETY: the stand-in holds the place.
                place.data.with_mut(|d| unsafe { *d = 7 });
                loop {
                    if place.baton.is_wanted() && place.baton.pass(false) {
                        break;
                    }
                    if !place.baton.is_wanted() {
                        place.parker.park();
                    }
                }
            }));
            true
        });
        assert!(lent);
        place.baton.come_back(&place.parker, &Parker::new());
        // SAFETY: the home thread holds the place again.
        assert_eq!(place.data.with(|d| unsafe { *d }), 7);
        assert!(place.baton.nobody_away());
        stand_in.unwrap().join().unwrap();
    });
}
