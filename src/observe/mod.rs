//! The observability layer: what a pool tells about itself.
//!
//! - [`metrics`]: `Pool::metrics`, counters kept per worker and per
//!   thread, summed into a [`Metrics`](crate::Metrics) snapshot, with the
//!   [`Histogram`](crate::Histogram)s of sampled timings
//!   ([`histogram`]).

pub(crate) mod histogram;
pub(crate) mod metrics;
