//! From box sums to ranking keys: the mean, or `ln(mean) + Gumbel / beta` (power sampling).
//!
//! Keys are stored as float32 so that a stride-1 grid of 10^8 candidates costs 400 MB, not
//! 800 MB; candidates whose keys agree to float32 resolution (~6e-8 relative) tie, and ties
//! go to the lower C-order candidate index. Reported scores are recomputed in float64.
//!
//! Box-mean keys are the means scaled by a power of two per map when the map lies outside
//! float32's range ([`FixedPoint::key_scale`]), so float64 maps of any magnitude rank by
//! their means rounded to 24 significant bits instead of overflowing to inf or flushing to
//! zero; for other maps the keys are the means themselves. Power-sampling keys need no
//! scaling: `|ln(mean)| <= 745` for any positive float64 mean.

use ndarray::Array3;
use rayon::prelude::*;

use super::box_sums::{box_sums_planes, FixedPoint, RING_BUDGET_BYTES};
use super::cancel::Cancel;
use super::error::{EngineError, Result};
use super::geometry::Grid;
use super::noise::gumbel;
use super::volume::Scores;

/// Power-sampling noise: `Gumbel(0, 1) / beta` from the counter-based generator keyed by
/// `(seed, stream, candidate index)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Noise {
    pub beta: f64,
    pub seed: u64,
    pub stream: u64,
}

impl Noise {
    pub fn validate(&self) -> Result<()> {
        if self.beta.is_finite() && self.beta > 0.0 {
            Ok(())
        } else {
            Err(EngineError::InvalidArgument(format!(
                "beta must be a finite number > 0, got {}",
                self.beta
            )))
        }
    }
}

/// The float64 ranking value of a candidate with box mean `mean`.
#[inline(always)]
pub fn key_of(mean: f64, index: usize, noise: Option<&Noise>) -> f64 {
    match noise {
        None => mean,
        // A zero mean ranks below everything positive, whatever its noise.
        Some(_) if mean <= 0.0 => f64::NEG_INFINITY,
        Some(n) => mean.ln() + gumbel(n.seed, n.stream, index as u64) / n.beta,
    }
}

/// Splits the grid's z-rows into contiguous chunks, one task each. Each chunk re-reads `dz`
/// planes to warm its window up, so chunks are only as many as there are threads.
fn z_chunks(grid: &Grid) -> usize {
    let nz = grid.counts[0];
    let per_chunk = nz.div_ceil(rayon::current_num_threads().max(1));
    per_chunk.max(1)
}

/// Fills `out[i] = value(box sum of candidate i, i)` for every candidate, in parallel.
fn map_box_sums<T: Send>(
    scores: &Scores,
    grid: &Grid,
    fx: FixedPoint,
    out: &mut [T],
    cancel: &Cancel,
    value: impl Fn(i64, usize) -> T + Sync,
) -> Result<()> {
    let plane_len = grid.counts[1] * grid.counts[2];
    let rows = z_chunks(grid);
    out.par_chunks_mut(rows * plane_len)
        .enumerate()
        .for_each(|(chunk, out)| {
            let kz0 = chunk * rows;
            let kz_range = kz0..kz0 + out.len() / plane_len;
            box_sums_planes(
                scores,
                grid,
                fx,
                kz_range,
                RING_BUDGET_BYTES,
                cancel,
                |kz, sums| {
                    let base = kz * plane_len;
                    let dst = &mut out[(kz - kz0) * plane_len..][..plane_len];
                    for (i, (d, &s)) in dst.iter_mut().zip(sums).enumerate() {
                        *d = value(s, base + i);
                    }
                },
            );
        });
    cancel.check()
}

/// float32 ranking keys of every candidate, C-order over `grid.counts`: the box mean (times
/// the map's power of two, see [`FixedPoint::key_scale`]), or `ln(mean) + Gumbel / beta`.
pub fn ranking_keys(
    scores: &Scores,
    grid: &Grid,
    fx: FixedPoint,
    noise: Option<&Noise>,
    cancel: &Cancel,
) -> Result<Vec<f32>> {
    let to_mean = fx.mean_scale(grid.patch_voxels());
    let to_key = fx.key_scale(grid.patch_voxels());
    let mut keys = vec![0f32; grid.len()];
    match noise {
        None => map_box_sums(scores, grid, fx, &mut keys, cancel, |sum, _| {
            to_key.key(sum) as f32
        }),
        Some(_) => map_box_sums(scores, grid, fx, &mut keys, cancel, |sum, index| {
            key_of(to_mean.mean(sum), index, noise) as f32
        }),
    }?;
    Ok(keys)
}

/// float64 box means of every candidate, shape `grid.counts`.
pub fn box_means(
    scores: &Scores,
    grid: &Grid,
    fx: FixedPoint,
    cancel: &Cancel,
) -> Result<Array3<f64>> {
    let to_mean = fx.mean_scale(grid.patch_voxels());
    let mut means = vec![0f64; grid.len()];
    map_box_sums(scores, grid, fx, &mut means, cancel, |sum, _| {
        to_mean.mean(sum)
    })?;
    Ok(Array3::from_shape_vec(grid.counts, means).expect("grid.len() matches counts"))
}
