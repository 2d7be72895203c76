//! Maps far outside float32's range (huge, tiny, subnormal float64) rank by their values.
//!
//! The brute-force reference ranks candidates by their float64 box sums (exact here: every
//! map is small integers times one power of two), ties to the lower C-order index.

mod common;

use ndarray::Array3;
use proptest::prelude::*;

use _clasp_rs::engine::box_sums::{scan_map, FixedPoint};
use _clasp_rs::engine::noise::gumbel;
use _clasp_rs::engine::ranking::{box_means, ranking_keys};
use _clasp_rs::engine::{
    select_volumes, Box3, Cancel, Grid, MapJob, Noise, ScoreView, Scores, Taken, VolumeJob,
};
use common::brute_box_sum;

/// The patches one map of one volume takes.
fn select(
    vol: &Array3<f64>,
    patch: [usize; 3],
    stride: [usize; 3],
    n: usize,
    noise: Option<Noise>,
) -> Vec<Taken> {
    let job = VolumeJob {
        maps: vec![MapJob {
            name: "map".into(),
            scores: Scores::from_view(ScoreView::F64(vol.view())),
            noise,
            quota: n,
        }],
        annotated: Vec::new(),
    };
    let result = select_volumes(&[job], patch, stride, &Cancel::default()).unwrap();
    result[0][0].clone()
}

fn starts(taken: &[Taken]) -> Vec<[usize; 3]> {
    taken.iter().map(|t| t.patch.start).collect()
}

fn row(values: &[f64]) -> Array3<f64> {
    Array3::from_shape_vec((1, 1, values.len()), values.to_vec()).unwrap()
}

/// Nearly noiseless power sampling: the order is the order of the means.
const SHARP: Noise = Noise {
    beta: 1e12,
    seed: 3,
    stream: 1,
};

#[test]
fn values_beyond_float32_range_rank_by_value() {
    for (small, large) in [
        (1e300, 3e300),
        (1e39, 2e39),
        (f64::MAX / 3.0, f64::MAX),
        (1e-300, 3e-300),
        (1e-50, 2e-50),
        // Subnormal float64.
        (1e-310, 3e-310),
        (5e-324, 1e-323),
    ] {
        for noise in [None, Some(SHARP)] {
            for values in [[small, large], [large, small]] {
                let got = select(&row(&values), [1, 1, 1], [1, 1, 1], 2, noise);
                let first = usize::from(values[0] != large);
                assert_eq!(
                    got.iter().map(|t| t.index).collect::<Vec<_>>(),
                    vec![first, 1 - first],
                    "{values:?}, noise {noise:?}"
                );
                assert_eq!(got[0].mean, large, "{values:?}");
                assert_eq!(got[1].mean, small, "{values:?}");
            }
        }
    }
}

#[test]
fn huge_negative_values_rank_by_value() {
    let got = select(
        &row(&[-3e300, -1e300, -2e300]),
        [1, 1, 1],
        [1, 1, 1],
        3,
        None,
    );
    assert_eq!(
        got.iter().map(|t| t.index).collect::<Vec<_>>(),
        vec![1, 2, 0]
    );
}

/// Greedy selection by brute force over float64 ranking values `rank[i]` (best first,
/// ties: lower index).
fn brute_greedy(grid: &Grid, rank: &[f64], n: usize) -> Vec<[usize; 3]> {
    let mut order: Vec<usize> = (0..grid.len()).collect();
    order.sort_by(|&a, &b| rank[b].total_cmp(&rank[a]).then(a.cmp(&b)));
    let mut taken: Vec<Box3> = Vec::new();
    for index in order {
        if taken.len() == n {
            break;
        }
        let b = grid.candidate_box(index);
        if taken.iter().all(|t| !t.overlaps(&b)) {
            taken.push(b);
        }
    }
    taken.iter().map(|b| b.start).collect()
}

fn brute_sums(vol: &Array3<f64>, grid: &Grid) -> Vec<f64> {
    (0..grid.len())
        .map(|i| brute_box_sum(vol, &grid.candidate_box(i)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Integers 0..8 times +-2^e, e from tiny to huge: box sums are exact in float64 and
    /// distinct box means differ by far more than float32 resolution, so ranking by the
    /// float64 brute-force box sums is the exact answer for box-mean ranking. Under power
    /// sampling the reference is the documented key, ln(mean) + Gumbel/beta rounded to
    /// float32, on the brute-force means.
    #[test]
    fn any_magnitude_matches_float64_brute_force(
        shape in prop::array::uniform3(1usize..7),
        patch in prop::array::uniform3(1usize..5),
        stride in prop::array::uniform3(1usize..3),
        exponent in prop_oneof![-1000i32..=-900, -200i32..=200, 900i32..=1000],
        negative in any::<bool>(),
        n in 1usize..6,
        seed in any::<u64>(),
    ) {
        let grid = Grid::new(shape, patch, stride).unwrap();
        let sign = if negative { -1.0 } else { 1.0 };
        let ints = Array3::from_shape_fn(shape, |(z, y, x)| {
            let h = (seed ^ ((z * 64 + y) * 64 + x) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            sign * (h >> 61) as f64
        });
        let vol = ints.mapv(|v| v * 2f64.powi(exponent));
        let sums = brute_sums(&vol, &grid);
        let got = select(&vol, patch, stride, n, None);
        prop_assert_eq!(starts(&got), brute_greedy(&grid, &sums, n));
        // The same map at scale 1 takes the same patches.
        prop_assert_eq!(starts(&got), starts(&select(&ints, patch, stride, n, None)));
        let voxels = grid.patch_voxels() as f64;
        for t in &got {
            let want = sums[t.index] / voxels;
            prop_assert!((t.mean - want).abs() <= 1e-12 * want.abs(), "{} vs {want}", t.mean);
            prop_assert_eq!(t.key, t.mean);
        }
        if !negative {
            let noise = Noise { beta: 2.0, seed, stream: 7 };
            let keys: Vec<f64> = sums
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let key = (s / voxels).ln() + gumbel(noise.seed, noise.stream, i as u64) / noise.beta;
                    f64::from(key as f32)
                })
                .collect();
            let noised = select(&vol, patch, stride, n, Some(noise));
            prop_assert_eq!(starts(&noised), brute_greedy(&grid, &keys, n));
        }
    }

    /// Inside float32's range the box-mean keys are the float64 means rounded to float32,
    /// bit for bit, as they were before maps beyond that range were scaled.
    #[test]
    fn keys_of_maps_inside_float32_range_are_the_means_as_float32(
        shape in prop::array::uniform3(1usize..7),
        patch in prop::array::uniform3(1usize..5),
        exponent in -55i32..=120,
        seed in any::<u64>(),
    ) {
        let grid = Grid::new(shape, patch, [1, 1, 1]).unwrap();
        let vol = Array3::from_shape_fn(shape, |(z, y, x)| {
            let h = (seed ^ ((z * 64 + y) * 64 + x) as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            ((h >> 11) as f64 / (1u64 << 53) as f64 - 0.3) * 2f64.powi(exponent)
        });
        let scores = Scores::from_view(ScoreView::F64(vol.view()));
        let cancel = Cancel::default();
        let fx = FixedPoint::for_map(scan_map(&scores, &cancel).unwrap().max_abs, grid.patch_voxels());
        let keys = ranking_keys(&scores, &grid, fx, None, &cancel).unwrap();
        let means = box_means(&scores, &grid, fx, &cancel).unwrap();
        for (key, mean) in keys.iter().zip(means.iter()) {
            prop_assert_eq!(key.to_bits(), (*mean as f32).to_bits());
        }
    }
}
