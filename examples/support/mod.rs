//! Helpers the examples share: the command-line parser, the calibrated CPU
//! work, the machine's load and cores, a clock and timer, a percentile, a
//! table printer, and SVG text.
//!
//! Each example includes this directory with
//! `#[path = "support/mod.rs"] mod support;` (from `examples/x.rs`) or
//! `#[path = "../support/mod.rs"] mod support;` (from `examples/x/y.rs`).
//! Cargo builds no example of its own from it: it has no `main.rs`.

// Each example uses only some of these helpers; the rest would warn.
#![allow(dead_code)]

pub mod args;
pub mod clock;
pub mod machine;
pub mod stats;
pub mod svg;
pub mod table;
pub mod work;
