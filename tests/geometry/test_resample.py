"""clasp_rs.resample: nnU-Net's target spacing rule (against nnU-Net's own planner code) and
resampling in physical space (against brute force)."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clasp_rs.geometry import ImageGeometry
from clasp_rs.resample import resample_array, resampled_geometry, target_spacing
from geometry_cases import geometries
from testdata import CT_DATASET

sitk = pytest.importorskip("SimpleITK")


def _nnunet_target(spacings, shapes) -> np.ndarray:
    """nnU-Net's own ``determine_fullres_target_spacing``, run on a fingerprint."""
    planner = pytest.importorskip(
        "nnunetv2.experiment_planning.experiment_planners.default_experiment_planner"
    )
    from nnunetv2.configuration import ANISO_THRESHOLD

    me = SimpleNamespace(
        overwrite_target_spacing=None,
        anisotropy_threshold=ANISO_THRESHOLD,
        dataset_fingerprint={"spacings": spacings, "shapes_after_crop": shapes},
    )
    return planner.ExperimentPlanner.determine_fullres_target_spacing(me)


@settings(max_examples=100, deadline=None)
@given(
    cases=st.lists(
        st.tuples(
            st.tuples(*(st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.5, 3.0, 5.0, 10.0]),) * 3),
            st.tuples(*(st.integers(4, 400),) * 3),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_target_spacing_is_nnunets(cases):
    spacings = [list(s) for s, _ in cases]
    shapes = [list(n) for _, n in cases]
    np.testing.assert_allclose(
        target_spacing(spacings, shapes), _nnunet_target(spacings, shapes), rtol=0, atol=1e-12
    )


def test_anisotropic_datasets_take_the_tenth_percentile():
    # ACDC-like: 10 mm slices, few of them: the coarse axis gets its 10th percentile.
    spacings = [[10.0, 1.5, 1.5]] * 8 + [[5.0, 1.5, 1.5]] * 2
    shapes = [[10, 200, 200]] * 10
    assert target_spacing(spacings, shapes) == (5.0, 1.5, 1.5)
    assert target_spacing([[2.0, 1.0, 1.0], [3.0, 1.0, 1.0]], [[50, 50, 50]] * 2)[0] == 2.5


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_nearest_resampling_takes_the_nearest_original_voxel(data):
    source = data.draw(geometries(max_size=8))
    spacing = [data.draw(st.sampled_from([0.5, 1.0, 2.0])) * s for s in source.spacing[::-1]]
    target = resampled_geometry(source, spacing)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, size=source.shape).astype(np.uint8)
    out = resample_array(labels, source, target, labels=True)
    assert out.shape == target.shape and out.dtype == labels.dtype
    for k, j, i in itertools.product(*(range(n) for n in target.shape)):
        index = source.to_index(target.to_lps([i, j, k]))
        near = np.floor(index + 0.5).astype(int)
        tie = np.any(np.abs(index - np.floor(index) - 0.5) < 1e-6)  # either neighbour is right
        if not tie and np.all((near >= 0) & (near < np.asarray(source.size))):
            assert out[k, j, i] == labels[near[2], near[1], near[0]]
    # the centre of the extent stays put
    np.testing.assert_allclose(
        target.to_lps((np.asarray(target.size) - 1) / 2),
        source.to_lps((np.asarray(source.size) - 1) / 2),
        atol=1e-9,
    )


def test_linear_resampling_is_exact_on_a_linear_ramp():
    source = ImageGeometry(
        (12, 10, 8), (1.0, 1.5, 2.0), (5.0, -3.0, 7.0), (0, 1, 0, -1, 0, 0, 0, 0, 1)
    )
    k, j, i = np.meshgrid(*(np.arange(n) for n in source.shape), indexing="ij")
    ramp = (3 * i + 5 * j - 2 * k + 400).astype(np.int16)
    target = resampled_geometry(source, (1.0, 3.0, 0.5))
    out = resample_array(ramp, source, target, labels=False)
    assert out.dtype == np.int16
    for kk, jj, ii in itertools.product(*(range(1, n - 1) for n in target.shape)):
        x, y, z = source.to_index(target.to_lps([ii, jj, kk]))
        if (
            0 <= x <= source.size[0] - 1
            and 0 <= y <= source.size[1] - 1
            and 0 <= z <= source.size[2] - 1
        ):
            assert abs(int(out[kk, jj, ii]) - (3 * x + 5 * y - 2 * z + 400)) <= 0.5 + 1e-9


@pytest.mark.nnunet
@pytest.mark.slow
def test_the_bundled_datasets_target_spacing_is_what_nnunet_plans(ct_dataset, tmp_path):
    """nnU-Net's fingerprint of the raw bundled dataset and its planner give the target
    spacing clasp-rs init resamples to."""
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
        DatasetFingerprintExtractor,
    )

    DatasetFingerprintExtractor(900, num_processes=1, verbose=False).run()
    fingerprint = json.loads(
        (
            tmp_path / "nnUNet_preprocessed" / "Dataset900_clasp_ct" / "dataset_fingerprint.json"
        ).read_text()
    )
    planned = _nnunet_target(fingerprint["spacings"], fingerprint["shapes_after_crop"])
    from clasp_rs.loop.grids import check_grids

    cases = [f"case_{i:03d}" for i in range(12)]
    grids = check_grids(
        cases,
        {c: [CT_DATASET / "imagesTr" / f"{c}_0000.nii.gz"] for c in cases},
        {c: CT_DATASET / "labelsTr" / f"{c}.nii.gz" for c in cases},
    )
    np.testing.assert_allclose(grids.target, planned, rtol=1e-6)
    assert grids.resampled == ["case_008", "case_009", "case_010", "case_011"]
