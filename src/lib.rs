//! # offload
//!
//! A work-stealing CPU task pool whose every submission is a future that any
//! async executor can await.
//!
//! Async programs must never run CPU-bound work on their event loop: one
//! 50 ms hash or parse freezes every other request on that loop. `offload`
//! runs such work on a pool with one worker per core and hands the result
//! back through a [`Task`], which tokio, smol, async-executor or any futures
//! executor can `.await` without blocking — Python's
//! `loop.run_in_executor(pool, f)`, for Rust, and executor-agnostic.
//!
//! ```
//! # pollster::block_on(async {
//! // On any executor: the loop stays free while a worker hashes.
//! let digest = offload::spawn(|| {
//!     (0..5_000_000u64).fold(0u64, |h, x| h.rotate_left(5) ^ x.wrapping_mul(0x9E37))
//! })
//! .await
//! .expect("the job panicked");
//! # let _ = digest;
//! # });
//! ```
//!
//! - [`Pool::global`]: a handle to the pool the free functions use, for its
//!   metrics, shedding and shutdown.
//! - [`Pool::spawn`] / [`spawn`]: queue a job, get a [`Task`] (cancel it by
//!   dropping it or with [`cancel`](Task::cancel), [`detach`](Task::detach)
//!   it, [`wait`](Task::wait) on it, with a
//!   [timeout](Task::wait_timeout) if need be). A running job sees its
//!   cancellation through [`is_cancelled`], or stops there with
//!   [`stop_if_cancelled`] (its Task then resolves as cancelled).
//! - Blocking calls: [`Pool::spawn_blocking`] / [`spawn_blocking`] run one
//!   on a spare thread, never on a worker (Python's `asyncio.to_thread`);
//!   [`blocking`] inside a job lends the worker's place to a spare thread
//!   while the call blocks ([`Builder::max_blocking_threads`]).
//! - Backpressure: [`Builder::max_queued`] bounds the queue;
//!   [`Pool::try_spawn`] refuses a job when it is full ([`TrySpawnError`]),
//!   [`Pool::reserve`] waits for room (a [`Permit`]) and
//!   [`Pool::try_reserve`] takes it or refuses at once
//!   ([`TryReserveError`]). For Python's
//!   `Executor.map(..., buffersize=n)`, see [`Pool::spawn`]'s example with
//!   `futures::StreamExt::buffered`.
//! - [`join`], [`scope`], [`Pool::install`]: fork-join inside the pool,
//!   borrowing from the caller's stack.
//! - [`Pool::shutdown`], [`Pool::shutdown_now`]: graceful or cancelling
//!   shutdown; every Task resolves either way. From async code,
//!   [`Pool::shutdown_async`] (a [`Shutdown`] future) or
//!   [`Pool::shutdown_timeout`] do not park the loop for long.
//!
//! - [`Pool::metrics`]: a snapshot of what the pool does ([`Metrics`]):
//!   jobs queued and running, totals, busy time, and sampled queue-wait
//!   and run-time [`Histogram`]s.
//!
//! Cargo features (off by default):
//! - `metrics`: `Metrics::record` writes a snapshot to the `metrics`
//!   crate's facade, for any exporter (Prometheus, StatsD, OpenTelemetry).
//! - `tracing`: every job runs inside the `tracing` span that was current
//!   where it was made: [`spawn`], [`spawn_blocking`], [`Pool::try_spawn`]
//!   and [`Permit::spawn`] capture it (as `tracing::Instrument` would), and
//!   the halves of a [`join`], the jobs of a [`scope`] and an
//!   [`install`](Pool::install) body run in the span current where `join`,
//!   `scope`, `install` (or [`Scope::spawn`]) was called, on whichever
//!   thread runs them. The span moves with the closure (no allocation of
//!   its own); with no subscriber, capturing it is a look at the global
//!   dispatcher. Without the feature nothing is captured.
//!
//! **Other context** (task-locals, an OpenTelemetry `Context`, profiler
//! labels, a request id) does not follow a job by itself: a job may run on
//! any worker, long after the spawn. Capture it in the closure and install
//! it for the job's duration, which costs nothing beyond the value moved:
//!
//! ```
//! thread_local!(static REQUEST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
//!
//! REQUEST.with(|r| r.set(42));
//! let request = REQUEST.with(|r| r.get()); // captured where the job is made
//! let seen = offload::spawn(move || {
//!     let previous = REQUEST.with(|r| r.replace(request)); // installed where it runs
//!     let seen = REQUEST.with(|r| r.get());
//!     REQUEST.with(|r| r.set(previous)); // (a guard does this on unwind too)
//!     seen
//! });
//! assert_eq!(seen.wait().unwrap(), 42);
//! ```
//!
//! A panicking job never takes a worker down: its Task resolves to a
//! [`JoinError`] that carries the panic payload.
//!
//! See `ARCHITECTURE.md` for how it works and which invariants hold it up.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, missing_debug_implementations)]

