//! Fork-join: what a caller blocks on, `offload::join`, `offload::scope`
//! and [`Pool::install`](crate::Pool::install).
//!
//! - [`join`]: read first. Its module docs give the costs (inline joins,
//!   shared joins near the root of a recursion, share requests from idle
//!   workers) and the reclaim of an unstolen half.
//! - [`parts`]: what the three build on: [`StackJob`](parts::StackJob) and
//!   [`HeapJob`](parts::HeapJob), the jobs a blocked caller waits for,
//!   [`JobResult`](parts::JobResult), and
//!   [`in_worker`](parts::in_worker), which runs an operation on a worker
//!   of a pool from any thread.
//! - [`scope`]: [`Scope`](crate::Scope), jobs that borrow from the caller's
//!   stack.
//! - [`latch`]: [`Latch`](latch::Latch) and
//!   [`CountLatch`](latch::CountLatch), what `join`, `install` and `scope`
//!   wait on.
//!
//! # What it may import
//!
//! `sched/` (with the blocking/ state it owns), `task/` and the ground;
//! it also asks `blocking::detect::is_helping`, since a helper runs a
//! pool's joins itself. Nothing below imports it.

pub(crate) mod join;
pub(crate) mod latch;
pub(crate) mod parts;
pub(crate) mod scope;
