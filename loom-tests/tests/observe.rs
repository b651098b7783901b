//! Models of the stall detector's protocols (src/observe/): the tick
//! protocol between a watched loop and the watcher thread, and the capture
//! slot between the watcher and a signal handler.
//!
//! - `loop_watch_tick_races_first_poll`: a watcher tick and the loop's first
//!   poll, in any order, end with the loop polled again and a lag sample
//!   recorded (no lost wake-up: loom reports a deadlock). Mutant
//!   `watch_swap_before_waker` (the poll answers before it registers its
//!   waker) is caught.
//! - `capture_slot_timeout_races_the_handler`: a requester that gives up
//!   while a handler may be writing, then asks again at once, never reads a
//!   torn stack and never shares the buffer with a writer (loom's cell
//!   tracking). Mutant `capture_give_up_stores` (give up with a
//!   plain store) is caught.

#![cfg(loom)]

mod common;

use std::future::poll_fn;
use std::task::Poll;

use common::{block_on, model, TrackedWaker};
use loom::sync::Arc;
use loom::thread;
use offload::loom_api::{CaptureSlot, LoopWatchState};

#[test]
fn loop_watch_tick_races_first_poll() {
    model("loop_watch_tick_races_first_poll", || {
        let watch = LoopWatchState::new(100, 10);
        let watcher = {
            let watch = watch.clone();
            thread::spawn(move || {
                // At most one tick wakes the loop; a second one finds it late.
                assert_eq!(watch.tick(5), None);
            })
        };
        let family = TrackedWaker::new();
        let lag = block_on(
            &family,
            poll_fn(|cx| match watch.poll(7, cx.waker()) {
                Some(lag) => Poll::Ready(lag),
                None => Poll::Pending,
            }),
        );
        assert_eq!(lag, 2);
        assert_eq!(watch.samples(), 1);
        watcher.join().unwrap();
    });
}

/// The requester's wait: poll once, give up if nothing came, and if a
/// handler is writing, wait for it.
fn wait_for(slot: &CaptureSlot) -> Option<Vec<usize>> {
    if let Some(frames) = slot.poll() {
        return Some(frames);
    }
    if slot.give_up() {
        return None;
    }
    loop {
        if let Some(frames) = slot.poll() {
            return Some(frames);
        }
        thread::yield_now();
    }
}

#[test]
fn capture_slot_timeout_races_the_handler() {
    model("capture_slot_timeout_races_the_handler", || {
        let slot = Arc::new(CaptureSlot::new());
        slot.request(7);
        let first = {
            let slot = slot.clone();
            thread::spawn(move || slot.answer(7, &[1, 2, 3]))
        };
        if let Some(frames) = wait_for(&slot) {
            assert_eq!(frames, [1, 2, 3]);
        }
        // Asks again at once, as the watcher does for the next stall.
        slot.request(7);
        let second = {
            let slot = slot.clone();
            thread::spawn(move || slot.answer(7, &[4, 5]))
        };
        // The first handler may answer this request too, if it comes late:
        // it is a stack of the same thread, taken while this request was
        // armed. What must never be seen is a mix of the two.
        if let Some(frames) = wait_for(&slot) {
            assert!(frames == [4, 5] || frames == [1, 2, 3], "{frames:?}");
        }
        first.join().unwrap();
        second.join().unwrap();
    });
}
