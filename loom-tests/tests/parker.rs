//! Models of the one-token parker (src/sched/parker.rs) every blocked thread waits
//! on, driven through `offload::loom_api::Parker`.
//!
//! The parked thread follows the library's pattern, `while !condition {
//! parker.park() }`, and then reads what the unparking thread wrote before
//! `unpark`. The write lives in a loom `UnsafeCell`, so reading it without a
//! happens-before edge is a causality violation; a lost wake-up leaves the
//! thread parked for ever (a loom deadlock).

#![cfg(loom)]

mod common;

use common::model;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::Parker;

struct Handoff {
    parker: Parker,
    value: UnsafeCell<u32>,
}

// SAFETY: `value` is written before `unpark` and read after `park` returned
// (what the model checks).
unsafe impl Sync for Handoff {}

/// 6(a) `unpark` racing `park`: the parked thread is always woken (the
/// unparker's notification cannot fall between the parker's switch to
/// PARKED and its wait), and `park` returns only with the token, which
/// carries the unparker's writes (a Release swap in `unpark`, an Acquire
/// exchange in `park`): no flag is needed to read them.
#[test]
fn unpark_races_park() {
    model("unpark_races_park", || {
        let handoff = Arc::new(Handoff {
            parker: Parker::new(),
            value: UnsafeCell::new(0),
        });
        let unparker = {
            let handoff = handoff.clone();
            thread::spawn(move || {
                // SAFETY: read only after the token (see `Handoff`).
                handoff.value.with_mut(|v| unsafe { *v = 42 });
                handoff.parker.unpark();
            })
        };
        handoff.parker.park();
        // SAFETY: the unparker wrote `value` before its `unpark`, whose
        // token `park` consumed.
        assert_eq!(handoff.value.with(|v| unsafe { *v }), 42);
        unparker.join().unwrap();
    });
}

/// 6(b) Two unparkers and a thread that parks until both are done: tokens
/// do not add up (two `unpark`s may leave one token), but none is lost
/// after the parker's last check, so the thread always wakes.
#[test]
fn two_unparkers() {
    model("two_unparkers", || {
        let parker = Parker::new();
        let done = Arc::new(AtomicUsize::new(0));
        let unparkers: Vec<_> = (0..2)
            .map(|_| {
                let parker = parker.clone();
                let done = done.clone();
                thread::spawn(move || {
                    // Relaxed: the parker's token orders it (as in 6(a)).
                    done.fetch_add(1, Ordering::Relaxed);
                    parker.unpark();
                })
            })
            .collect();
        while done.load(Ordering::Relaxed) < 2 {
            parker.park();
        }
        for unparker in unparkers {
            unparker.join().unwrap();
        }
    });
}

/// 6(d) A parker passes to another thread (a worker's place handed to a
/// stand-in, `src/blocking/`): the first owner is woken by an unparker,
/// hands the parker over, and the new owner rebinds it and parks until a
/// second unpark. The rebinding must not race the first unparker's read of
/// the owner (it reads it while `WAKING`, before the owner can leave
/// `park`), and the second unpark must wake the new owner, not the old one.
#[test]
fn rebind_after_a_wake() {
    model("rebind_after_a_wake", || {
        use loom::sync::atomic::AtomicBool;
        let parker = Parker::new();
        let first = Arc::new(AtomicBool::new(false));
        let second = Arc::new(AtomicBool::new(false));
        let handed = Arc::new(AtomicBool::new(false));
        let new_owner = {
            let (parker, second, handed) = (parker.clone(), second.clone(), handed.clone());
            thread::spawn(move || {
                // Acquire: the hand-over (a lock in the pool) orders the
                // old owner's last park before this rebind.
                while !handed.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                parker.rebind();
                // Relaxed: the token orders it (as in 6(a)).
                while !second.load(Ordering::Relaxed) {
                    parker.park();
                }
            })
        };
        let unparker = {
            let (parker, first, second) = (parker.clone(), first.clone(), second.clone());
            thread::spawn(move || {
                first.store(true, Ordering::Relaxed);
                parker.unpark();
                second.store(true, Ordering::Relaxed);
                parker.unpark();
            })
        };
        while !first.load(Ordering::Relaxed) {
            parker.park();
        }
        // Release: see the new owner's Acquire.
        handed.store(true, Ordering::Release);
        new_owner.join().unwrap();
        unparker.join().unwrap();
    });
}
