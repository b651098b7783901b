//! Panic containment: nothing a user's code does may unwind out of a worker.

use std::panic::{self, AssertUnwindSafe};

/// Drops `value`, swallowing a panic from its `Drop` (and from the drop of
/// that panic's payload, and so on). A value whose drop keeps producing
/// payloads that panic when dropped is leaked after a few rounds rather than
/// looping for ever.
pub(crate) fn drop_quietly<T>(value: T) {
    let Err(mut payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(value))) else {
        return;
    };
    for _ in 0..8 {
        match panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    std::mem::forget(payload);
}

/// Wakes `waker`, swallowing a panic from its `wake` (a user's executor's
/// code) as [`drop_quietly`] does from a drop: the thread that wakes it (a
/// worker, the detector) must not unwind.
pub(crate) fn wake_quietly(waker: std::task::Waker) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
        drop_quietly(payload);
    }
}
