pub(crate) mod context;
pub(crate) mod handoff;
pub(crate) mod job;
pub(crate) mod poll_spin;

pub use handoff::Task;
