//! Observability: seeing the loop and the pool.
//!
//! - [`watch`]: [`LoopWatch`](crate::LoopWatch), a future an event loop
//!   polls and a watcher thread that times it, reports [`Stall`](crate::Stall)s
//!   while they happen and keeps [`LoopStats`](crate::LoopStats).
//! - [`stack`]: the stalled thread's stack, symbolized on the watcher
//!   thread; `signal` (Linux: the signal handler, the crate's only one,
//!   and the `/proc` path for a thread in a system call) copies its
//!   registers and the top of its stack, through [`capture`]'s slot;
//!   `unwind` walks the copy with the loaded objects' DWARF CFI; `proc`
//!   reads what `/proc` says of the thread.
//! - [`metrics`]: `Pool::metrics`, counters kept per worker and per
//!   thread, summed into a [`Metrics`](crate::Metrics) snapshot, with the
//!   [`Histogram`](crate::Histogram)s of sampled timings.
//! - [`histogram`]: log-scaled histograms of durations with relaxed counts,
//!   for both.
//!
//! # What it may import
//!
//! Only the ground: `sync.rs` (including `current_tid`, the gettid call the
//! signal path and `/proc` reads use), `unwind.rs` and `error.rs`. It is
//! ground itself: every folder above counts and times through it.
//!
//! Under loom the models drive the two protocols ([`capture`]'s slot and
//! [`watch`]'s tick) directly; the watcher thread and the signal path are
//! not built, so what only they use is dead code there.
#![cfg_attr(loom, allow(dead_code))]

pub(crate) mod capture;
pub(crate) mod histogram;
pub(crate) mod metrics;
#[cfg(all(target_os = "linux", not(loom)))]
mod proc;
#[cfg(all(target_os = "linux", not(loom)))]
mod signal;
pub(crate) mod stack;
#[cfg(all(
    target_os = "linux",
    not(loom),
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod unwind;
pub(crate) mod watch;
