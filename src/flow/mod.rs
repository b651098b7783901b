//! Flow control: a bounded queue that pushes back on the submitter
//! ([`slots`]; its public face, `Pool::try_spawn`, `reserve` and
//! [`Permit`](crate::Permit), is `permit.rs`, beside `pool.rs`), and
//! cancellation that reaches a running job ([`cancel`]). Read
//! [`cancel`] first: it is what [`is_cancelled`](crate::is_cancelled)
//! reads, one bit (`STOP`) in two words.
//!
//! - A bounded pool (`Builder::max_queued(n)`) counts the jobs waiting to
//!   start in [`slots::Slots`]. `try_spawn` takes a slot or refuses at once;
//!   `reserve` waits for one in a FIFO line (a `Permit`), `try_reserve`
//!   takes one or refuses at once, as `try_spawn` does; plain `spawn`
//!   takes one even past the bound. A job gives its slot back when it
//!   starts or is cancelled.
//! - A Task's `cancel` (or drop) sets a bit that its running job reads
//!   through [`is_cancelled`](crate::is_cancelled), along with the parts of
//!   the computation it waits for.
//!
//! # What it may import
//!
//! Only the ground: `sync.rs`, `unwind.rs`, `error.rs` and `observe/`. It
//! is ground itself: `task/`, `sched/` and everything above use it, and it
//! names none of them (a cancellation scope holds the words it reads, not
//! the cell and the pool that own them).

pub(crate) mod cancel;
pub(crate) mod slots;
