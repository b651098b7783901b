#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs, missing_debug_implementations)]

mod blocking;
mod error;
mod flow;
mod fork_join;
mod observe;
mod permit;
mod pool;
mod sched;
mod sync;
mod task;
mod unwind;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

pub use blocking::blocking;
pub use error::JoinError;
pub use flow::cancel::{is_cancelled, stop_if_cancelled};
pub use fork_join::scope::Scope;
pub use observe::histogram::Histogram;
pub use observe::metrics::Metrics;
pub use observe::stack::Frame;
pub use observe::watch::{LoopStats, LoopWatch, Stall, StallCause};
pub use permit::{Permit, Reserve, ShutdownError, TryReserveError, TrySpawnError};
pub use pool::{Builder, Pool, Shutdown};
pub use sched::priority::WorkerPriority;
pub use task::Task;

use fork_join::join::{self, join_on_worker};
use fork_join::scope::{self, scope_on_worker};
use sched::registry;
use sched::worker::{self, WorkerThread};
use task::context;

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
///
/// # Context
///
/// With the cargo feature `tracing` the job runs inside the `tracing` span
/// current here (the span moves with the closure; with no subscriber,
/// capturing it is one look at the global dispatcher). Other context
/// (task-locals, an OpenTelemetry `Context`, profiler labels, a request id)
/// does not follow a job by itself: it may run on any worker, long after the
/// spawn. Capture it in the closure and install it for the job's duration,
/// which costs nothing beyond the value moved:
///
/// ```
/// thread_local!(static REQUEST: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
///
/// REQUEST.with(|r| r.set(42));
/// let request = REQUEST.with(|r| r.get()); // captured where the job is made
/// let seen = offload::spawn(move || {
///     let previous = REQUEST.with(|r| r.replace(request)); // installed where it runs
///     let seen = REQUEST.with(|r| r.get());
///     REQUEST.with(|r| r.set(previous)); // (a guard does this on unwind too)
///     seen
/// });
/// assert_eq!(seen.wait().unwrap(), 42);
/// ```
pub fn spawn<F, T>(job: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    WorkerThread::with_current(|worker| match worker {
        Some(worker) => pool::spawn_on(worker.registry(), job),
        None => with_away_or_global(|registry| pool::spawn_on(registry, job)),
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
        None => with_away_or_global(|registry| pool::spawn_blocking_on(registry, job)),
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
        None => with_away_or_global(|registry| {
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
        None => {
            with_away_or_global(|registry| scope::scope_in(registry, scope::in_current_context(op)))
        }
    })
}

/// The pool a free function uses on a thread where no worker runs: the
/// pool of the thread away from it (see [`worker::run_away_from`]), else the
/// global pool.
pub(crate) fn with_away_or_global<R>(f: impl FnOnce(&sync::Arc<registry::Registry>) -> R) -> R {
    worker::with_away(|away| match away {
        Some(registry) => f(registry),
        None => f(pool::global().registry()),
    })
}
