//! Several score maps per volume (one per stratum), many volumes in parallel.

use ndarray::Array3;
use rayon::prelude::*;

use super::box_sums::{direct_box_sum, scan_map, FixedPoint};
use super::cancel::Cancel;
use super::error::{EngineError, Result};
use super::geometry::{Box3, Grid, IndexBox};
use super::ranking::{box_means, key_of, ranking_keys, Noise};
use super::select::select_greedy;
use super::volume::Scores;

/// One map of a volume: its scores, how to rank them, and how many patches it may take.
pub struct MapJob<'a> {
    /// How error messages name this map (a file path, or `volumes[v][k]`).
    pub name: String,
    pub scores: Scores<'a>,
    pub noise: Option<Noise>,
    pub quota: usize,
}

/// The maps of one volume, processed in order, and the patches already annotated in it.
pub struct VolumeJob<'a> {
    pub maps: Vec<MapJob<'a>>,
    pub annotated: Vec<Box3>,
}

/// A patch taken from one map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Taken {
    pub patch: Box3,
    /// C-order index of the candidate in the stride grid.
    pub index: usize,
    /// The exact box mean, float64.
    pub mean: f64,
    /// The ranking value in float64: the mean, or `ln(mean) + Gumbel / beta`.
    pub key: f64,
}

/// Checks a map once before ranking it (finite values; non-negative when `for_power_sampling`)
/// and picks its fixed-point scale. `name` is how error messages refer to the map.
pub fn checked_fixed_point(
    name: &str,
    scores: &Scores,
    for_power_sampling: bool,
    patch_voxels: usize,
    cancel: &Cancel,
) -> Result<FixedPoint> {
    let stats = scan_map(scores, cancel)?;
    if let Some(p) = stats.first_non_finite {
        return Err(EngineError::InvalidScores(format!(
            "{name} contains NaN or infinite values (first at voxel (z, y, x) = {p:?}); scores must be finite"
        )));
    }
    if for_power_sampling && stats.min < 0.0 {
        return Err(EngineError::InvalidScores(format!(
            "{name} has negative values (minimum {}); power sampling (beta) ranks by ln(mean) and \
             needs non-negative scores",
            stats.min
        )));
    }
    Ok(FixedPoint::for_map(stats.max_abs, patch_voxels))
}

/// float64 box means of every candidate of one map, shape `grid.counts` (call inside
/// [`super::pool::install`]).
pub fn box_means_of(
    name: &str,
    scores: &Scores,
    patch: [usize; 3],
    stride: [usize; 3],
    cancel: &Cancel,
) -> Result<Array3<f64>> {
    let grid = Grid::new(scores.shape(), patch, stride)?;
    let fx = checked_fixed_point(name, scores, false, grid.patch_voxels(), cancel)?;
    box_means(scores, &grid, fx, cancel)
}

/// Runs the maps of one volume in order; see [`select_volumes`].
pub fn select_volume(
    job: &VolumeJob,
    patch: [usize; 3],
    stride: [usize; 3],
    cancel: &Cancel,
) -> Result<Vec<Vec<Taken>>> {
    let Some(first) = job.maps.first() else {
        return Ok(Vec::new());
    };
    let shape = first.scores.shape();
    for map in &job.maps {
        if map.scores.shape() != shape {
            return Err(EngineError::InvalidScores(format!(
                "{} has shape {:?} but {} has shape {:?}; all maps of a volume must share one shape",
                map.name,
                map.scores.shape(),
                first.name,
                shape
            )));
        }
        if let Some(noise) = &map.noise {
            noise.validate()?;
        }
    }
    let grid = Grid::new(shape, patch, stride)?;
    let mut zones: Vec<IndexBox> = job
        .annotated
        .iter()
        .filter_map(|b| grid.overlapping(b))
        .collect();
    let mut result = Vec::with_capacity(job.maps.len());
    for map in &job.maps {
        if map.quota == 0 {
            result.push(Vec::new());
            continue;
        }
        let fx = checked_fixed_point(
            &map.name,
            &map.scores,
            map.noise.is_some(),
            grid.patch_voxels(),
            cancel,
        )?;
        let keys = ranking_keys(&map.scores, &grid, fx, map.noise.as_ref(), cancel)?;
        let indices = select_greedy(&keys, &grid, map.quota, &mut zones, cancel)?;
        drop(keys);
        let to_mean = fx.mean_scale(grid.patch_voxels());
        result.push(
            indices
                .into_par_iter()
                .map(|index| {
                    let patch = grid.candidate_box(index);
                    let mean = to_mean.mean(direct_box_sum(&map.scores, fx, &patch));
                    Taken {
                        patch,
                        index,
                        mean,
                        key: key_of(mean, index, map.noise.as_ref()),
                    }
                })
                .collect(),
        );
    }
    Ok(result)
}

/// Greedy, overlap-free selection for many volumes in parallel (call inside
/// [`super::pool::install`]). For each volume the maps run in order; map `k` takes up to
/// its quota of candidates, best key first (ties: lower candidate index), skipping any that
/// overlaps an annotated box or a patch this call already took in the volume. The first
/// error in volume order is returned; a requested `cancel` ends the call early with
/// [`EngineError::Cancelled`].
pub fn select_volumes(
    jobs: &[VolumeJob],
    patch: [usize; 3],
    stride: [usize; 3],
    cancel: &Cancel,
) -> Result<Vec<Vec<Vec<Taken>>>> {
    jobs.par_iter()
        .map(|job| select_volume(job, patch, stride, cancel))
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}
