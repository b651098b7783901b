//! The capture slot: how the watcher thread asks a stalled loop thread for
//! a copy of its registers and of the top of its stack, and how the signal
//! handler on that thread answers.
//!
//! The slot is a preallocated buffer (registers, a window of stack bytes)
//! with a state word. One *requester* (the watcher thread;
//! [`CaptureSlot::request`] callers are serialised by a lock in
//! `signal`) and any number of *handlers* (a signal handler on whatever
//! thread the signal lands, possibly a late signal from an earlier request)
//! share it:
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
//! The handler only copies: the interrupted registers and the bytes from
//! the interrupted stack pointer upwards, clamped to the thread's stack
//! bounds (which the request carries: the loop thread recorded them). The
//! requester unwinds the copy afterwards, on its own thread.
//!
//! Invariants:
//! - Only the handler that moved `ARMED → WRITING` writes the buffer, and only
//!   until it stores `DONE` (or `ARMED` again); only the requester reads it,
//!   and only after it saw `DONE`. So the buffer is never read and written at
//!   once (the loom models `capture_slot_timeout_races_the_handler` and
//!   `capture_slot_beside_the_proc_path` check this with loom's cell
//!   tracking).
//! - The requester gives up only by a CAS `ARMED → IDLE`: it can never take
//!   the slot back from a handler that is writing (mutant
//!   `capture_give_up_stores`). A requester that finds `WRITING` waits: the
//!   handler is running on a live thread and will finish.
//! - A handler writes only for the thread the request names, within the
//!   request's stack bounds (mutant `capture_ignores_target`: a handler on
//!   another thread writes its own stack).
//! - The handler does only atomic operations, plain loads of its own stack
//!   and plain stores into the buffer: no lock, no allocation, nothing that
//!   is not async-signal-safe.

use std::ops::Range;

use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

/// How many bytes of the stack one capture copies, from the interrupted
/// stack pointer upwards: enough for the frames of a deep async stack
/// (tokio's loop, its task, the user's futures and the blocking call).
#[cfg(not(loom))]
pub(crate) const STACK_WINDOW: usize = 128 * 1024;
/// Under loom, a few words: the models check the protocol, not the copy.
#[cfg(loom)]
pub(crate) const STACK_WINDOW: usize = 4 * std::mem::size_of::<usize>();

/// How many registers a capture keeps (their meaning is the platform's:
/// see `signal`).
pub(crate) const REGS: usize = 4;

const IDLE: usize = 0;
const ARMED: usize = 1;
const WRITING: usize = 2;
const DONE: usize = 3;

/// A handler's copy, as the requester gets it.
#[derive(Debug)]
pub(crate) struct Captured {
    /// The interrupted registers (platform order, see `signal`).
    pub(crate) regs: [usize; REGS],
    /// The address `stack[0]` was copied from (the interrupted stack
    /// pointer).
    pub(crate) stack_start: usize,
    /// The stack bytes from `stack_start` upwards.
    pub(crate) stack: Vec<u8>,
    /// Why the handler copied nothing, if it did not.
    pub(crate) missing: Option<&'static str>,
}

/// The preallocated buffer a handler fills.
pub(crate) struct Buffer {
    pub(crate) regs: [usize; REGS],
    pub(crate) stack_start: usize,
    pub(crate) len: usize,
    pub(crate) stack: [u8; STACK_WINDOW],
    pub(crate) missing: Option<&'static str>,
}

const EMPTY: Buffer = Buffer {
    regs: [0; REGS],
    stack_start: 0,
    len: 0,
    stack: [0; STACK_WINDOW],
    missing: None,
};

/// See the module docs.
pub(crate) struct CaptureSlot {
    state: AtomicUsize,
    /// The OS thread id the armed request is for.
    target: AtomicUsize,
    /// The target thread's stack: its lowest and one past its highest
    /// address.
    stack_low: AtomicUsize,
    stack_high: AtomicUsize,
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
            stack_low: AtomicUsize::new(0),
            stack_high: AtomicUsize::new(0),
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
            stack_low: AtomicUsize::new(0),
            stack_high: AtomicUsize::new(0),
            buffer,
        }
    }

    /// Arms the slot for thread `tid`, whose stack is `stack`. The caller
    /// then signals that thread and calls [`poll`](Self::poll) until it
    /// answers or it gives up.
    ///
    /// # Panics
    /// If the slot is not idle: one request at a time (callers hold a lock).
    pub(crate) fn request(&self, tid: usize, stack: Range<usize>) {
        assert_eq!(
            self.state.load(Ordering::Relaxed),
            IDLE,
            "one capture at a time"
        );
        // Relaxed (three): published by the Release store of ARMED below.
        self.target.store(tid, Ordering::Relaxed);
        self.stack_low.store(stack.start, Ordering::Relaxed);
        self.stack_high.store(stack.end, Ordering::Relaxed);
        // Release: a handler that acquires ARMED sees the request, and every
        // read of the buffer this requester made before (it reads only
        // before it stores IDLE or ARMED) happens before the handler's
        // writes.
        self.state.store(ARMED, Ordering::Release);
    }

    /// The requester's check: `Some` with the copy once the handler is done
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
                regs: buffer.regs,
                stack_start: buffer.stack_start,
                stack: buffer.stack[..buffer.len.min(STACK_WINDOW)].to_vec(),
                missing: buffer.missing,
            }
        });
        // Relaxed: the next `request` (this same thread) orders the reads
        // above before any handler's writes with its Release store of ARMED.
        self.state.store(IDLE, Ordering::Relaxed);
        Some(captured)
    }

    /// The requester stops waiting. `true` if the slot is idle again (no
    /// handler had started, or one had already finished and its copy is
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
    /// this thread, `record` fills the buffer (given the thread's stack
    /// bounds from the request) and the slot is done. Async-signal-safe as
    /// long as `record` is.
    pub(crate) fn answer(&self, tid: usize, record: impl FnOnce(&mut Buffer, Range<usize>)) {
        // Acquire: pairs with `request`'s Release store; the request is
        // visible.
        if self
            .state
            .compare_exchange(ARMED, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return; // not armed: a late signal of a request given up
        }
        if self.target.load(Ordering::Relaxed) != tid
            && !crate::sync::mutant!("capture_ignores_target")
        {
            // Release: hands the slot back as it was armed.
            self.state.store(ARMED, Ordering::Release);
            return;
        }
        let stack = self.stack_low.load(Ordering::Relaxed)..self.stack_high.load(Ordering::Relaxed);
        self.buffer.with_mut(|buffer| {
            // SAFETY: this handler won ARMED → WRITING: nobody else reads or
            // writes the buffer until it stores DONE below.
            let buffer = unsafe { &mut *buffer };
            buffer.len = 0;
            buffer.missing = None;
            record(buffer, stack);
            buffer.len = buffer.len.min(STACK_WINDOW);
        });
        // Release: the requester that acquires DONE sees the buffer.
        self.state.store(DONE, Ordering::Release);
    }
}
