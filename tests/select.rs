//! Greedy selection against brute force, and its invariants.

mod common;

use proptest::prelude::*;

use _clasp_rs::engine::select::select_greedy;
use _clasp_rs::engine::{Box3, Cancel, Grid};
use common::brute_greedy;

fn case() -> impl Strategy<Value = (Grid, Vec<f32>, usize, Vec<Box3>)> {
    (
        prop::array::uniform3(1usize..14),
        prop::array::uniform3(1usize..6),
        prop::array::uniform3(1usize..4),
    )
        .prop_flat_map(|(shape, patch, stride)| {
            let grid = Grid::new(shape, patch, stride).unwrap();
            let boxes = prop::collection::vec(
                (
                    prop::array::uniform3(0usize..14),
                    prop::array::uniform3(1usize..6),
                ),
                0..4,
            );
            (
                Just(grid),
                // Few distinct values: many ties, which must go to the lower index.
                prop::collection::vec(
                    prop_oneof![(0u8..6).prop_map(f32::from), Just(f32::NEG_INFINITY)],
                    grid.len(),
                ),
                0usize..12,
                boxes.prop_map(|bs| {
                    bs.into_iter()
                        .map(|(s, d)| Box3::new(s, d).unwrap())
                        .collect()
                }),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn greedy_equals_brute_force((grid, keys, n, annotated) in case()) {
        let mut zones: Vec<_> = annotated.iter().filter_map(|b| grid.overlapping(b)).collect();
        let got = select_greedy(&keys, &grid, n, &mut zones, &Cancel::default()).unwrap();
        prop_assert_eq!(&got, &brute_greedy(&keys, &grid, n, &annotated));
        for (i, &a) in got.iter().enumerate() {
            let pa = grid.candidate_box(a);
            prop_assert!(annotated.iter().all(|b| !b.overlaps(&pa)));
            for &b in &got[i + 1..] {
                prop_assert!(!pa.overlaps(&grid.candidate_box(b)));
            }
        }
    }

    #[test]
    fn overlapping_zone_is_exactly_the_overlapping_candidates(
        (grid, _keys, _n, boxes) in case(),
    ) {
        for b in &boxes {
            let zone = grid.overlapping(b);
            for index in 0..grid.len() {
                let inside = zone.as_ref().is_some_and(|z| {
                    let k = grid.grid_position(index);
                    (0..3).all(|i| z[i].contains(&k[i]))
                });
                prop_assert_eq!(inside, grid.candidate_box(index).overlaps(b));
            }
        }
    }
}

#[test]
fn large_grid_with_big_patch_matches_brute_force() {
    // Stride 1 with a large patch: each take excludes thousands of candidates at once.
    let grid = Grid::new([40, 44, 48], [12, 12, 12], [1, 1, 1]).unwrap();
    let keys: Vec<f32> = (0..grid.len())
        .map(|i| {
            let [z, y, x] = grid.grid_position(i).map(|v| v as f32);
            -((z - 10.0).powi(2) + (y - 20.0).powi(2) + (x - 5.0).powi(2))
        })
        .collect();
    let got = select_greedy(&keys, &grid, 30, &mut Vec::new(), &Cancel::default()).unwrap();
    assert_eq!(got, brute_greedy(&keys, &grid, 30, &[]));
}

#[test]
fn takes_fewer_when_nothing_else_fits_and_zero_when_asked_for_zero() {
    let grid = Grid::new([10, 10, 10], [6, 6, 6], [1, 1, 1]).unwrap();
    let keys = vec![1.0f32; grid.len()];
    assert_eq!(
        select_greedy(&keys, &grid, 5, &mut Vec::new(), &Cancel::default()).unwrap(),
        vec![0]
    );
    assert!(
        select_greedy(&keys, &grid, 0, &mut Vec::new(), &Cancel::default())
            .unwrap()
            .is_empty()
    );
}
