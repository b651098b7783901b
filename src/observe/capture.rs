//! The capture slot: how the watcher thread asks a stalled loop thread for
//! its stack, and how the signal handler on that thread answers.
//!
//! The slot is a buffer of return addresses with a state word. One
//! *requester* (the watcher thread; [`CaptureSlot::request`] callers are
//! serialised by a lock in [`super::signal`]) and any number of *handlers*
//! (a signal handler on whatever thread the signal lands, possibly a late
//! signal from an earlier request) share it:
//!
//! ```text
//!            request()              handler wins the CAS        handler done
//!   IDLE ──────────────▶ ARMED ─────────────────────▶ WRITING ───────────▶ DONE
//!     ▲                    │ ▲                           │                  │
//!     │  give_up(): CAS    │ └── handler on the wrong ───┘                  │
//!     └────────────────────┘      thread puts it back                       │
//!     └─────────────────────────────── take(): requester reads ◀────────────┘
//! ```
//!
//! Invariants:
//! - Only the handler that moved `ARMED → WRITING` writes the buffer, and only
//!   until it stores `DONE` (or `ARMED` again); only the requester reads it,
//!   and only after it saw `DONE`. So the buffer is never read and written at
//!   once (the loom model `capture_slot_timeout_races_the_handler` checks this
//!   with loom's cell tracking).
//! - The requester gives up only by a CAS `ARMED → IDLE`: it can never take
//!   the slot back from a handler that is writing (mutant
//!   `capture_give_up_stores`). A requester that finds `WRITING` waits: the
//!   handler is running on a live thread and will finish.
//! - The handler does only atomic operations and plain stores into the
//!   buffer: no lock, no allocation, nothing that is not async-signal-safe.

use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

/// The most return addresses one capture keeps.
pub(crate) const MAX_FRAMES: usize = 96;

const IDLE: usize = 0;
const ARMED: usize = 1;
const WRITING: usize = 2;
const DONE: usize = 3;

/// What a handler recorded: the interrupted program counter (0 where the
/// platform gives none) and the return addresses from the handler outwards.
pub(crate) struct Captured {
    pub(crate) pc: usize,
    pub(crate) frames: Vec<usize>,
}

struct Buffer {
    pc: usize,
    len: usize,
    frames: [usize; MAX_FRAMES],
}

const EMPTY: Buffer = Buffer {
    pc: 0,
    len: 0,
    frames: [0; MAX_FRAMES],
};

/// See the module docs.
pub(crate) struct CaptureSlot {
    state: AtomicUsize,
    /// The OS thread id the armed request is for.
    target: AtomicUsize,
    buffer: UnsafeCell<Buffer>,
}

// SAFETY: the buffer is written only by the one handler that won
// `ARMED → WRITING` and read only by the requester after `DONE` (module docs),
// so shared access from several threads never touches it at once.
unsafe impl Sync for CaptureSlot {}

impl CaptureSlot {
    /// An idle slot.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        let buffer = UnsafeCell::new(EMPTY);
        Self {
            state: AtomicUsize::new(IDLE),
            target: AtomicUsize::new(0),
            buffer,
        }
    }

    /// An idle slot (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        let buffer = UnsafeCell::new(EMPTY);
        Self {
            state: AtomicUsize::new(IDLE),
            target: AtomicUsize::new(0),
            buffer,
        }
    }

    /// Arms the slot for thread `tid`. The caller then signals that thread
    /// and calls [`poll`](Self::poll) until it answers or it gives up.
    ///
    /// # Panics
    /// If the slot is not idle: one request at a time (callers hold a lock).
    pub(crate) fn request(&self, tid: usize) {
        assert_eq!(
            self.state.load(Ordering::Relaxed),
            IDLE,
            "one capture at a time"
        );
        // Relaxed: published by the Release store of ARMED below.
        self.target.store(tid, Ordering::Relaxed);
        // Release: a handler that acquires ARMED sees `target`, and every read
        // of the buffer this requester made before (it reads only before it
        // stores IDLE or ARMED) happens before the handler's writes.
        self.state.store(ARMED, Ordering::Release);
    }

    /// The requester's check: `Some` with the stack once the handler is done
    /// (the slot is idle again), `None` while it is not.
    pub(crate) fn poll(&self) -> Option<Captured> {
        // Acquire: pairs with the handler's Release store of DONE, so its
        // buffer writes are visible.
        if self.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        let captured = self.buffer.with(|buffer| {
            // SAFETY: DONE: the handler has finished writing and no handler
            // writes again before this requester arms the slot anew.
            let buffer = unsafe { &*buffer };
            Captured {
                pc: buffer.pc,
                frames: buffer.frames[..buffer.len].to_vec(),
            }
        });
        // Relaxed: the next `request` (this same thread) orders the reads
        // above before any handler's writes with its Release store of ARMED.
        self.state.store(IDLE, Ordering::Relaxed);
        Some(captured)
    }

    /// The requester stops waiting. `true` if the slot is idle again (no
    /// handler had started, or one had already finished and its stack is
    /// dropped); `false` if a handler is writing right now: call
    /// [`poll`](Self::poll) until it is done.
    pub(crate) fn give_up(&self) -> bool {
        if crate::sync::mutant!("capture_give_up_stores") {
            self.state.store(IDLE, Ordering::Relaxed);
            return true;
        }
        // Relaxed: a success means no handler touches the buffer for this
        // request (a later handler's CAS from ARMED fails), nothing to see.
        match self
            .state
            .compare_exchange(ARMED, IDLE, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) | Err(IDLE) => true,
            Err(DONE) => self.poll().is_some(),
            Err(_) => false, // WRITING
        }
    }

    /// The signal handler's side, on thread `tid`: if the slot is armed for
    /// this thread, `record` fills the buffer (it gets the frame array and
    /// returns how many it wrote, and the interrupted pc) and the slot is
    /// done. Async-signal-safe as long as `record` is.
    pub(crate) fn answer(&self, tid: usize, record: impl FnOnce(&mut [usize]) -> (usize, usize)) {
        // Acquire: pairs with `request`'s Release store; `target` is visible.
        if self
            .state
            .compare_exchange(ARMED, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return; // not armed: a late signal of a request given up
        }
        if self.target.load(Ordering::Relaxed) != tid {
            // Release: hands the slot back as it was armed.
            self.state.store(ARMED, Ordering::Release);
            return;
        }
        self.buffer.with_mut(|buffer| {
            // SAFETY: this handler won ARMED → WRITING: nobody else reads or
            // writes the buffer until it stores DONE below.
            let buffer = unsafe { &mut *buffer };
            let (len, pc) = record(&mut buffer.frames);
            buffer.len = len.min(MAX_FRAMES);
            buffer.pc = pc;
        });
        // Release: the requester that acquires DONE sees the buffer.
        self.state.store(DONE, Ordering::Release);
    }
}
