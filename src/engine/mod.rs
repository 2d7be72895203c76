//! The selection engine: score volumes in, non-overlapping patches out.
//!
//! Pipeline for one score map: [`volume`] gives plane-wise access to an array or a
//! memory-mapped `.npy` ([`npy`]); [`box_sums`] turns it into exact fixed-point box sums
//! over the candidate [`geometry::Grid`], plane by plane; [`ranking`] turns sums into
//! float32 ranking keys (optionally with [`noise`]); [`select`] takes the best
//! non-overlapping candidates; [`strata`] runs several maps per volume and many volumes in
//! parallel inside the crate's own [`pool`].

pub mod box_sums;
pub mod cancel;
pub mod error;
pub mod geometry;
pub mod noise;
pub mod npy;
pub mod pool;
pub mod ranking;
pub mod select;
pub mod strata;
pub mod volume;

pub use cancel::Cancel;
pub use error::{EngineError, Result};
pub use geometry::{Box3, Grid};
pub use ranking::Noise;
pub use strata::{select_volumes, MapJob, Taken, VolumeJob};
pub use volume::{ScoreView, Scores};
