//! The counter-based generator: distribution, independence of streams, stability.

use _clasp_rs::engine::noise::{gumbel, stream_id, uniform_open};

#[test]
fn uniforms_are_open_and_gumbel_moments_match() {
    let n = 200_000u64;
    let (mut sum, mut sum_sq) = (0.0, 0.0);
    for i in 0..n {
        let u = uniform_open(7, 3, i);
        assert!(u > 0.0 && u < 1.0);
        let g = gumbel(7, 3, i);
        sum += g;
        sum_sq += g * g;
    }
    let mean = sum / n as f64;
    let var = sum_sq / n as f64 - mean * mean;
    // Gumbel(0, 1): mean = Euler-Mascheroni 0.5772, variance = pi^2 / 6 = 1.6449.
    assert!((mean - 0.5772).abs() < 0.01, "mean {mean}");
    assert!((var - 1.6449).abs() < 0.03, "variance {var}");
}

#[test]
fn streams_and_seeds_differ_and_draws_repeat() {
    assert_eq!(gumbel(1, 2, 3), gumbel(1, 2, 3));
    assert_ne!(gumbel(1, 2, 3), gumbel(2, 2, 3));
    assert_ne!(gumbel(1, 2, 3), gumbel(1, 3, 3));
    let a = stream_id("case_001", 0, -1);
    assert_ne!(a, stream_id("case_002", 0, -1));
    assert_ne!(a, stream_id("case_001", 1, -1));
    assert_ne!(a, stream_id("case_001", 0, 1));
}

#[test]
fn stream_ids_are_stable_across_versions() {
    // Queries are reproducible from (seed, loop, case) only while these never change.
    let pinned = [stream_id("", 0, -1), stream_id("case_001", 2, 3)];
    assert_eq!(pinned, [PINNED_EMPTY, PINNED_CASE]);
}

const PINNED_EMPTY: u64 = 12_006_413_058_722_441_481;
const PINNED_CASE: u64 = 12_287_134_997_152_282_826;
