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

/// Scales of `2^s` above this are applied as two exact power-of-two factors: `2^s` itself
/// is not a finite float64 beyond 2^1023, and maps of tiny (or subnormal) float64 values
/// need `s` up to ~1135.
const SPLIT_EXPONENT: i32 = 1000;

/// Maps whose largest magnitude `2^e` (rounded up) has `e` in this range rank by their box
/// means as they are; any other map ranks by its box means times `2^-e`, so that no key
/// overflows float32 or falls into its subnormals (see [`FixedPoint::key_scale`]).
const PLAIN_KEY_EXPONENTS: std::ops::RangeInclusive<i32> = -60..=125;

/// The fixed-point scale of one score map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FixedPoint {
    /// `2^s = scale * scale_rest`; `scale_rest` is `Some` only when `s > SPLIT_EXPONENT`.
    scale: f64,
    scale_rest: Option<f64>,
    s: i32,
    /// `ceil(log2(max_abs))`, or 0 for an all-zero map.
    max_exponent: i32,
}

/// `x -> trunc(x * 2^s)`, for values of the map the scale was made for only: finite and at
/// most its `max_abs` in magnitude (checked by [`scan_map`] first).
trait Quantizer: Copy + Send + Sync {
    fn quantize(self, x: f64) -> i64;
}

/// `2^s` as one float64: every map except those of tiny float64 values.
#[derive(Clone, Copy)]
struct OneFactor(f64);

/// `2^s` as two exact power-of-two factors, for `s > SPLIT_EXPONENT`.
#[derive(Clone, Copy)]
struct TwoFactors(f64, f64);

impl Quantizer for OneFactor {
    #[inline(always)]
    fn quantize(self, x: f64) -> i64 {
        to_fixed(x * self.0)
    }
}

impl Quantizer for TwoFactors {
    #[inline(always)]
    fn quantize(self, x: f64) -> i64 {
        // Powers of two, and `x * self.0` below 2^62: both products are exact.
        to_fixed(x * self.0 * self.1)
    }
}

#[inline(always)]
fn to_fixed(scaled: f64) -> i64 {
    debug_assert!(scaled.is_finite() && scaled.abs() < 2f64.powi(62));
    // SAFETY: `scaled` is finite and below 2^62 in magnitude for every value of the
    // scanned map (see `FixedPoint::for_map`), so it is representable as i64. The unchecked
    // cast skips the saturation logic of `as` in the innermost loop.
    unsafe { scaled.to_int_unchecked::<i64>() }
}

/// Runs `$body` with `$q` bound to the [`Quantizer`] of `$fx` (one monomorphised copy of
/// the body per kind, so the common one-factor loops pay for no second multiply).
macro_rules! with_quantizer {
    ($fx:expr, $q:ident => $body:expr) => {
        match $fx.scale_rest {
            None => {
                let $q = OneFactor($fx.scale);
                $body
            }
            Some(rest) => {
                let $q = TwoFactors($fx.scale, rest);
                $body
            }
        }
    };
}

/// Converts fixed-point box sums of one patch size to float64 means: `sum * factor * rest`,
/// where `rest` is a power of two that is 1 for ordinary maps (the second multiply then
/// changes nothing) and keeps `sum * factor` normal for extreme ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanScale {
    factor: f64,
    rest: f64,
}

impl MeanScale {
    #[inline(always)]
    pub fn mean(self, sum: i64) -> f64 {
        sum as f64 * self.factor * self.rest
    }
}

/// Converts fixed-point box sums of one patch size to box-mean ranking keys with one
/// multiply (see [`FixedPoint::key_scale`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyScale(f64);

impl KeyScale {
    #[inline(always)]
    pub fn key(self, sum: i64) -> f64 {
        sum as f64 * self.0
    }
}

