//! clasp-rs: overlap-constrained selection of 3D query patches for active learning.
//!
//! [`engine`] is pure Rust (no Python) and is what `cargo test` exercises; the `python`
//! feature adds the thin `PyO3` binding that the `clasp_rs` package loads as `_clasp_rs`.

pub mod engine;

#[cfg(feature = "python")]
mod python;
