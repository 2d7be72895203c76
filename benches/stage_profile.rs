//! Wall time of each engine stage on a smooth 160x256x256 float32 map (patch 40x48x48,
//! n = 20), plus one float64 read of the same data for scale. Handy under a profiler:
//! `cargo bench --profile profiling --bench stage_profile --no-run`, then run the binary
//! (argument: the stride, default 1) under `valgrind --tool=callgrind` or `perf`.

use std::time::Instant;

use ndarray::Array3;

use _clasp_rs::engine::box_sums::{scan_map, FixedPoint};
use _clasp_rs::engine::ranking::ranking_keys;
use _clasp_rs::engine::select::select_greedy;
use _clasp_rs::engine::{pool, Cancel, Grid, ScoreView, Scores};

fn main() {
    let stride: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1);
    let shape = [160, 256, 256];
    let map = Array3::from_shape_fn(shape, |(z, y, x)| {
        ((z as f32 * 0.03).sin() + (y as f32 * 0.02).cos() + (x as f32 * 0.05).sin()) * 0.3 + 1.0
    });
    let scores = Scores::from_view(ScoreView::F32(map.view()));
    let grid = Grid::new(shape, [40, 48, 48], [stride; 3]).unwrap();
    println!("stride {stride}, {} threads", pool::num_threads());
    for _ in 0..3 {
        pool::install(|| {
            let t = Instant::now();
            let cancel = Cancel::default();
            let stats = scan_map(&scores, &cancel).unwrap();
            let scan = t.elapsed();
            let fx = FixedPoint::for_map(stats.max_abs, grid.patch_voxels());
            let t = Instant::now();
            let keys = ranking_keys(&scores, &grid, fx, None, &cancel).unwrap();
            let rank = t.elapsed();
            let t = Instant::now();
            let taken = select_greedy(&keys, &grid, 20, &mut Vec::new(), &cancel).unwrap();
            let select = t.elapsed();
            let t = Instant::now();
            let sum: f64 = map.iter().map(|&v| f64::from(v)).sum();
            let read = t.elapsed();
            println!(
                "scan {scan:?}  keys {rank:?}  select {select:?} ({} taken)  one f64 read {read:?} (sum {sum:.1})",
                taken.len()
            );
        });
    }
}
