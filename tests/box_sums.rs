//! Box sums and means against direct summation, in every layout, thread count and cache mode.

mod common;

use ndarray::{Array3, ShapeBuilder};
use proptest::prelude::*;

use _clasp_rs::engine::box_sums::{box_sums_planes, scan_map, FixedPoint};
use _clasp_rs::engine::ranking::box_means;
use _clasp_rs::engine::{Cancel, Grid, ScoreView, Scores};
use common::brute_box_sum;

fn volume(shape: [usize; 3], values: &[f64]) -> Array3<f64> {
    Array3::from_shape_fn(shape, |(z, y, x)| values[(z * shape[1] + y) * shape[2] + x])
}

fn means_of(view: ScoreView, grid: &Grid) -> Array3<f64> {
    let scores = Scores::from_view(view);
    let stats = scan_map(&scores, &Cancel::default()).unwrap();
    box_means(
        &scores,
        grid,
        FixedPoint::for_map(stats.max_abs, grid.patch_voxels()),
        &Cancel::default(),
    )
    .unwrap()
}

fn sizes() -> impl Strategy<Value = ([usize; 3], [usize; 3], [usize; 3])> {
    (
        prop::array::uniform3(1usize..9),
        prop::array::uniform3(1usize..11),
        prop::array::uniform3(1usize..4),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn means_match_direct_summation((shape, patch, stride) in sizes(), seed in any::<u64>()) {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n).map(|i| {
            let h = (seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((h >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 1.0
        }).collect();
        let vol = volume(shape, &values);
        let grid = Grid::new(shape, patch, stride).unwrap();
        let means = means_of(ScoreView::F64(vol.view()), &grid);
        prop_assert_eq!(means.shape(), &grid.counts[..]);
        for (index, &m) in means.iter().enumerate() {
            let b = grid.candidate_box(index);
            let expected = brute_box_sum(&vol, &b) / grid.patch_voxels() as f64;
            // Fixed point keeps 2^-61 of the largest possible box sum per box.
            prop_assert!((m - expected).abs() <= 1e-12, "candidate {index}: {m} vs {expected}");
        }
    }

    #[test]
    fn layouts_threads_and_cache_modes_agree((shape, patch, stride) in sizes(), threads in 1usize..4) {
        let vol = Array3::from_shape_fn(shape, |(z, y, x)| ((z * 7 + y * 3 + x * 5) % 11) as f32 * 0.25);
        let grid = Grid::new(shape, patch, stride).unwrap();
        let expected = means_of(ScoreView::F32(vol.view()), &grid);

        let mut fortran = Array3::<f32>::zeros(shape.f());
        fortran.assign(&vol);
        prop_assert_eq!(&means_of(ScoreView::F32(fortran.view()), &grid), &expected);

        let reversed = vol.slice(ndarray::s![..;-1, .., ..;-1]).to_owned();
        let strided = reversed.slice(ndarray::s![..;-1, .., ..;-1]);
        prop_assert_eq!(&means_of(ScoreView::F32(strided), &grid), &expected);

        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let threaded = pool.install(|| means_of(ScoreView::F32(vol.view()), &grid));
        prop_assert_eq!(&threaded, &expected);

        // Recomputing planes instead of caching them gives the same exact sums.
        let scores = Scores::from_view(ScoreView::F32(vol.view()));
        let fx = FixedPoint::for_map(scan_map(&scores, &Cancel::default()).unwrap().max_abs, grid.patch_voxels());
        let collect = |budget| {
            let mut all = Vec::new();
            box_sums_planes(&scores, &grid, fx, 0..grid.counts[0], budget, &Cancel::default(), |_, sums| all.extend_from_slice(sums));
            all
        };
        prop_assert_eq!(collect(0), collect(usize::MAX));
    }
}

#[test]
fn integer_valued_volumes_give_exact_means_and_exact_ties() {
    let vol = Array3::from_shape_fn((12, 9, 10), |(z, _, _)| (z / 3) as f64);
    let grid = Grid::new([12, 9, 10], [3, 4, 5], [1, 1, 1]).unwrap();
    let means = means_of(ScoreView::F64(vol.view()), &grid);
    for kz in 0..grid.counts[0] {
        let row = means.index_axis(ndarray::Axis(0), kz);
        let first = row[[0, 0]];
        assert!(
            row.iter().all(|&m| m == first),
            "plane {kz} is constant, so are its means"
        );
    }
    assert_eq!(means[[0, 0, 0]], 0.0);
    assert_eq!(means[[3, 0, 0]], 1.0);
}

#[test]
fn float16_values_are_read_exactly() {
    let vol = Array3::from_shape_fn((4, 4, 4), |(z, y, x)| {
        half::f16::from_f32((z + y + x) as f32 * 0.125)
    });
    let grid = Grid::new([4, 4, 4], [2, 2, 2], [2, 2, 2]).unwrap();
    let means = means_of(ScoreView::F16(vol.view()), &grid);
    let as_f64 = vol.mapv(half::f16::to_f64);
    for (index, &m) in means.iter().enumerate() {
        assert_eq!(m, brute_box_sum(&as_f64, &grid.candidate_box(index)) / 8.0);
    }
}

#[test]
fn scan_finds_the_first_non_finite_voxel_and_the_range() {
    let mut vol = Array3::<f32>::from_elem((5, 6, 7), 0.5);
    vol[[3, 1, 2]] = f32::NAN;
    vol[[2, 5, 6]] = f32::INFINITY;
    vol[[0, 0, 1]] = -2.0;
    let stats = scan_map(
        &Scores::from_view(ScoreView::F32(vol.view())),
        &Cancel::default(),
    )
    .unwrap();
    assert_eq!(stats.first_non_finite, Some([2, 5, 6]));
    assert_eq!(stats.min, -2.0);
}

#[test]
fn patch_larger_than_volume_is_clipped() {
    let grid = Grid::new([5, 6, 7], [10, 3, 70], [1, 1, 1]).unwrap();
    assert_eq!(grid.patch, [5, 3, 7]);
    assert_eq!(grid.counts, [1, 4, 1]);
}

#[test]
fn extreme_magnitudes_do_not_overflow() {
    for scale in [1e-280, 1e-30, 1.0, 1e30, 1e300] {
        let vol = Array3::from_shape_fn((6, 6, 6), |(z, y, x)| (1 + z + y + x) as f64 * scale);
        let grid = Grid::new([6, 6, 6], [3, 3, 3], [1, 1, 1]).unwrap();
        let means = means_of(ScoreView::F64(vol.view()), &grid);
        for (index, &m) in means.iter().enumerate() {
            let expected = brute_box_sum(&vol, &grid.candidate_box(index)) / 27.0;
            assert!(
                ((m - expected) / expected).abs() < 1e-12,
                "scale {scale}: {m} vs {expected}"
            );
        }
    }
}

#[test]
fn values_near_the_float64_maximum_keep_their_means() {
    for value in [1e308, f64::MAX / 2.0, 2f64.powi(1022)] {
        let vol = Array3::<f64>::from_elem((4, 4, 4), value);
        let grid = Grid::new([4, 4, 4], [2, 2, 2], [1, 1, 1]).unwrap();
        let means = means_of(ScoreView::F64(vol.view()), &grid);
        assert!(
            means.iter().all(|&m| m == value),
            "{value}: {:?}",
            means.iter().next()
        );
    }
}
