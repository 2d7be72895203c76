//! Exact box sums over the candidate grid, one plane at a time.
//!
//! Every voxel is converted once to a fixed-point integer `trunc(x * 2^s)`, with `s` chosen
//! per map so that no box sum can leave `i64` (see [`FixedPoint`]). Integer prefix sums
//! then give *exact* box sums of the converted values: results do not depend on the order
//! of summation, on how the volume is split across threads, or on whether a sum is
//! recomputed later, and equal boxes give bit-equal sums (ties stay ties). At the scales
//! used this keeps ~2^-43 of the map's largest value per voxel, finer than a float64
//! summed-volume table, whose prefix sums lose ~2^-53 of the whole volume's sum.
//!
//! Working memory is one (Y+1)(X+1) prefix plane, the running window of 2D box sums, and
//! (when it fits [`RING_BUDGET_BYTES`]) a ring of the last `dz` planes' 2D box sums; the
//! volume itself is only read, plane by plane.

use std::ops::Range;

use ndarray::{ArrayView3, Axis};
use rayon::prelude::*;

use super::cancel::Cancel;
use super::error::Result;
use super::geometry::{Box3, Grid};
use super::volume::{with_typed_view, Element, Scores};

/// Ring buffers of 2D box sums larger than this are not kept; planes leaving the z-window
/// are recomputed instead (costs a second pass over the plane, saves the memory).
pub const RING_BUDGET_BYTES: usize = 48 << 20;

/// The fixed-point scale of one score map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedPoint {
    scale: f64,
    inv_scale: f64,
}

/// Converts fixed-point box sums of one patch size to float64 means with one multiply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanScale(f64);

impl MeanScale {
    #[inline(always)]
    pub fn mean(self, sum: i64) -> f64 {
        sum as f64 * self.0
    }
}

impl FixedPoint {
    /// Picks `2^s` so that `patch_voxels * max_abs * 2^s < 2^61`: every box sum fits `i64`
    /// with room to spare. Intermediate prefix sums may wrap; wrapping arithmetic keeps the
    /// differences exact as long as the final box sums fit.
    pub fn for_map(max_abs: f64, patch_voxels: usize) -> FixedPoint {
        // Exponents separately: `max_abs * patch_voxels` may overflow to inf.
        let s = if max_abs > 0.0 && max_abs.is_finite() {
            let e = max_abs.log2().ceil() + (patch_voxels.max(1) as f64).log2().ceil();
            (61 - e as i32).clamp(-1020, 1020)
        } else {
            0
        };
        let scale = 2f64.powi(s);
        FixedPoint {
            scale,
            inv_scale: 1.0 / scale,
        }
    }

    /// `trunc(x * 2^s)`. Only for values of the map this scale was made for: finite and
    /// at most `max_abs` in magnitude (checked by [`scan_map`] first).
    #[inline(always)]
    pub fn quantize(&self, x: f64) -> i64 {
        let scaled = x * self.scale;
        debug_assert!(scaled.is_finite() && scaled.abs() < 2f64.powi(62));
        // SAFETY: `scaled` is finite and below 2^62 in magnitude for every value of the
        // scanned map (see `for_map`), so it is representable as i64. The unchecked cast
        // skips the saturation logic of `as` in the innermost loop.
        unsafe { scaled.to_int_unchecked::<i64>() }
    }

    /// The factor from a box sum of `voxels` voxels to its float64 mean.
    pub fn mean_scale(&self, voxels: usize) -> MeanScale {
        MeanScale(self.inv_scale / voxels as f64)
    }
}

/// What a pre-pass over a map found: its value range, and the first non-finite voxel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapStats {
    pub max_abs: f64,
    pub min: f64,
    pub first_non_finite: Option<[usize; 3]>,
}

/// Scans a map once (in parallel over planes), releasing each plane after reading it.
pub fn scan_map(scores: &Scores, cancel: &Cancel) -> Result<MapStats> {
    let stats = with_typed_view!(scores.view, view => scan_typed(view, scores, cancel));
    cancel.check()?;
    Ok(stats)
}

fn scan_typed<T: Element>(view: ArrayView3<'_, T>, scores: &Scores, cancel: &Cancel) -> MapStats {
    let empty = MapStats {
        max_abs: 0.0,
        min: f64::INFINITY,
        first_non_finite: None,
    };
    (0..view.shape()[0])
        .into_par_iter()
        .map(|z| {
            if cancel.is_requested() {
                return empty;
            }
            let plane = view.index_axis(Axis(0), z);
            let mut lanes = Lanes::default();
            match plane.as_slice() {
                Some(values) => lanes.visit_slice(values),
                None => plane.iter().for_each(|v| lanes.visit(0, v.to_f64())),
            }
            let (max_abs, min, bad) = lanes.finish();
            let first_non_finite = bad
                .then(|| {
                    plane
                        .indexed_iter()
                        .find(|(_, x)| !x.to_f64().is_finite())
                        .map(|((y, x), _)| [z, y, x])
                })
                .flatten();
            scores.release_planes(z..z + 1);
            MapStats {
                max_abs,
                min,
                first_non_finite,
            }
        })
        .reduce(
            || empty,
            |a, b| MapStats {
                max_abs: a.max_abs.max(b.max_abs),
                min: a.min.min(b.min),
                first_non_finite: match (a.first_non_finite, b.first_non_finite) {
                    (Some(p), Some(q)) => Some(p.min(q)),
                    (p, q) => p.or(q),
                },
            },
        )
}

