pub(crate) mod join;
pub(crate) mod latch;
pub(crate) mod parts;
pub(crate) mod scope;
