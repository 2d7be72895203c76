//! Patches, the candidate grid, and where one box forbids candidates.

use std::ops::Range;

use super::error::{EngineError, Result};

/// An axis-aligned box of voxels: `start[i] <= v < start[i] + size[i]`, axes (Z, Y, X).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Box3 {
    pub start: [usize; 3],
    pub size: [usize; 3],
}

impl Box3 {
    pub fn new(start: [usize; 3], size: [usize; 3]) -> Result<Box3> {
        if size.contains(&0) {
            return Err(EngineError::InvalidPatch(format!(
                "annotated patch at {start:?} has size {size:?}; sizes must be positive"
            )));
        }
        Ok(Box3 { start, size })
    }

    /// Two boxes overlap when they share at least one voxel.
    pub fn overlaps(&self, other: &Box3) -> bool {
        (0..3).all(|i| {
            self.start[i] < other.start[i] + other.size[i]
                && other.start[i] < self.start[i] + self.size[i]
        })
    }
}

/// A box of candidate grid indices `(kz, ky, kx)`, half-open on each axis.
pub type IndexBox = [Range<usize>; 3];

/// The candidate patch starts of one volume: `start[i] = k[i] * stride[i]` with the whole
/// (clipped) patch inside the volume. Candidate indices are C-order over `counts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub shape: [usize; 3],
    /// The patch size clipped to the volume on each axis.
    pub patch: [usize; 3],
    pub stride: [usize; 3],
    pub counts: [usize; 3],
}

impl Grid {
    pub fn new(shape: [usize; 3], patch: [usize; 3], stride: [usize; 3]) -> Result<Grid> {
        if shape.contains(&0) {
            return Err(EngineError::InvalidScores(format!(
                "score volume of shape {shape:?} is empty; every axis needs at least one voxel"
            )));
        }
        if patch.contains(&0) {
            return Err(EngineError::InvalidPatch(format!(
                "patch size {patch:?} must be positive on every axis"
            )));
        }
        if stride.contains(&0) {
            return Err(EngineError::InvalidPatch(format!(
                "stride {stride:?} must be positive on every axis"
            )));
        }
        let patch = [0, 1, 2].map(|i| patch[i].min(shape[i]));
        let counts = [0, 1, 2].map(|i| (shape[i] - patch[i]) / stride[i] + 1);
        Ok(Grid {
            shape,
            patch,
            stride,
            counts,
        })
    }

    pub fn len(&self) -> usize {
        self.counts.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn patch_voxels(&self) -> usize {
        self.patch.iter().product()
    }

    pub fn index_of(&self, k: [usize; 3]) -> usize {
        (k[0] * self.counts[1] + k[1]) * self.counts[2] + k[2]
    }

    pub fn grid_position(&self, index: usize) -> [usize; 3] {
        let plane = self.counts[1] * self.counts[2];
        [
            index / plane,
            (index % plane) / self.counts[2],
            index % self.counts[2],
        ]
    }

    /// The voxel box of a candidate.
    pub fn candidate_box(&self, index: usize) -> Box3 {
        let k = self.grid_position(index);
        Box3 {
            start: [0, 1, 2].map(|i| k[i] * self.stride[i]),
            size: self.patch,
        }
    }

    /// The candidates whose patch overlaps `b`, as a box of grid indices; `None` if none do.
    ///
    /// On one axis a candidate starting at `c = k * s` overlaps `[t, t + e)` iff
    /// `c + d > t` and `c < t + e`, so `k` runs over `ceil((t + 1 - d) / s) .. ceil((t + e) / s)`.
    pub fn overlapping(&self, b: &Box3) -> Option<IndexBox> {
        let mut ranges: [Range<usize>; 3] = [0..0, 0..0, 0..0];
        for (i, range) in ranges.iter_mut().enumerate() {
            let (t, e, d, s) = (b.start[i], b.size[i], self.patch[i], self.stride[i]);
            let lo = if t < d { 0 } else { (t + 1 - d).div_ceil(s) };
            let hi = (t + e).div_ceil(s).min(self.counts[i]);
            if lo >= hi {
                return None;
            }
            *range = lo..hi;
        }
        Some(ranges)
    }
}

pub fn index_boxes_intersect(a: &IndexBox, b: &IndexBox) -> bool {
    (0..3).all(|i| a[i].start < b[i].end && b[i].start < a[i].end)
}

/// Whether `outer` contains all of `inner`.
pub fn index_box_contains(outer: &IndexBox, inner: &IndexBox) -> bool {
    (0..3).all(|i| outer[i].start <= inner[i].start && inner[i].end <= outer[i].end)
}

pub fn index_box_holds(b: &IndexBox, k: [usize; 3]) -> bool {
    (0..3).all(|i| b[i].contains(&k[i]))
}