/// Eight independent accumulators, so the scan vectorises (no NaN-aware `f64::max` chain).
#[derive(Clone, Copy)]
struct Lanes {
    max_abs: [f64; 8],
    min: [f64; 8],
    non_finite: [bool; 8],
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            max_abs: [0.0; 8],
            min: [f64::INFINITY; 8],
            non_finite: [false; 8],
        }
    }
}

impl Lanes {
    #[inline(always)]
    fn visit(&mut self, lane: usize, v: f64) {
        let a = v.abs();
        // NaN fails both comparisons; the finiteness flag catches it (and +-inf).
        self.max_abs[lane] = if a > self.max_abs[lane] {
            a
        } else {
            self.max_abs[lane]
        };
        self.min[lane] = if v < self.min[lane] {
            v
        } else {
            self.min[lane]
        };
        self.non_finite[lane] |= !v.is_finite();
    }

    fn visit_slice<T: Element>(&mut self, values: &[T]) {
        let mut chunks = values.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, v) in chunk.iter().enumerate() {
                self.visit(lane, v.to_f64());
            }
        }
        for v in chunks.remainder() {
            self.visit(0, v.to_f64());
        }
    }

    fn finish(self) -> (f64, f64, bool) {
        (
            self.max_abs
                .iter()
                .fold(0.0, |m, &v| if v > m { v } else { m }),
            self.min
                .iter()
                .fold(f64::INFINITY, |m, &v| if v < m { v } else { m }),
            self.non_finite.iter().any(|&b| b),
        )
    }
}

/// Box sums of every candidate whose grid z-index lies in `kz_range`, passed in order to
/// `emit(kz, sums)` where `sums` is the (ny, nx) C-order plane of fixed-point sums.
/// `ring_budget`: bytes allowed for caching 2D box sums (normally [`RING_BUDGET_BYTES`]).
/// Stops early, emitting nothing more, once `cancel` is requested.
pub fn box_sums_planes(
    scores: &Scores,
    grid: &Grid,
    fx: FixedPoint,
    kz_range: Range<usize>,
    ring_budget: usize,
    cancel: &Cancel,
    emit: impl FnMut(usize, &[i64]),
) {
    with_typed_view!(scores.view, view => box_sums_typed(view, scores, grid, fx, kz_range, ring_budget, cancel, emit));
}

// The typed twin of `box_sums_planes` (one copy per dtype): same arguments plus the view.
#[allow(clippy::too_many_arguments)]
fn box_sums_typed<T: Element>(
    view: ArrayView3<'_, T>,
    scores: &Scores,
    grid: &Grid,
    fx: FixedPoint,
    kz_range: Range<usize>,
    ring_budget: usize,
    cancel: &Cancel,
    mut emit: impl FnMut(usize, &[i64]),
) {
    if kz_range.is_empty() {
        return;
    }
    let dz = grid.patch[0];
    let sz = grid.stride[0];
    let plane_len = grid.counts[1] * grid.counts[2];
    let mut planes = PlaneBoxSums::new(grid);
    let mut window = vec![0i64; plane_len];
    let mut plane_sums = vec![0i64; plane_len];
    // Ring of the 2D box sums of the planes inside the window, slot z % dz.
    let use_ring = dz * plane_len * 8 <= ring_budget;
    let mut ring = if use_ring {
        vec![0i64; dz * plane_len]
    } else {
        Vec::new()
    };
    let (mut lo, mut hi) = (kz_range.start * sz, kz_range.start * sz);
    for kz in kz_range {
        if cancel.is_requested() {
            break;
        }
        let (target_lo, target_hi) = (kz * sz, kz * sz + dz);
        if target_lo >= hi {
            scores.release_planes(lo..hi);
            window.fill(0);
            lo = target_lo;
            hi = target_lo;
        }
        // Steady state with the ring: the plane entering takes the ring slot of the plane
        // leaving (hi = lo + dz), so both updates are one pass over the window.
        while use_ring && lo < target_lo && hi < target_hi && hi - lo == dz {
            planes.compute(view, fx, hi, &mut plane_sums);
            let slot = &mut ring[(hi % dz) * plane_len..][..plane_len];
            for ((w, old), &new) in window.iter_mut().zip(slot.iter_mut()).zip(&plane_sums) {
                *w = w.wrapping_add(new.wrapping_sub(*old));
                *old = new;
            }
            scores.release_planes(hi..hi + 1);
            lo += 1;
            hi += 1;
        }
        while lo < target_lo {
            let leaving: &[i64] = if use_ring {
                &ring[(lo % dz) * plane_len..][..plane_len]
            } else {
                planes.compute(view, fx, lo, &mut plane_sums);
                &plane_sums
            };
            for (w, b) in window.iter_mut().zip(leaving) {
                *w = w.wrapping_sub(*b);
            }
            if !use_ring {
                scores.release_planes(lo..lo + 1);
            }
            lo += 1;
        }
        while hi < target_hi {
            planes.compute(view, fx, hi, &mut plane_sums);
            for (w, b) in window.iter_mut().zip(&plane_sums) {
                *w = w.wrapping_add(*b);
            }
            if use_ring {
                ring[(hi % dz) * plane_len..][..plane_len].copy_from_slice(&plane_sums);
                scores.release_planes(hi..hi + 1);
            }
            hi += 1;
        }
        emit(kz, &window);
    }
    scores.release_planes(lo..hi);
}

