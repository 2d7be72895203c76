//! Helpers shared by the engine tests: plain, obviously-correct references.
#![allow(dead_code)]

use ndarray::Array3;

use _clasp_rs::engine::{Box3, Grid};

/// Box sum of one candidate by direct float64 summation.
pub fn brute_box_sum(vol: &Array3<f64>, b: &Box3) -> f64 {
    let mut sum = 0.0;
    for z in b.start[0]..b.start[0] + b.size[0] {
        for y in b.start[1]..b.start[1] + b.size[1] {
            for x in b.start[2]..b.start[2] + b.size[2] {
                sum += vol[[z, y, x]];
            }
        }
    }
    sum
}

/// Greedy selection by brute force: sort every candidate by (key desc, index asc), take each
/// that overlaps neither `annotated` nor anything taken before.
pub fn brute_greedy(keys: &[f32], grid: &Grid, n: usize, annotated: &[Box3]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]).then(a.cmp(&b)));
    let mut taken: Vec<usize> = Vec::new();
    for index in order {
        if taken.len() == n {
            break;
        }
        let candidate = grid.candidate_box(index);
        let blocked = annotated.iter().any(|b| b.overlaps(&candidate))
            || taken
                .iter()
                .any(|&t| grid.candidate_box(t).overlaps(&candidate));
        if !blocked {
            taken.push(index);
        }
    }
    taken
}
