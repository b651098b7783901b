//! The capture slot of the stall detector (src/observe/capture.rs) beside
//! its other users: the watcher that falls back to the `/proc` path, and
//! signal handlers running on threads the request is not for.
//!
//! - `capture_slot_beside_the_proc_path`: the watcher asks thread 7 for a
//!   copy; a late handler on another thread (9: a thread that was sent an
//!   earlier signal, or that now holds a reused id's signal) races thread
//!   7's handler. The watcher waits, gives up, and takes the next stall
//!   through the `/proc` path, which never touches the slot, then asks
//!   again. Whatever it reads is thread 7's copy, whole: never thread 9's,
//!   never a mix, and never a buffer shared with a writer (loom's cell
//!   tracking). Mutant `capture_ignores_target` (a handler writes without
//!   checking the request is for its thread) is caught.

#![cfg(loom)]

mod common;

use common::model;
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::CaptureSlot;

/// The watcher's wait, as `signal::by_signal` does it past its deadline:
/// poll, and give up; a handler caught writing is waited for, and a
/// handler on the wrong thread puts the slot back armed, so the give-up is
/// tried again.
fn wait_for(slot: &CaptureSlot) -> Option<Vec<usize>> {
    loop {
        if let Some(words) = slot.poll() {
            return Some(words);
        }
        if slot.give_up() {
            return None;
        }
        thread::yield_now();
    }
}

const TARGET: usize = 7;
const OTHER: usize = 9;

#[test]
fn capture_slot_beside_the_proc_path() {
    model("capture_slot_beside_the_proc_path", || {
        let slot = Arc::new(CaptureSlot::new());
        slot.request(TARGET);
        let target = {
            let slot = slot.clone();
            thread::spawn(move || slot.answer(TARGET, &[1, 2]))
        };
        let other = {
            let slot = slot.clone();
            thread::spawn(move || slot.answer(OTHER, &[9, 9]))
        };
        let first = wait_for(&slot);
        if let Some(words) = &first {
            assert_eq!(words, &[1, 2], "only the target's copy");
        }
        // The next stall finds the thread in a system call: the `/proc`
        // path copies its stack without the slot. The one after is
        // signalled again.
        slot.request(TARGET);
        if let Some(words) = wait_for(&slot) {
            assert_eq!(words, [1, 2], "only the target's copy");
            assert!(first.is_none(), "one handler answers once");
        }
        target.join().unwrap();
        other.join().unwrap();
    });
}
