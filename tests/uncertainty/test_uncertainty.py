"""Tests of clasp_rs.uncertainty against plain float64 numpy references."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clasp_rs import uncertainty as unc
from clasp_rs.exceptions import InvalidProbabilitiesError, InvalidScoresError, NpyFormatError

# --------------------------------------------------------------------------------------------
# float64 references: the formulas of DESIGN.md written out directly
# --------------------------------------------------------------------------------------------


def ref_entropy(p: np.ndarray) -> np.ndarray:
    """-sum_c p_c ln p_c over axis 0 (or 1 for (M, C, ...)), 0 ln 0 = 0, float64."""
    p = p.astype(np.float64)
    plogp = np.zeros_like(p)
    positive = p > 0
    plogp[positive] = p[positive] * np.log(p[positive])
    return np.maximum(-plogp.sum(axis=-4), 0.0)


def ref_scores(folds: np.ndarray) -> np.ndarray:
    """(C_fg + 1, Z, Y, X): p_c u for c = 1 .. C-1, then u; folds (M, C, Z, Y, X)."""
    p = folds.astype(np.float64).mean(axis=0)
    u = ref_entropy(p)
    return np.concatenate([p[1:] * u, u[None]])


def ref_mutual_information(folds: np.ndarray) -> np.ndarray:
    p = folds.astype(np.float64).mean(axis=0)
    return np.maximum(ref_entropy(p) - ref_entropy(folds).mean(axis=0), 0.0)


def ref_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(axis=-4, keepdims=True))
    return e / e.sum(axis=-4, keepdims=True)


def random_folds(
    rng: np.random.Generator, m: int, c: int, shape: tuple[int, int, int]
) -> np.ndarray:
    """float32 (M, C, Z, Y, X) probabilities with exact zeros, exact one-hot voxels and
    uniform voxels among ordinary softmax outputs."""
    logits = rng.normal(scale=3.0, size=(m, c, *shape))
    p = ref_softmax(logits)
    zeros = rng.random(p.shape) < 0.15
    zeros[:, 0] = False  # keep every voxel's sum positive
    p[zeros] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    flat = p.reshape(m, c, -1)
    n = flat.shape[2]
    hot = rng.choice(n, size=max(1, n // 10), replace=False)
    flat[:, :, hot] = 0.0
    flat[:, rng.integers(0, c), hot] = 1.0
    uniform = rng.choice(n, size=max(1, n // 20), replace=False)
    flat[:, :, uniform] = 1.0 / c
    return flat.reshape(p.shape).astype(np.float32)


TOL = {"rtol": 1e-5, "atol": 2e-6}
KERNELS = [
    pytest.param({"cpu_kernels": "numpy", "num_threads": 1}, id="numpy-1"),
    pytest.param({"cpu_kernels": "numpy", "num_threads": 2}, id="numpy-2"),
    pytest.param({"cpu_kernels": "torch", "num_threads": 1}, id="torch-cpu"),
]


def maps_via_accumulator(folds, **kwargs) -> unc.CaseMaps:
    acc = unc.FoldAccumulator(device="cpu", **kwargs)
    for fold in folds:
        acc.add(fold)
    return acc.finish()


# --------------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("seed", range(6))
def test_maps_and_mutual_information_match_float64_reference(kernels, seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 5))
    c = int(rng.integers(2, 6))
    shape = tuple(int(s) for s in rng.integers(1, 9, size=3))
    folds = random_folds(rng, m, c, shape)
    chunk_z = int(rng.integers(1, 4))
    result = maps_via_accumulator(folds, with_mutual_information=m >= 2, chunk_z=chunk_z, **kernels)
    assert result.scores.dtype == np.float32
    assert result.scores.shape == (c, *shape)
    assert result.n_folds == m
    np.testing.assert_allclose(result.scores, ref_scores(folds), **TOL)
    assert np.isfinite(result.scores).all()
    assert (result.scores >= 0).all()
    assert (result.scores[-1] <= np.log(c) + 1e-6).all()
    if m >= 2:
        assert result.mutual_information is not None
        assert result.mutual_information.shape == shape
        np.testing.assert_allclose(result.mutual_information, ref_mutual_information(folds), **TOL)
        assert (result.mutual_information >= 0).all()
    else:
        assert result.mutual_information is None


def test_zero_and_one_probabilities_give_zero_entropy_not_nan():
    p = np.zeros((3, 2, 2, 2), dtype=np.float32)
    p[0] = 1.0  # certain background everywhere ...
    p[:, 1, 1, 1] = (0.0, 0.0, 1.0)  # ... but one voxel certainly class 2
    scores = unc.class_scores(p, device="cpu")
    assert not np.isnan(scores).any()
    np.testing.assert_array_equal(scores, np.zeros((3, 2, 2, 2), dtype=np.float32))


def test_uniform_probabilities_give_ln_c():
    c = 5
    p = np.full((c, 2, 3, 4), 1.0 / c, dtype=np.float32)
    u = unc.predictive_entropy(p, device="cpu")
    np.testing.assert_allclose(u, np.log(c), rtol=1e-6)
    scores = unc.class_scores(p, device="cpu")
    np.testing.assert_allclose(scores[:-1], np.log(c) / c, rtol=1e-6)


def test_identical_folds_have_zero_mutual_information():
    rng = np.random.default_rng(1)
    fold = random_folds(rng, 1, 3, (4, 5, 6))[0]
    mi = unc.mutual_information([fold, fold, fold], device="cpu")
    assert mi.shape == (4, 5, 6) and (mi >= 0).all()
    np.testing.assert_allclose(mi, 0.0, atol=1e-7)  # (3 p) / 3 rounds in float32


def test_disagreeing_one_hot_folds_have_maximal_mutual_information():
    a = np.zeros((2, 1, 1, 3), dtype=np.float32)
    b = np.zeros((2, 1, 1, 3), dtype=np.float32)
    a[0], b[1] = 1.0, 1.0
    mi = unc.mutual_information(np.stack([a, b]), device="cpu")
    np.testing.assert_allclose(mi, np.log(2), rtol=1e-6)


@pytest.mark.parametrize("kernels", KERNELS)
def test_logits_are_softmaxed_per_fold_before_averaging(kernels):
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=4.0, size=(3, 4, 5, 6, 7)).astype(np.float32)
    logits[1, 2, 0, 0, 0] = 80.0  # exp would overflow without the max shift
    result = maps_via_accumulator(logits, logits=True, with_mutual_information=True, **kernels)
    probs = ref_softmax(logits)
    np.testing.assert_allclose(result.scores, ref_scores(probs), **TOL)
    np.testing.assert_allclose(result.mutual_information, ref_mutual_information(probs), **TOL)
    averaged_logits = unc.class_scores(logits.mean(axis=0), logits=True, device="cpu")
    assert not np.allclose(averaged_logits, result.scores, atol=1e-3)


def test_single_mean_equals_stacked_folds_and_sequence():
    rng = np.random.default_rng(3)
    folds = random_folds(rng, 4, 3, (5, 4, 6))
    from_stack = unc.class_scores(folds, device="cpu")
    from_list = unc.class_scores(list(folds), device="cpu")
    from_mean = unc.class_scores(folds.mean(axis=0), device="cpu")
    np.testing.assert_array_equal(from_stack, from_list)
    np.testing.assert_allclose(from_mean, from_stack, **TOL)
    np.testing.assert_allclose(
        unc.mean_probabilities(folds, device="cpu"), folds.astype(np.float64).mean(0), **TOL
    )
    u = unc.predictive_entropy(folds, device="cpu")
    assert u.shape == (5, 4, 6) and u.flags.c_contiguous
    np.testing.assert_array_equal(u, from_stack[-1])


def test_torch_tensors_and_other_float_dtypes_are_accepted():
    rng = np.random.default_rng(4)
    folds = random_folds(rng, 3, 3, (4, 4, 4))
    expected = unc.class_scores(folds, device="cpu")
    np.testing.assert_array_equal(unc.class_scores(torch.from_numpy(folds), device="cpu"), expected)
    as64 = unc.class_scores(folds.astype(np.float64), device="cpu")
    np.testing.assert_allclose(as64, expected, **TOL)
    as16 = folds.astype(np.float16)
    np.testing.assert_allclose(
        unc.class_scores(as16, device="cpu"), ref_scores(as16.astype(np.float64)), **TOL
    )


@pytest.mark.parametrize("kernels", KERNELS)
def test_chunked_equals_unchunked(kernels):
    rng = np.random.default_rng(5)
    folds = random_folds(rng, 3, 4, (11, 6, 5))
    whole = maps_via_accumulator(folds, chunk_z=11, with_mutual_information=True, **kernels)
    for chunk_z in (1, 2, 4, 100):
        part = maps_via_accumulator(folds, chunk_z=chunk_z, with_mutual_information=True, **kernels)
        np.testing.assert_array_equal(part.scores, whole.scores)
        np.testing.assert_array_equal(part.mutual_information, whole.mutual_information)


def test_numpy_and_torch_kernels_agree():
    rng = np.random.default_rng(6)
    folds = random_folds(rng, 4, 3, (6, 7, 8))
    a = maps_via_accumulator(folds, cpu_kernels="numpy", with_mutual_information=True)
    b = maps_via_accumulator(folds, cpu_kernels="torch", with_mutual_information=True)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.mutual_information, b.mutual_information, rtol=1e-6, atol=1e-7)


def test_mean_probabilities_midway_and_accumulation_continues():
    rng = np.random.default_rng(8)
    folds = random_folds(rng, 3, 3, (3, 4, 5))
    acc = unc.FoldAccumulator(device="cpu")
    acc.add(folds[0])
    acc.add(folds[1])
    np.testing.assert_allclose(
        acc.mean_probabilities(), folds[:2].astype(np.float64).mean(0), **TOL
    )
    acc.add(folds[2])
    np.testing.assert_allclose(acc.finish().scores, ref_scores(folds), **TOL)
    with pytest.raises(RuntimeError, match="finished"):
        acc.add(folds[0])


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def save_npz(path: Path, array: np.ndarray, key: str = "probabilities") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{key: array})
    return path


def test_streaming_from_files_equals_in_memory(tmp_path):
    rng = np.random.default_rng(9)
    folds = random_folds(rng, 3, 4, (7, 5, 6))
    npz = [save_npz(tmp_path / f"fold_{m}" / "case_001.npz", f) for m, f in enumerate(folds)]
    npy = []
    for m, fold in enumerate(folds):
        np.save(tmp_path / f"f{m}.npy", fold)
        npy.append(tmp_path / f"f{m}.npy")
    memory = unc.compute_case_maps(folds, device="cpu", with_mutual_information=True)
    for sources in (npz, npy, [str(p) for p in npy], [npz[0], npy[1], folds[2]]):
        streamed = unc.compute_case_maps(
            sources, device="cpu", with_mutual_information=True, chunk_z=2
        )
        np.testing.assert_array_equal(streamed.scores, memory.scores)
        np.testing.assert_array_equal(streamed.mutual_information, memory.mutual_information)


def test_npy_files_of_other_dtypes_and_layouts(tmp_path):
    rng = np.random.default_rng(10)
    fold = random_folds(rng, 1, 3, (5, 4, 3))[0]
    expected = unc.class_scores(fold, device="cpu")
    variants = {
        "f64.npy": fold.astype(np.float64),
        "big_endian.npy": fold.astype(">f4"),
        "fortran.npy": np.asfortranarray(fold),
    }
    for name, array in variants.items():
        np.save(tmp_path / name, array)
        got = unc.class_scores(tmp_path / name, device="cpu", chunk_z=2)
        np.testing.assert_allclose(got, expected, **TOL, err_msg=name)
    np.save(tmp_path / "f16.npy", fold.astype(np.float16))
    np.testing.assert_allclose(
        unc.class_scores(tmp_path / "f16.npy", device="cpu"),
        ref_scores(fold.astype(np.float16)[None]),
        **TOL,
    )


def test_write_score_volumes_roundtrip(tmp_path):
    rng = np.random.default_rng(11)
    folds = random_folds(rng, 2, 4, (6, 5, 7))
    scores = unc.class_scores(folds, device="cpu")
    for dtype in ("float32", "float16"):
        folder = tmp_path / dtype
        paths = unc.write_score_volumes(scores, folder, "case_007", dtype=dtype)
        assert [p.name for p in paths] == [
            "case_007_c1.npy",
            "case_007_c2.npy",
            "case_007_c3.npy",
            "case_007_all.npy",
        ]
        assert unc.score_volume_names("case_007", 4) == [p.name for p in paths]
        for k, path in enumerate(paths):
            loaded = np.load(path, mmap_mode="r", allow_pickle=False)
            assert loaded.dtype == np.dtype(dtype)
            assert loaded.shape == (6, 5, 7)
            assert loaded.flags.c_contiguous
            np.testing.assert_array_equal(loaded, scores[k].astype(dtype))
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    # Rewriting replaces the files in place.
    again = unc.write_score_volumes(scores * 0.5, tmp_path / "float32", "case_007")
    np.testing.assert_array_equal(np.load(again[0]), scores[0] * 0.5)


def test_write_score_volume_rejects_bad_values_and_leaves_nothing(tmp_path):
    volume = np.ones((3, 4, 5), dtype=np.float32)
    volume[2, 1, 1] = np.nan
    with pytest.raises(InvalidScoresError, match=r"1 values .* not finite and non-negative"):
        unc.write_score_volume(volume, tmp_path / "a.npy")
    volume[2, 1, 1] = 1e6  # finite in float32, infinite in float16
    unc.write_score_volume(volume, tmp_path / "b.npy", dtype="float32")
    with pytest.raises(InvalidScoresError, match="float16"):
        unc.write_score_volume(volume, tmp_path / "c.npy", dtype="float16")
    volume[2, 1, 1] = -1.0
    with pytest.raises(InvalidScoresError, match="non-negative"):
        unc.write_score_volume(volume, tmp_path / "d.npy")
    assert [p.name for p in tmp_path.iterdir()] == ["b.npy"]
    with pytest.raises(InvalidScoresError, match=r"3-D \(Z, Y, X\)"):
        unc.write_score_volume(np.ones((2, 2), dtype=np.float32), tmp_path / "e.npy")
    with pytest.raises(ValueError, match="float64"):
        unc.write_score_volume(np.ones((2, 2, 2)), tmp_path / "f.npy", dtype="float64")
    with pytest.raises(InvalidScoresError, match=r"\(C_fg \+ 1, Z, Y, X\)"):
        unc.write_score_volumes(np.ones((2, 2, 2), dtype=np.float32), tmp_path, "x")


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def valid_folds(m: int = 3) -> np.ndarray:
    return random_folds(np.random.default_rng(12), m, 3, (4, 5, 6))


def add_all(folds, **kwargs):
    acc = unc.FoldAccumulator(device="cpu", **kwargs)
    for fold in folds:
        acc.add(fold)
    return acc


@pytest.mark.parametrize("kernels", KERNELS)
def test_shape_mismatch_names_fold_and_both_shapes(kernels):
    folds = valid_folds()
    other = folds[1][:, :3]
    with pytest.raises(InvalidProbabilitiesError) as info:
        add_all([folds[0], other], **kernels)
    message = str(info.value)
    assert "fold 1" in message
    assert "(3, 3, 5, 6)" in message and "(3, 4, 5, 6)" in message


@pytest.mark.parametrize("kernels", KERNELS)
def test_negative_values_are_counted(kernels):
    folds = valid_folds()
    moved = folds[2, 1, 0, 0, :2] + 0.25
    folds[2, 1, 0, 0, :2] = -0.25
    folds[2, 0, 0, 0, :2] += moved  # channel sums stay 1
    with pytest.raises(InvalidProbabilitiesError) as info:
        add_all(folds, **kernels)
    message = str(info.value)
    assert message.startswith("fold 2: invalid probabilities")
    assert "2 of 360 values are negative (smallest -0.25)" in message
    assert "channel sums" not in message


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(kernels, bad):
    folds = valid_folds()
    folds[1, 2, 3, 4, 5] = bad
    with pytest.raises(
        InvalidProbabilitiesError, match=r"fold 1: .*1 of 360 values are NaN or inf"
    ):
        add_all(folds, **kernels)


@pytest.mark.parametrize("kernels", KERNELS)
def test_sums_far_from_one_are_located(kernels):
    folds = valid_folds()
    folds[0, :, 2, 3, 1] *= 1.5
    with pytest.raises(InvalidProbabilitiesError) as info:
        add_all(folds, **kernels)
    message = str(info.value)
    assert "fold 0" in message
    assert "1 of 120 voxels have channel sums outside 1 +/- 0.001" in message
    assert "worst 1.5 at (z, y, x) = (2, 3, 1)" in message


def test_sums_within_tolerance_are_accepted():
    folds = valid_folds().astype(np.float64)
    folds[:, 0] += 0.0009
    scores = unc.class_scores(folds, device="cpu")
    assert np.isfinite(scores).all() and (scores >= 0).all()


@pytest.mark.parametrize("kernels", KERNELS)
def test_non_finite_logits_are_rejected(kernels):
    logits = valid_folds()
    logits[1, 0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidProbabilitiesError, match="fold 1: invalid logits: 1 of 360"):
        add_all(logits, logits=True, **kernels)


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((4, 5, 6), r"expected a 4-D \(C, Z, Y, X\) array, got 3-D shape \(4, 5, 6\)"),
        ((1, 2, 3, 4, 5, 6), r"expected a 4-D \(C, Z, Y, X\) array, got 6-D"),
        ((1, 4, 5, 6), r"1 channel; expected C >= 2"),
        ((3, 0, 5, 6), "empty array"),
    ],
)
def test_wrong_dimensionality_is_rejected(shape, pattern):
    with pytest.raises(InvalidProbabilitiesError, match=pattern):
        unc.FoldAccumulator(device="cpu").add(np.ones(shape, dtype=np.float32))


def test_wrong_ndim_of_whole_input_is_rejected():
    with pytest.raises(InvalidProbabilitiesError, match=r"\(M, C, Z, Y, X\), got 3-D"):
        unc.class_scores(np.ones((4, 5, 6), dtype=np.float32), device="cpu")
    with pytest.raises(InvalidProbabilitiesError, match="no folds given"):
        unc.class_scores([], device="cpu")
    with pytest.raises(TypeError, match="got int"):
        unc.class_scores(3, device="cpu")
    with pytest.raises(TypeError, match="got dict"):
        unc.FoldAccumulator(device="cpu").add({"probabilities": 1})


def test_integer_dtype_is_rejected():
    with pytest.raises(InvalidProbabilitiesError, match="dtype int64"):
        unc.class_scores(np.ones((2, 2, 2, 2), dtype=np.int64), device="cpu")
    with pytest.raises(InvalidProbabilitiesError, match="dtype torch.int32"):
        unc.class_scores(torch.ones((2, 2, 2, 2), dtype=torch.int32), device="cpu")


def test_missing_file_and_key_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fold 0 \(.*missing.npz\): probability file"):
        unc.class_scores([tmp_path / "missing.npz"], device="cpu")
    wrong_key = save_npz(tmp_path / "case.npz", valid_folds()[0], key="probs")
    with pytest.raises(InvalidProbabilitiesError) as info:
        unc.class_scores(wrong_key, device="cpu")
    message = str(info.value)
    assert "no array 'probabilities'" in message and "found 'probs'" in message
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    with pytest.raises(NpyFormatError, match="not a readable .npz"):
        unc.class_scores(tmp_path / "junk.npz", device="cpu")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file at all")
    with pytest.raises(NpyFormatError, match="not a readable .npy"):
        unc.class_scores(tmp_path / "junk.npy", device="cpu")
    np.save(tmp_path / "short.npy", valid_folds()[0])
    data = (tmp_path / "short.npy").read_bytes()
    (tmp_path / "short.npy").write_bytes(data[:-100])
    with pytest.raises(NpyFormatError, match="truncated"):
        unc.class_scores(tmp_path / "short.npy", device="cpu")
    (tmp_path / "probs.nii.gz").write_bytes(b"")
    with pytest.raises(InvalidProbabilitiesError, match="unsupported file type '.gz'"):
        unc.class_scores(tmp_path / "probs.nii.gz", device="cpu")


def test_rejected_fold_makes_accumulator_unusable():
    folds = valid_folds()
    acc = unc.FoldAccumulator(device="cpu")
    acc.add(folds[0])
    bad = folds[1].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidProbabilitiesError):
        acc.add(bad)
    with pytest.raises(RuntimeError, match="unusable: an earlier fold was rejected"):
        acc.add(folds[2])
    with pytest.raises(RuntimeError, match="unusable"):
        acc.finish()


def test_shape_error_on_first_fold_leaves_accumulator_usable():
    acc = unc.FoldAccumulator(device="cpu")
    with pytest.raises(InvalidProbabilitiesError):
        acc.add(np.ones((3, 3), dtype=np.float32))
    acc.add(valid_folds()[0])
    assert acc.finish().n_folds == 1


def test_mutual_information_needs_folds():
    folds = valid_folds()
    with pytest.raises(InvalidProbabilitiesError, match=r"got a single \(C, Z, Y, X\) array"):
        unc.mutual_information(folds[0], device="cpu")
    with pytest.raises(InvalidProbabilitiesError, match="at least 2 folds, got 1"):
        unc.mutual_information([folds[0]], device="cpu")
    with pytest.raises(InvalidProbabilitiesError, match="no folds were added"):
        unc.FoldAccumulator(device="cpu").finish()


def test_bad_parameters():
    with pytest.raises(ValueError, match="chunk_z must be >= 1"):
        unc.FoldAccumulator(device="cpu", chunk_z=0)
    with pytest.raises(TypeError, match="chunk_z must be an int"):
        unc.FoldAccumulator(device="cpu", chunk_z=2.0)
    with pytest.raises(ValueError, match="cpu_kernels"):
        unc.FoldAccumulator(device="cpu", cpu_kernels="jax")


# --------------------------------------------------------------------------------------------
# devices
# --------------------------------------------------------------------------------------------


def test_resolve_device():
    assert unc.resolve_device("cpu") == torch.device("cpu")
    assert unc.resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert unc.resolve_device("auto").type == expected
    assert unc.resolve_device().type == expected
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        unc.resolve_device("gpu0")
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        unc.resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        unc.resolve_device("cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        unc.class_scores(valid_folds(), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("triton", ["fused", "plain torch"])
def test_cuda_path_matches_cpu(tmp_path, monkeypatch, triton):
    if triton == "plain torch":
        monkeypatch.setenv("CLASP_RS_NO_TRITON", "1")
    rng = np.random.default_rng(13)
    folds = random_folds(rng, 3, 4, (9, 16, 12))
    cpu = unc.compute_case_maps(folds, device="cpu", with_mutual_information=True)
    logits = np.log(np.clip(folds, 1e-6, None))
    np.testing.assert_allclose(
        unc.compute_case_maps(logits, logits=True, device="cuda").scores,
        unc.compute_case_maps(logits, logits=True, device="cpu").scores,
        rtol=1e-5,
        atol=1e-6,
    )
    for chunk_z in (None, 1, 4):
        gpu = unc.compute_case_maps(
            folds, device="cuda", with_mutual_information=True, chunk_z=chunk_z
        )
        assert isinstance(gpu.scores, np.ndarray) and gpu.scores.dtype == np.float32
        np.testing.assert_allclose(gpu.scores, cpu.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            gpu.mutual_information, cpu.mutual_information, rtol=1e-5, atol=1e-6
        )
    on_device = torch.from_numpy(folds).cuda()
    np.testing.assert_allclose(
        unc.class_scores(on_device, device="cuda"), cpu.scores, rtol=1e-5, atol=1e-6
    )
    paths = []
    for m, fold in enumerate(folds):
        paths.append(save_npz(tmp_path / f"fold_{m}.npz", fold))
    np.testing.assert_allclose(
        unc.class_scores(paths, device="cuda", chunk_z=2), cpu.scores, rtol=1e-5, atol=1e-6
    )
    bad = folds.copy()
    bad[1, 0, 0, 0, 0] = -1.0
    with pytest.raises(InvalidProbabilitiesError, match="fold 1: .*negative"):
        unc.class_scores(torch.from_numpy(bad).cuda(), device="cuda")


# --------------------------------------------------------------------------------------------
# lazy imports
# --------------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )


def test_import_clasp_rs_does_not_import_torch():
    done = run_python(
        "import sys, clasp_rs, clasp_rs.uncertainty\n"
        "heavy = [m for m in ('torch', 'nnunetv2') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("helper", "module", "extra"),
    [
        ("import_torch", "torch", "clasp-rs[torch]"),
        ("import_nnunetv2", "nnunetv2", "clasp-rs[nnunet]"),
        ("import_simpleitk", "SimpleITK", "clasp-rs[nnunet]"),
    ],
)
def test_missing_optional_dependency_names_the_extra(helper, module, extra):
    # sys.modules[name] = None makes "import name" fail exactly as if it were not installed.
    done = run_python(
        f"import sys\nsys.modules[{module!r}] = None\n"
        f"from clasp_rs._optional import {helper}\n"
        f"try:\n    {helper}()\nexcept ImportError as err:\n    print(err)\n"
        "else:\n    raise SystemExit('no ImportError')\n"
    )
    assert done.returncode == 0, done.stderr
    assert f"install {extra}" in done.stdout


def test_optional_helpers_return_the_modules():
    from clasp_rs._optional import import_torch

    assert import_torch() is torch


# --------------------------------------------------------------------------------------------
# fused Triton kernels (the CUDA fast path), run on the CPU by Triton's interpreter
# --------------------------------------------------------------------------------------------

TRITON_CHECK = """
import os
os.environ["TRITON_INTERPRET"] = "1"
import numpy as np, torch
from clasp_rs import uncertainty as unc
from clasp_rs.uncertainty import triton_kernels as tk
from clasp_rs.uncertainty.torch_backend import TorchSlabs
from clasp_rs.io.folds import open_fold

