//! Criterion benches of the engine's stages on a smooth 160x256x256 float32 map
//! (patch 40x48x48, n = 20), so a regression shows up in the stage that caused it.
//!
//! Run: `cargo bench --bench engine` (add `-- --quick` for a fast pass).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ndarray::Array3;

use _clasp_rs::engine::box_sums::{scan_map, FixedPoint};
use _clasp_rs::engine::ranking::ranking_keys;
use _clasp_rs::engine::select::select_greedy;
use _clasp_rs::engine::{
    pool, select_volumes, Cancel, Grid, MapJob, Noise, ScoreView, Scores, VolumeJob,
};

fn smooth_map(shape: [usize; 3]) -> Array3<f32> {
    // Two anisotropic Gaussian bumps: smooth, like a blurred entropy map.
    Array3::from_shape_fn(shape, |(z, y, x)| {
        let bump = |c: [f32; 3], w: f32| {
            let d = [z as f32 - c[0], y as f32 - c[1], x as f32 - c[2]];
            (-(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]) / (2.0 * w * w)).exp()
        };
        bump([40.0, 60.0, 200.0], 30.0) + 0.6 * bump([120.0, 190.0, 70.0], 45.0)
    })
}

fn stages(c: &mut Criterion) {
    let map = smooth_map([160, 256, 256]);
    let scores = Scores::from_view(ScoreView::F32(map.view()));
    let patch = [40, 48, 48];
    let mut group = c.benchmark_group("stages_160x256x256");
    group.sample_size(10);
    group.bench_function("scan_map", |b| {
        b.iter(|| pool::install(|| scan_map(&scores, &Cancel::default()).unwrap()));
    });
    for stride in [1usize, 4] {
        let grid = Grid::new([160, 256, 256], patch, [stride; 3]).unwrap();
        let fx = FixedPoint::for_map(1.0, grid.patch_voxels());
        group.bench_with_input(
            BenchmarkId::new("ranking_keys", stride),
            &grid,
            |b, grid| {
                b.iter(|| {
                    pool::install(|| {
                        ranking_keys(&scores, grid, fx, None, &Cancel::default()).unwrap()
                    })
                });
            },
        );
        let noise = Noise {
            beta: 1.0,
            seed: 0,
            stream: 0,
        };
        group.bench_with_input(
            BenchmarkId::new("ranking_keys_noise", stride),
            &grid,
            |b, grid| {
                b.iter(|| {
                    pool::install(|| {
                        ranking_keys(&scores, grid, fx, Some(&noise), &Cancel::default()).unwrap()
                    })
                });
            },
        );
        let keys =
            pool::install(|| ranking_keys(&scores, &grid, fx, None, &Cancel::default()).unwrap());
        group.bench_with_input(
            BenchmarkId::new("select_greedy", stride),
            &grid,
            |b, grid| {
                b.iter(|| {
                    pool::install(|| {
                        select_greedy(&keys, grid, 20, &mut Vec::new(), &Cancel::default()).unwrap()
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("select_volumes", stride),
            &stride,
            |b, &s| {
                b.iter(|| {
                    let jobs = [VolumeJob {
                        maps: vec![MapJob {
                            name: "bench".into(),
                            scores,
                            noise: None,
                            quota: 20,
                        }],
                        annotated: Vec::new(),
                    }];
                    pool::install(|| {
                        select_volumes(&jobs, patch, [s; 3], &Cancel::default()).unwrap()
                    })
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