/// 2D box sums of single planes over the (ky, kx) candidate grid via an integer prefix table.
struct PlaneBoxSums {
    grid: Grid,
    /// (Y + 1) x (X + 1) prefix sums; row 0 and column 0 stay zero.
    prefix: Vec<i64>,
    /// X + 1 scratch: prefix row differences.
    rows: Vec<i64>,
}

impl PlaneBoxSums {
    fn new(grid: &Grid) -> Self {
        let (ys, xs) = (grid.shape[1], grid.shape[2]);
        PlaneBoxSums {
            grid: *grid,
            prefix: vec![0i64; (ys + 1) * (xs + 1)],
            rows: vec![0i64; xs + 1],
        }
    }

    fn compute<T: Element>(
        &mut self,
        view: ArrayView3<'_, T>,
        fx: FixedPoint,
        z: usize,
        out: &mut [i64],
    ) {
        let g = &self.grid;
        let width = g.shape[2] + 1;
        let plane = view.index_axis(Axis(0), z);
        for (y, row) in plane.outer_iter().enumerate() {
            let (above, below) = self.prefix.split_at_mut((y + 1) * width);
            let above = &above[y * width..];
            let below = &mut below[..width];
            let mut run = 0i64;
            let mut step = |(out, &up): (&mut i64, &i64), v: &T| {
                run = run.wrapping_add(fx.quantize(v.to_f64()));
                *out = up.wrapping_add(run);
            };
            let cells = below[1..].iter_mut().zip(&above[1..]);
            match row.as_slice() {
                Some(values) => cells.zip(values).for_each(|(c, v)| step(c, v)),
                None => cells.zip(row.iter()).for_each(|(c, v)| step(c, v)),
            }
        }
        let [_, dy, dx] = g.patch;
        let [_, sy, sx] = g.stride;
        let nx = g.counts[2];
        for (ky, out_row) in out.chunks_exact_mut(nx).enumerate() {
            let top = &self.prefix[ky * sy * width..][..width];
            let bottom = &self.prefix[(ky * sy + dy) * width..][..width];
            // Column sums of the box rows, then differences `dx` apart along x.
            for ((d, &b), &t) in self.rows.iter_mut().zip(bottom).zip(top) {
                *d = b.wrapping_sub(t);
            }
            if sx == 1 {
                // Contiguous: plain slices let this vectorise.
                for ((o, &r), &l) in out_row.iter_mut().zip(&self.rows[dx..]).zip(&self.rows) {
                    *o = r.wrapping_sub(l);
                }
            } else {
                let right = self.rows[dx..].iter().step_by(sx);
                let left = self.rows.iter().step_by(sx);
                for ((o, &r), &l) in out_row.iter_mut().zip(right).zip(left) {
                    *o = r.wrapping_sub(l);
                }
            }
        }
    }
}

/// The fixed-point sum of one box, summed directly (used for the few patches taken; equal
/// to the value [`box_sums_planes`] produced for it, since integer sums are exact).
pub fn direct_box_sum(scores: &Scores, fx: FixedPoint, b: &Box3) -> i64 {
    let sum = with_typed_view!(scores.view, view => region_sum(view, fx, b));
    // A patch touches a few rows of many planes, i.e. many pages: give them back.
    scores.release_planes(b.start[0]..b.start[0] + b.size[0]);
    sum
}

fn region_sum<T: Element>(view: ArrayView3<'_, T>, fx: FixedPoint, b: &Box3) -> i64 {
    let [z0, y0, x0] = b.start;
    let [dz, dy, dx] = b.size;
    let region = view.slice(ndarray::s![z0..z0 + dz, y0..y0 + dy, x0..x0 + dx]);
    let mut sum = 0i64;
    for row in region.rows() {
        let mut add = |v: &T| sum = sum.wrapping_add(fx.quantize(v.to_f64()));
        match row.as_slice() {
            Some(values) => values.iter().for_each(&mut add),
            None => row.iter().for_each(&mut add),
        }
    }
    sum
}
