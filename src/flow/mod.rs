//! Flow control: a bounded queue that pushes back on the submitter
//! ([`slots`], [`permit`]), and cancellation that reaches a running job
//! ([`cancel`]).
//!
//! - A bounded pool (`Builder::max_queued(n)`) counts the jobs waiting to
//!   start in [`slots::Slots`]. `try_spawn` takes a slot or refuses at once;
//!   `reserve` waits for one in a FIFO line ([`Permit`]), `try_reserve`
//!   takes one or refuses at once, as `try_spawn` does; plain `spawn`
//!   takes one even past the bound. A job gives its slot back when it
//!   starts or is cancelled.
//! - A Task's `cancel` (or drop) sets a bit that its running job reads
//!   through [`is_cancelled`](crate::is_cancelled), along with the parts of
//!   the computation it waits for.

pub(crate) mod cancel;
pub(crate) mod slots;