mod blocking;
mod completions;
mod context;
mod error;
mod flow;
mod idle;
mod injector;
mod job;
mod join;
mod latch;
mod observe;
mod parker;
mod poll_spin;
mod pool;
mod priority;
mod queue;
mod registry;
mod scope;
mod sleep;
mod spin;
mod sync;
mod task;
mod unwind;
mod worker;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

pub use blocking::blocking;
pub use error::JoinError;
pub use flow::cancel::{is_cancelled, stop_if_cancelled};
pub use flow::{Permit, Reserve, ShutdownError, TryReserveError, TrySpawnError};
pub use observe::histogram::Histogram;
pub use observe::metrics::Metrics;
pub use observe::stack::Frame;
pub use observe::watch::{LoopStats, LoopWatch, Stall, StallCause};
pub use pool::{Builder, Pool, Shutdown};
pub use priority::WorkerPriority;
pub use scope::Scope;
pub use task::Task;

use join::join_on_worker;
use scope::scope_on_worker;
use worker::WorkerThread;

/// Queues `job` on the current pool and returns its [`Task`].
///
/// The current pool is the one whose worker calls `spawn` (inside a job, a
/// [`join`] or [`scope`] closure, or [`Pool::install`]), as for [`join`]
/// and [`scope`], and as rayon's and tokio's `spawn` do; anywhere else it is
/// the global pool, created with one worker per core on first use, or as
/// [`Builder::build_global`] configured it. Use [`Pool::spawn`] for a
/// particular pool. On a worker of a pool that is shutting down (inside
/// one of its last jobs, or an `on_thread_stop` hook), the Task is
/// therefore cancelled at once, as any spawn after shutdown is.
///
/// ```
/// # pollster::block_on(async {
/// let n = offload::spawn(|| 6 * 7).await.unwrap();
/// assert_eq!(n, 42);
/// # });
/// ```
pub fn spawn<F, T>(job: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    WorkerThread::with_current(|worker| match worker {
        Some(worker) => pool::spawn_on(worker.registry(), job),
        None => blocking::with_away_or_global(|registry| pool::spawn_on(registry, job)),
    })
}

/// Runs `job`, a blocking call, on a spare thread of the current pool and
/// returns its [`Task`]: Python's `asyncio.to_thread(f)`.
///
/// The current pool is the one [`spawn`] would use. See
/// [`Pool::spawn_blocking`]: the job never runs on one of the pool's
/// workers, so it never holds up their CPU jobs.
///
/// ```
/// # pollster::block_on(async {
/// let text = offload::spawn_blocking(|| {
///     std::fs::read_to_string("Cargo.toml") // a blocking read
/// })
/// .await
/// .expect("the job panicked");
/// assert!(text.unwrap().contains("[package]"));
/// # });
/// ```
pub fn spawn_blocking<F, T>(job: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    WorkerThread::with_current(|worker| match worker {
        Some(worker) => pool::spawn_blocking_on(worker.registry(), job),
        None => blocking::with_away_or_global(|registry| pool::spawn_blocking_on(registry, job)),
    })
}

/// Runs `a` and `b`, potentially in parallel, and returns both results.
///
/// On a worker it runs on that worker's pool; elsewhere on the global pool
/// (blocking the caller until both are done). A panic in either closure is
/// re-raised after both finished.
///
/// ```
/// fn fib(n: u64) -> u64 {
///     if n < 2 { return n; }
///     let (a, b) = offload::join(|| fib(n - 1), || fib(n - 2));
///     a + b
/// }
/// assert_eq!(fib(20), 6765);
/// ```
pub fn join<A, B, RA, RB>(a: A, b: B) -> (RA, RB)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    WorkerThread::with_current(|worker| match worker {
        // `a` runs here, in the caller's context already.
        Some(worker) => join_on_worker(worker, a, context::wrap(b)),
        None => blocking::with_away_or_global(|registry| {
            join::join_in(registry, context::wrap(a), context::wrap(b))
        }),
    })
}

/// Creates a [`Scope`] whose jobs may borrow from the caller's stack, and
/// returns once all of them have finished.
///
/// On a worker it runs on that worker's pool; elsewhere on the global pool.
/// The first panic of the body or of a job is re-raised once every job has
/// finished.
///
/// ```
/// let words = ["alpha", "beta", "gamma"];
/// let mut lengths = [0usize; 3];
/// offload::scope(|s| {
///     for (word, len) in words.iter().zip(lengths.iter_mut()) {
///         s.spawn(move |_| *len = word.len());
///     }
/// });
/// assert_eq!(lengths, [5, 4, 5]);
/// ```
pub fn scope<'scope, OP, R>(op: OP) -> R
where
    OP: FnOnce(&Scope<'scope>) -> R + Send,
    R: Send,
{
    WorkerThread::with_current(|worker| match worker {
        Some(worker) => scope_on_worker(worker, op),
        None => blocking::with_away_or_global(|registry| {
            scope::scope_in(registry, scope::in_current_context(op))
        }),
    })
}
