//! Several maps per volume, many volumes: shared exclusions, validation, determinism.

mod common;

use ndarray::Array3;

use _clasp_rs::engine::{
    pool, select_volumes, Box3, Cancel, EngineError, MapJob, Noise, ScoreView, Scores, Taken,
    VolumeJob,
};

fn map(shape: (usize, usize, usize), seed: usize) -> Array3<f32> {
    Array3::from_shape_fn(shape, |(z, y, x)| {
        (((z * 131 + y * 37 + x * 11 + seed * 97) % 101) as f32) / 100.0
    })
}

fn job<'a>(
    maps: &'a [Array3<f32>],
    quotas: &[usize],
    noise: Option<Noise>,
    annotated: Vec<Box3>,
) -> VolumeJob<'a> {
    VolumeJob {
        maps: maps
            .iter()
            .zip(quotas)
            .enumerate()
            .map(|(k, (m, &quota))| MapJob {
                name: format!("map {k}"),
                scores: Scores::from_view(ScoreView::F32(m.view())),
                noise,
                quota,
            })
            .collect(),
        annotated,
    }
}

fn all_patches(result: &[Vec<Taken>]) -> Vec<Box3> {
    result.iter().flatten().map(|t| t.patch).collect()
}

#[test]
fn later_maps_avoid_earlier_maps_and_annotated_patches() {
    let maps = [
        map((24, 28, 32), 0),
        map((24, 28, 32), 1),
        map((24, 28, 32), 2),
    ];
    let annotated = vec![Box3::new([0, 0, 0], [4, 4, 4]).unwrap()];
    let result = select_volumes(
        &[job(&maps, &[3, 2, 4], None, annotated.clone())],
        [4, 5, 6],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap();
    let patches = all_patches(&result[0]);
    assert_eq!(
        result[0].iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 2, 4]
    );
    for (i, a) in patches.iter().enumerate() {
        assert!(!a.overlaps(&annotated[0]));
        for b in &patches[i + 1..] {
            assert!(!a.overlaps(b), "{a:?} overlaps {b:?}");
        }
    }
    // Each map on its own, with what came before as annotated, gives the same patches.
    let mut blocked = annotated;
    for (k, taken) in result[0].iter().enumerate() {
        let alone = select_volumes(
            &[job(&maps[k..=k], &[taken.len()], None, blocked.clone())],
            [4, 5, 6],
            [1, 1, 1],
            &Cancel::default(),
        )
        .unwrap();
        assert_eq!(&alone[0][0], taken);
        blocked.extend(taken.iter().map(|t| t.patch));
    }
}

#[test]
fn results_do_not_depend_on_thread_count_or_volume_order() {
    let maps: Vec<Array3<f32>> = (0..4).map(|s| map((10, 12, 9), s)).collect();
    let noise = Some(Noise {
        beta: 2.0,
        seed: 5,
        stream: 9,
    });
    let jobs = |order: &[usize]| {
        order
            .iter()
            .map(|&i| job(&maps[i..=i], &[5], noise, Vec::new()))
            .collect::<Vec<_>>()
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let forward = one.install(|| {
        select_volumes(
            &jobs(&[0, 1, 2, 3]),
            [3, 3, 3],
            [1, 2, 1],
            &Cancel::default(),
        )
        .unwrap()
    });
    let backward = pool::install(|| {
        select_volumes(
            &jobs(&[3, 2, 1, 0]),
            [3, 3, 3],
            [1, 2, 1],
            &Cancel::default(),
        )
        .unwrap()
    });
    for i in 0..4 {
        assert_eq!(forward[i], backward[3 - i]);
    }
}

#[test]
fn power_sampling_keys_are_ln_mean_plus_scaled_gumbel() {
    let maps = [map((8, 8, 8), 3)];
    let noise = Noise {
        beta: 3.0,
        seed: 11,
        stream: 4,
    };
    let result = select_volumes(
        &[job(&maps, &[3], Some(noise), Vec::new())],
        [2, 2, 2],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap();
    for t in &result[0][0] {
        let g = _clasp_rs::engine::noise::gumbel(11, 4, t.index as u64);
        assert!((t.key - (t.mean.ln() + g / 3.0)).abs() < 1e-12);
    }
}

#[test]
fn invalid_maps_are_reported_by_name() {
    let mut bad = map((6, 6, 6), 0);
    bad[[2, 3, 4]] = f32::NAN;
    let maps = [bad];
    let err = select_volumes(
        &[job(&maps, &[1], None, Vec::new())],
        [2, 2, 2],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::InvalidScores(_)));
    assert!(
        err.to_string().contains("map 0 contains NaN") && err.to_string().contains("[2, 3, 4]"),
        "{err}"
    );

    let negative = [map((6, 6, 6), 0) - 0.5];
    let noise = Some(Noise {
        beta: 1.0,
        seed: 0,
        stream: 0,
    });
    let err = select_volumes(
        &[job(&negative, &[1], noise, Vec::new())],
        [2, 2, 2],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("negative values"), "{err}");
    // Without power sampling negative scores are fine.
    assert!(select_volumes(
        &[job(&negative, &[1], None, Vec::new())],
        [2, 2, 2],
        [1, 1, 1],
        &Cancel::default()
    )
    .is_ok());

    let mismatched = [map((6, 6, 6), 0), map((6, 6, 7), 1)];
    let err = select_volumes(
        &[job(&mismatched, &[1, 1], None, Vec::new())],
        [2, 2, 2],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("share one shape"), "{err}");

    let maps = [map((6, 6, 6), 0)];
    let err = select_volumes(
        &[job(&maps, &[1], None, Vec::new())],
        [2, 0, 2],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::InvalidPatch(_)), "{err}");
    let err = select_volumes(
        &[job(&maps, &[1], None, Vec::new())],
        [2, 2, 2],
        [1, 0, 1],
        &Cancel::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("stride"), "{err}");
    let zero_beta = Some(Noise {
        beta: 0.0,
        seed: 0,
        stream: 0,
    });
    let err = select_volumes(
        &[job(&maps, &[1], zero_beta, Vec::new())],
        [2, 2, 2],
        [1, 1, 1],
        &Cancel::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("beta"), "{err}");
}

#[test]
fn zero_means_rank_last_under_power_sampling_but_are_still_taken() {
    let mut vol = Array3::<f32>::zeros((4, 4, 8));
    vol.slice_mut(ndarray::s![.., .., 4..]).fill(0.5);
    let maps = [vol];
    let noise = Some(Noise {
        beta: 1.0,
        seed: 1,
        stream: 2,
    });
    let result = select_volumes(
        &[job(&maps, &[2], noise, Vec::new())],
        [4, 4, 4],
        [4, 4, 4],
        &Cancel::default(),
    )
    .unwrap();
    let taken = &result[0][0];
    assert_eq!(taken.len(), 2);
    assert_eq!(taken[0].patch.start, [0, 0, 4]);
    assert_eq!(taken[1].key, f64::NEG_INFINITY);
}

#[test]
fn a_requested_cancel_stops_the_call() {
    let maps = [map((16, 16, 16), 0)];
    let cancel = Cancel::default();
    cancel.request();
    let err = select_volumes(
        &[job(&maps, &[3], None, Vec::new())],
        [4, 4, 4],
        [1, 1, 1],
        &cancel,
    )
    .unwrap_err();
    assert!(matches!(err, EngineError::Cancelled), "{err}");
}
