//! Blocking calls in the same pool: [`blocking`] (compensation) and
//! `spawn_blocking` (a job that is one blocking call).
//!
//! A pool runs CPU jobs on `threads` workers. A job that blocks (a sync
//! HTTP call, a sync database driver, `std::fs`, a `sleep` in a library)
//! leaves its core idle while the jobs queued behind it wait. Two ways out,
//! both on the pool's *spare threads* ([`spares`]), at most
//! `Builder::max_blocking_threads` running blocking jobs and as many
//! others compensating:
//!
//! - **`spawn_blocking(f)`** runs `f` on a spare thread, never on a worker:
//!   the workers' CPU jobs do not wait behind it, however long it blocks.
//!   Past the cap the jobs wait in a FIFO queue for a spare.
//! - **`blocking(f)`**, called inside a job, tells the pool that this
//!   thread may block. With a detector (the default on Linux) the call is
//!   *marked* ([`runner::Runner::mark`]): the thread keeps its worker's
//!   *place* (its deque, its join stack, its sleep slot) but runs `f` away
//!   from it, and the detector reads the thread from 100 µs into the call
//!   on, compensating it as an unmarked block once it is off the CPU (see
//!   "Marked calls" in [`detect`]); a call that returns sooner, or
//!   computes, gets no helper. After a marked call of 10 ms or more on
//!   that place that the detector last read off the CPU (or never read),
//!   and always without a detector, the place passes at
//!   once, if jobs are waiting,
//!   to a spare that *stands in* for the duration of `f` (see [`baton`]),
//!   so that `threads` threads keep running CPU jobs. When `f` returns, the
//!   thread *comes back early*: it does not wait for its place, but
//!   finishes its job without it, as a thread outside the pool would,
//!   while the stand-in goes on running the place's jobs; it takes the
//!   place back where its frames touch the place again (the end of its
//!   job, or of the `join` or `scope` closure that called `blocking`), at
//!   the stand-in's next job boundary, and the stand-in goes back to the
//!   spares. So a job's answer never waits for the stand-in's job, and the
//!   place's jobs never wait for the rest of the caller's job. The price:
//!   while the rest of that job runs, the place has two threads on the CPU
//!   (if the stand-in's job outlasts it, the thread then waits, off the
//!   CPU). Each such pair holds a stand-in's turn, so the pool runs at most
//!   `threads + max_blocking_threads` CPU jobs at once, as with helpers.
//! - **Unmarked** (`Builder::detect_blocking`, [`detect`]): a job that
//!   blocks without saying so is noticed after 100 µs off the CPU, and a
//!   spare thread *helps* (runs queued jobs without a place) until it is
//!   back; the count of threads running CPU jobs then stays at `threads`
//!   give or take one job around each change.
//!
//! # Who owns which thread
//!
//! - A **worker thread** owns its `WorkerThread` (its place) on its stack
//!   for the pool's life, and leaves it only while its place is held by
//!   nobody else and no thread is away from it.
//! - A **spare thread** owns nothing: it runs blocking jobs, stand-in
//!   turns and helper turns handed to it under the spares' lock, and
//!   exits after `Builder::blocking_keep_alive` idle or when the pool
//!   shuts down.
//! - The **detector thread** (with `detect_blocking`) owns nothing either:
//!   it reads counters and `/proc`, and starts helpers.
//! - A thread **away** from a place (inside `f`, marked or lent, or back
//!   from a lent call and finishing its job) runs user code only: on it, the pool's functions
//!   see no worker (`offload::spawn` and friends still reach its pool,
//!   through a thread-local pointer to it), and a nested `blocking` just
//!   runs its closure.
//!
//! # How the count is restored, on every path
//!
//! A marked call never leaves its place: when `f` returns or unwinds, the
//! thread takes back the detector's flag for it
//! ([`runner::Runner::marked_call_ended`]; the detector re-checks after
//! flagging, so a flag set as the call ends is taken back by one side or
//! the other), and a helper started for it leaves after its current job.
//! For a lent place:
//!
//! - `f` returns: the thread finishes its job without its place (on it,
//!   the pool's functions see no worker, as inside `f`: a spawn goes to
//!   the injector, a `join`, `scope` or `install` runs on a worker while
//!   it waits, a wait parks), then comes back
//!   ([`baton::Baton::come_back`]) where its frames resume on the place
//!   (`WorkerThread::hold`: after the job, after a shared `join`'s first
//!   half, before a `scope` waits for its jobs), waiting at most for the
//!   stand-in's current job. It does not join the line before: a place
//!   granted to a thread that is busy elsewhere (or waits for a job that
//!   only the place would run) would run nothing. Nor does it take the
//!   place back when its job next uses the pool: it would then wait for
//!   the stand-in's job in the middle of user code, perhaps holding a lock
//!   that job needs; where it does wait, the user code above has returned.
//! - `f` panics: the same, from a drop guard, before the panic goes on.
//! - No spare is free and none can be started (the cap, a failed thread
//!   start, a pool shutting down): the thread keeps its place and blocks
//!   uncompensated, as without `blocking`.
//! - Shutdown: a stand-in that finds the pool terminating and no work
//!   left leaves the place free; the thread away takes it back without
//!   waiting, and its worker exits after it (it waits for every thread
//!   away from its place).