rng = np.random.default_rng(0)
M, C, shape = 3, 4, (5, 6, 7)
logits = rng.normal(scale=3, size=(M, C, *shape)).astype(np.float32)
probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
probs[0, :, 0, 0, 0] = [1, 0, 0, 0]
probs[1, :, 0, 0, 1] = [0, 0, 0.5, 0.5]
for is_logits, folds in [(False, probs), (True, logits)]:
    expected = unc.compute_case_maps(
        folds, logits=is_logits, device="cpu", with_mutual_information=True
    )
    for chunk_z in (1, 2, 5):
        slabs = TorchSlabs((C, *shape), chunk_z, torch.device("cpu"), is_logits, True, tk)
        for m in range(M):
            assert slabs.accumulate(open_fold(folds[m], f"fold {m}"), first=m == 0)
        assert slabs.fused is tk and slabs._fused_verified
        scores, mi = slabs.finish(M, on_device=False)
        np.testing.assert_allclose(scores, expected.scores, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(mi, expected.mutual_information, rtol=1e-6, atol=1e-7)

# Counts: non-finite values, negative values, voxels whose channel sum is off.
bad = probs[1].copy()
bad[2, 3, 4, 5] = np.nan
bad[0, 0, 0, 0] = -0.1
bad[:, 1, 1, 1] *= 2
bad[1, 2, 2, 2] = np.inf
fold = torch.from_numpy(bad)
counts = tk.accumulate(fold, torch.empty_like(fold), None, first=True, logits=False, tolerance=1e-3)
assert counts.tolist() == [2, 1, 4], counts
bad_logits = torch.from_numpy(logits[0].copy())
bad_logits[3, 1, 2, 3] = -np.inf
counts = tk.accumulate(bad_logits, torch.empty_like(bad_logits), None, first=True, logits=True,
                       tolerance=1e-3)
assert counts[0].item() == 1, counts
slabs = TorchSlabs((C, *shape), 2, torch.device("cpu"), False, False, tk)
assert not slabs.accumulate(open_fold(bad, "bad"), first=True)
print("ok")
"""


def test_triton_kernels_match_numpy_kernels_in_interpreter():
    pytest.importorskip("triton")
    done = run_python(TRITON_CHECK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_cpu_maps_and_query_work_without_torch(tmp_path) -> None:
    # CPU users need not install torch: the numpy kernels compute the same maps.
    rng = np.random.default_rng(5)
    folds = rng.dirichlet(np.ones(3), size=(2, 4, 5, 6)).transpose(0, 4, 1, 2, 3)
    np.save(tmp_path / "folds.npy", folds.astype(np.float32))
    code = f"""
import sys
sys.modules["torch"] = None  # makes `import torch` fail like a missing install
import numpy as np
from clasp_rs import uncertainty
folds = np.load({str(tmp_path / "folds.npy")!r})
maps = uncertainty.compute_case_maps(folds, device="auto")
assert isinstance(uncertainty.resolve_device("cpu"), uncertainty.TorchlessCpu)
np.save({str(tmp_path / "maps.npy")!r}, maps.scores)
try:
    uncertainty.compute_case_maps(folds, device="cuda")
except ImportError as err:
    assert "clasp-rs[torch]" in str(err), err
else:
    raise AssertionError("cuda without torch must fail")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    expected = unc.compute_case_maps(folds.astype(np.float32), device="cpu").scores
    np.testing.assert_allclose(np.load(tmp_path / "maps.npy"), expected, rtol=1e-6, atol=1e-7)
