//! What a queue carries: a job, and the handoff cell behind a spawned
//! [`Task`].
//!
//! - [`handoff`]: the handoff cell (one allocation per spawn) and [`Task`],
//!   the future every submission returns. Read it first: its module docs
//!   hold the state-bit table (`RUNNING`, `COMPLETE`, `CANCELLED`,
//!   `TASK_GONE`, `WAKER`, `JOB_REF`, `TASK_REF`) and who may touch what.
//!   `Task::wait` and `wait_timeout`, which block a thread, are the
//!   scheduler's (`sched/block_on.rs`).
//! - [`job`]: [`JobHeader`](job::JobHeader), [`JobRef`](job::JobRef) and
//!   [`Mode`](job::Mode), the type-erased job every queue holds.
//! - [`poll_spin`]: how long a Task's first poll watches its cell before it
//!   registers its waker (a per-thread hint).
//! - [`completions`]: completion wake-ups a worker holds back while the
//!   pool is backlogged, and the rest of a batch that the thread polling
//!   a Task to completion wakes (an event loop is woken once per batch).
//! - [`context`]: what a job carries from where it was made to where it
//!   runs (the `tracing` span).
//!
//! # What it may import
//!
//! Only the ground: `sync.rs`, `unwind.rs`, `error.rs`, `flow/` (the
//! cancellation bit and the queue slot a Task's job holds) and `observe/`
//! (the counters a job bumps). Nothing here knows the scheduler.

pub(crate) mod completions;
pub(crate) mod context;
pub(crate) mod handoff;
pub(crate) mod job;
pub(crate) mod poll_spin;

pub use handoff::Task;
