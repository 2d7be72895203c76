//! Greedy, overlap-free selection over a grid of ranking keys.
//!
//! The grid is cut into blocks of [`BLOCK`] candidates. A max-heap holds one entry per
//! block: its best candidate as of some number of exclusion zones (`version`). An entry
//! whose block no newer zone touches is exact, so the heap top is the best valid candidate
//! overall; an entry whose block a newer zone touches is only an upper bound, and is
//! rescanned (or dropped, when one zone covers the block) when it reaches the top.
//!
//! A taken patch excludes a box of candidate indices (every start whose patch would
//! overlap it): at stride 1 a 64^3 patch excludes ~2*10^6 candidates, but costs only one
//! zone, plus O(1) per block it covers and one rescan per block it cuts, when those
//! blocks surface. Nothing is sorted; no per-candidate flags are written.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::cancel::Cancel;
use super::error::Result;
use super::geometry::{index_box_contains, index_boxes_intersect, Grid, IndexBox};

/// Block extent in candidates along (z, y, x): long rows along x so that scanning a block
/// row is a vectorised pass over contiguous keys.
pub const BLOCK: [usize; 3] = [4, 8, 64];

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: f32,
    index: usize,
    block: usize,
    /// Number of zones this entry's key accounts for.
    version: usize,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Higher key first; among equal keys the lower candidate index first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then_with(|| other.index.cmp(&self.index))
    }
}

struct Blocks {
    counts: [usize; 3],
    per_axis: [usize; 3],
}

impl Blocks {
    fn new(grid: &Grid) -> Self {
        Blocks {
            counts: grid.counts,
            per_axis: [0, 1, 2].map(|i| grid.counts[i].div_ceil(BLOCK[i])),
        }
    }

    fn len(&self) -> usize {
        self.per_axis.iter().product()
    }

    fn index_box(&self, block: usize) -> IndexBox {
        let b = [
            block / (self.per_axis[1] * self.per_axis[2]),
            (block / self.per_axis[2]) % self.per_axis[1],
            block % self.per_axis[2],
        ];
        [0, 1, 2].map(|i| b[i] * BLOCK[i]..((b[i] + 1) * BLOCK[i]).min(self.counts[i]))
    }
}

/// The best key of a non-empty row slice and its offset; the first of equal keys wins.
#[inline]
fn row_best(slice: &[f32]) -> (f32, usize) {
    // Two passes, both vectorisable: the maximum, then its first position. Keys are never
    // NaN, so `>` and `==` order them totally.
    // Eight independent running maxima vectorise; one serial `fold` would not (LLVM may
    // not reorder a float max reduction).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = slice.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &k) in lanes.iter_mut().zip(chunk) {
            *m = if k > *m { k } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &k| if k > m { k } else { m });
    let offset = slice.iter().position(|&k| k == max).unwrap_or(0);
    (max, offset)
}

/// The best (key, index) among candidates of `region` outside every zone in `zones`.
///
/// Row by row: the zones covering a row cut it into allowed x-segments, and only those are
/// scanned, so a row fully inside a zone costs O(zones), not O(row).
fn best_in(
    keys: &[f32],
    grid: &Grid,
    region: &IndexBox,
    zones: &[&IndexBox],
) -> Option<(f32, usize)> {
    let mut best: Option<(f32, usize)> = None;
    let mut cuts: Vec<(usize, usize)> = Vec::with_capacity(zones.len());
    let x_range = region[2].clone();
    for kz in region[0].clone() {
        for ky in region[1].clone() {
            let row = grid.index_of([kz, ky, 0]);
            cuts.clear();
            cuts.extend(
                zones
                    .iter()
                    .filter(|z| z[0].contains(&kz) && z[1].contains(&ky))
                    .map(|z| (z[2].start, z[2].end)),
            );
            cuts.sort_unstable();
            let mut x = x_range.start;
            let mut consider = |from: usize, to: usize| {
                if from < to {
                    let (key, offset) = row_best(&keys[row + from..row + to]);
                    // Segments arrive in increasing index order: only a strictly larger key wins.
                    if best.is_none_or(|(k, _)| key > k) {
                        best = Some((key, row + from + offset));
                    }
                }
            };
            for &(lo, hi) in &cuts {
                consider(x, lo.min(x_range.end));
                x = x.max(hi);
            }
            consider(x, x_range.end);
        }
    }
    best
}

/// Takes up to `n` candidates, best key first (ties: lower index), each outside every zone
/// in `zones` and outside the zones of the ones taken before it. Each taken candidate's
/// zone is appended to `zones`. Returns the taken candidate indices in the order taken.
///
/// `keys`: one float32 key per candidate, C-order over `grid.counts`; never NaN.
pub fn select_greedy(
    keys: &[f32],
    grid: &Grid,
    n: usize,
    zones: &mut Vec<IndexBox>,
    cancel: &Cancel,
) -> Result<Vec<usize>> {
    assert_eq!(keys.len(), grid.len(), "one key per candidate");
    let mut taken = Vec::with_capacity(n.min(keys.len()));
    if n == 0 {
        return Ok(taken);
    }
    let blocks = Blocks::new(grid);
    let initial: Vec<Entry> = (0..blocks.len())
        .into_par_iter()
        .filter_map(|block| {
            best_in(keys, grid, &blocks.index_box(block), &[]).map(|(key, index)| Entry {
                key,
                index,
                block,
                version: 0,
            })
        })
        .collect();
    let mut heap = BinaryHeap::from(initial);
    let mut pops = 0u32;
    while taken.len() < n {
        pops = pops.wrapping_add(1);
        if pops % 4096 == 0 {
            cancel.check()?;
        }
        let Some(mut entry) = heap.pop() else { break };
        if entry.version < zones.len() {
            let region = blocks.index_box(entry.block);
            let newer = &zones[entry.version..];
            if newer.iter().any(|z| index_box_contains(z, &region)) {
                continue;
            }
            if newer.iter().any(|z| index_boxes_intersect(z, &region)) {
                let touching: Vec<&IndexBox> = zones
                    .iter()
                    .filter(|z| index_boxes_intersect(z, &region))
                    .collect();
                if let Some((key, index)) = best_in(keys, grid, &region, &touching) {
                    heap.push(Entry {
                        key,
                        index,
                        block: entry.block,
                        version: zones.len(),
                    });
                }
                continue;
            }
            entry.version = zones.len();
        }
        taken.push(entry.index);
        let zone = grid
            .overlapping(&grid.candidate_box(entry.index))
            .expect("a candidate overlaps itself");
        zones.push(zone);
        // The block's other candidates stay eligible; its entry is now a stale bound.
        heap.push(entry);
    }
    Ok(taken)
}