//!
//! # The files, and what they may import
//!
//! - [`blocking`] (this file) and [`detect`] (the detector thread, the
//!   helper's turn and `is_helping`) import `sched/`, `task/` and the
//!   ground. Read [`detect`]'s docs for why the detector sleeps and how it
//!   counts.
//! - [`baton`] (a place's hand-over), [`runner`] (the detector's state:
//!   `Runner`, `Compensation`, `Detector`) and [`thread_state`] (reading
//!   `/proc`) import only `sched/parker.rs` and the ground: the scheduler
//!   owns them.
//! - [`spares`] (the spare threads) is the third file of the scheduler's
//!   one circle, with `sched/registry.rs` and `sched/worker.rs` (see
//!   `sched/mod.rs`).
//!
//! Which pool a thread is on, or away from, is `sched/worker.rs`'s
//! (`AWAY` beside `CURRENT`); `blocking()` calls down to it.

pub(crate) mod baton;
pub(crate) mod detect;
pub(crate) mod runner;
pub(crate) mod spares;
pub(crate) mod thread_state;

use std::ptr;

use crate::sched::worker::WorkerThread;

/// Runs `f`, a blocking call, without leaving the pool short of a thread.
///
/// Inside a job of a pool (or a [`join`](crate::join) or
/// [`scope`](crate::scope) closure, or [`Pool::install`](crate::Pool::install)),
/// it tells the pool that this thread may block, so that while `f` blocks,
/// another thread (a spare, started if need be) runs the jobs waiting
/// behind it and the pool keeps running `threads` CPU jobs. How, depends on
/// the call:
///
/// - **By default** (blocking detection on, Linux), the call is *marked*:
///   the thread keeps its worker's place, and the pool's detector looks at
///   it 100 µs into the call, then at intervals a quarter as long as for a
///   job nobody marked. Once it sees the thread off the CPU (or cannot
///   read its state), a spare thread runs the waiting jobs until `f`
///   returns. A call that returns within 100 µs, or that computes, gets no
///   spare: no thread is handed anything, and none computes beside it (the
///   mark costs a clock read and, if jobs wait, at most a wake-up of the
///   detector).
/// - **After a long call** (the last marked call on this worker lasted
///   10 ms or more and was last seen off the CPU, as a network round trip
///   is),
///   and **without a detector** (`Builder::detect_blocking(false)`, or not
///   Linux), the worker's place passes at once to a spare that *stands in*
///   while `f` runs, if jobs are waiting. When `f` returns, `blocking`
///   returns its result at once: the rest of the job runs on this thread
///   without its place, as code on a thread outside the pool would
///   ([`spawn`](crate::spawn) still queues on this pool, a
///   [`join`](crate::join) or [`scope`](crate::scope) runs on its workers
///   while this thread waits), and the thread takes its place back when
///   the job (or the `join` or `scope` closure that called `blocking`)
///   ends, once the stand-in's current job is done. A call shorter than
///   10 ms sends the next one back to the detector.
///
/// While `f` runs, this thread is not a worker, either way: a `join` or
/// `scope` inside `f` runs on the pool's workers while this thread waits,
/// [`spawn`](crate::spawn) queues on this pool, and a nested `blocking`
/// just runs its closure.
///
/// A panic in `f` propagates to the caller as usual, after the place is
/// back. The rule, with `threads` workers and `Builder::max_blocking_threads`
/// `max`: while `f` blocks, `threads` other threads run CPU jobs; after it,
/// for the rest of the calling job at most (or the rest of a helper's
/// current job), one more. Every such extra thread holds one of the `max`
/// turns that stand-ins and helpers share, so at most `threads + max`
/// threads run the pool's CPU jobs at once. The job's answer never waits
/// for a stand-in's or a helper's job.
///
/// Off a worker (on the event loop, on a thread of your own, inside a
/// [`spawn_blocking`](crate::spawn_blocking) job) it simply runs `f`, and
/// so do nested calls (the outermost one counts) and calls in the rest of
/// a job whose earlier call came back early; on a detector's helper, the
/// detector sees the block as it sees an unmarked one (a helper's job start
/// is known exactly).
///
/// No compensation happens when nothing waits, when
/// `Builder::max_blocking_threads` spare threads already compensate, or
/// while the pool shuts down. Neither a stand-in nor a helper takes a
/// thread that [`spawn_blocking`](crate::spawn_blocking) jobs need (the
/// two are counted apart), so `f` may wait for such a job.
///
/// **A job that is one blocking call from start to end** (a request that
/// is one database query, one HTTP call) belongs in
/// [`Pool::spawn_blocking`](crate::Pool::spawn_blocking), not in
/// `spawn(|| blocking(f))`: `spawn_blocking` never takes a worker, so the
/// call starts as soon as a spare thread is free instead of waiting in the
/// queue behind CPU jobs, and no stand-in is needed. `blocking` is for a
/// job that blocks in the middle of CPU work. `examples/sqlite_request.rs`
/// measures the three ways (and leaving the call unmarked).
///
/// ```
/// use std::time::Duration;
///
/// let pool = offload::Pool::builder().threads(1).build().unwrap();
/// let fetch = pool.spawn(|| {
///     // A sync call that blocks for a while: another thread runs the job
///     // below meanwhile.
///     let body = offload::blocking(|| {
///         std::thread::sleep(Duration::from_millis(50));
///         "response"
///     });
///     body.len()
/// });
/// let sum = pool.spawn(|| (1..=100u64).sum::<u64>());
/// assert_eq!(sum.wait().unwrap(), 5050);
/// assert_eq!(fetch.wait().unwrap(), 8);
/// ```
pub fn blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R,
{
    // A raw pointer, so that the thread-local borrow does not span `f`.
    let worker = WorkerThread::with_current(|worker| worker.map(ptr::from_ref));
    match worker {
        None => f(),
        // SAFETY: the current worker's place outlives this call: its job
        // (our caller) runs inside it.
        Some(worker) => unsafe { &*worker }.blocking(f),
    }
}