impl FixedPoint {
    /// Picks `2^s` so that `patch_voxels * max_abs * 2^s < 2^61`: every box sum fits `i64`
    /// with room to spare. Intermediate prefix sums may wrap; wrapping arithmetic keeps the
    /// differences exact as long as the final box sums fit.
    pub fn for_map(max_abs: f64, patch_voxels: usize) -> FixedPoint {
        // Exponents separately: `max_abs * patch_voxels` may overflow to inf.
        let (s, max_exponent) = if max_abs > 0.0 && max_abs.is_finite() {
            let e = max_abs.log2().ceil() as i32;
            let e_voxels = (patch_voxels.max(1) as f64).log2().ceil() as i32;
            // e >= -1074 and e_voxels < 64: s <= 1199, so `scale_rest` stays finite.
            ((61 - e - e_voxels).clamp(-1020, 1200), e)
        } else {
            (0, 0)
        };
        let split = s.min(SPLIT_EXPONENT);
        FixedPoint {
            scale: 2f64.powi(split),
            scale_rest: (s > split).then(|| 2f64.powi(s - split)),
            s,
            max_exponent,
        }
    }

    /// The factor from a box sum of `voxels` voxels to its float64 mean.
    pub fn mean_scale(&self, voxels: usize) -> MeanScale {
        let total = -self.s;
        if total >= -SPLIT_EXPONENT {
            // 2^-s is a normal float64 here: one factor, rounded once.
            MeanScale {
                factor: 2f64.powi(total) / voxels as f64,
                rest: 1.0,
            }
        } else {
            // `sum * factor` stays normal; the final power of two rounds once.
            MeanScale {
                factor: 2f64.powi(total + SPLIT_EXPONENT) / voxels as f64,
                rest: 2f64.powi(-SPLIT_EXPONENT),
            }
        }
    }

    /// The factor from a box sum of `voxels` voxels to its box-mean ranking key: the mean
    /// times `2^-k`, with `k = 0` for maps whose magnitude lies in [`PLAIN_KEY_EXPONENTS`]
    /// (keys bit-equal to the means) and `k = ceil(log2(max_abs))` otherwise. Every nonzero
    /// box mean is at least `max_abs * 2^-61` in magnitude (the fixed-point step), so keys
    /// then lie in `[2^-62, 1]` in magnitude, inside float32's normal range, where rounding
    /// to float32 commutes with power-of-two scaling: keys rank exactly like the means
    /// rounded to 24 significant bits, for maps of any magnitude.
    pub fn key_scale(&self, voxels: usize) -> KeyScale {
        let k = if PLAIN_KEY_EXPONENTS.contains(&self.max_exponent) {
            0
        } else {
            self.max_exponent
        };
        // In range: |s| <= 61 + 125 + 64; shifted: -s - k = ceil(log2(voxels)) - 61.
        let total = -self.s - k;
        debug_assert!(total.abs() <= 300, "key exponent {total}");
        KeyScale(2f64.powi(total) / voxels as f64)
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
    with_quantizer!(fx, q => with_typed_view!(scores.view, view => box_sums_typed(view, scores, grid, q, kz_range, ring_budget, cancel, emit)));
}

// The typed twin of `box_sums_planes` (one copy per dtype): same arguments plus the view.
#[allow(clippy::too_many_arguments)]
fn box_sums_typed<T: Element, Q: Quantizer>(
    view: ArrayView3<'_, T>,
    scores: &Scores,
    grid: &Grid,
    q: Q,
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
            planes.compute(view, q, hi, &mut plane_sums);
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
                planes.compute(view, q, lo, &mut plane_sums);
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
            planes.compute(view, q, hi, &mut plane_sums);
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

    fn compute<T: Element, Q: Quantizer>(
        &mut self,
        view: ArrayView3<'_, T>,
        q: Q,
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
                run = run.wrapping_add(q.quantize(v.to_f64()));
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
    let sum =
        with_quantizer!(fx, q => with_typed_view!(scores.view, view => region_sum(view, q, b)));
    // A patch touches a few rows of many planes, i.e. many pages: give them back.
    scores.release_planes(b.start[0]..b.start[0] + b.size[0]);
    sum
}

fn region_sum<T: Element, Q: Quantizer>(view: ArrayView3<'_, T>, q: Q, b: &Box3) -> i64 {
    let [z0, y0, x0] = b.start;
    let [dz, dy, dx] = b.size;
    let region = view.slice(ndarray::s![z0..z0 + dz, y0..y0 + dy, x0..x0 + dx]);
    let mut sum = 0i64;
    for row in region.rows() {
        let mut add = |v: &T| sum = sum.wrapping_add(q.quantize(v.to_f64()));
        match row.as_slice() {
            Some(values) => values.iter().for_each(&mut add),
            None => row.iter().for_each(&mut add),
        }
    }
    sum
}
