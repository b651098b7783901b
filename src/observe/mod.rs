//! Observability: seeing the loop and the pool.
//!
//! - [`watch`]: [`LoopWatch`](crate::LoopWatch), a future an event loop
//!   polls and a watcher thread that times it, reports [`Stall`](crate::Stall)s
//!   while they happen and keeps [`LoopStats`](crate::LoopStats).
//! - [`stack`]: the stalled thread's stack, symbolized on the watcher
//!   thread; [`capture`] (the slot's protocol) and `signal` (Linux: the
//!   signal handler, the crate's only one) take it.
//! - [`metrics`]: `Pool::metrics`, counters kept per worker and per
//!   thread, summed into a [`Metrics`](crate::Metrics) snapshot, with the
//!   [`Histogram`](crate::Histogram)s of sampled timings.
//! - [`histogram`]: log-scaled histograms of durations with relaxed counts,
//!   for both.
//!
//! Under loom the models drive the two protocols ([`capture`]'s slot and
//! [`watch`]'s tick) directly; the watcher thread and the signal path are
//! not built, so what only they use is dead code there.
#![cfg_attr(loom, allow(dead_code))]

pub(crate) mod capture;
pub(crate) mod histogram;
pub(crate) mod metrics;
#[cfg(all(target_os = "linux", not(loom)))]
mod signal;
pub(crate) mod stack;
pub(crate) mod watch;
