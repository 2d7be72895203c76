"""select_top_patches / select_across_volumes against the brute-force reference."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import clasp_rs
from clasp_rs import (
    InvalidPatchError,
    InvalidScoresError,
    NpyFormatError,
    Patch,
    select_across_volumes,
    select_top_patches,
)
from clasp_rs import _clasp_rs as native
from reference import Taken, merge_reference, select_reference

DTYPES = [np.float16, np.float32, np.float64]
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stride3(stride: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (stride, stride, stride) if isinstance(stride, int) else stride


def assert_matches(got: list[Patch], want: list[Taken], *, noised: bool, file: str = "") -> None:
    """Coordinates and sizes exactly, order exactly, scores to rtol 1e-12."""
    assert [(p.coords, p.size) for p in got] == [(t.coords, t.size) for t in want]
    assert all(p.file == file and p.stratum is None for p in got)
    got_scores = np.array([p.score for p in got], dtype=np.float64)
    want_scores = np.array([t.key if noised else t.mean for t in want], dtype=np.float64)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-12, atol=0)


def in_layout(volume: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout."""
    if layout == "C":
        out = np.ascontiguousarray(volume)
    elif layout == "F":
        out = np.asfortranarray(volume)
    elif layout == "strided":
        z, y, x = volume.shape
        big = np.zeros((2 * z, y + 3, 2 * x), dtype=volume.dtype)
        big[::2, 1 : y + 1, ::2] = volume
        out = big[::2, 1 : y + 1, ::2]
    elif layout == "reversed":
        out = np.ascontiguousarray(volume[::-1, :, ::-1])[::-1, :, ::-1]
    elif layout == "permuted":
        out = np.ascontiguousarray(volume.transpose(2, 0, 1)).transpose(1, 2, 0)
    else:
        raise AssertionError(layout)
    np.testing.assert_array_equal(out, volume)
    return out


@st.composite
def problems(draw: st.DrawFn, max_side: int = 12) -> dict:
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    patch = tuple(draw(st.integers(1, max_side + 2)) for _ in range(3))
    stride = draw(st.one_of(st.integers(1, 4), st.tuples(*[st.integers(1, 4)] * 3)))
    n = draw(st.integers(0, 10))
    dtype = draw(st.sampled_from(DTYPES))
    value_seed = draw(st.integers(0, 2**32 - 1))
    high = draw(st.sampled_from([2, 10, 1000]))
    # Integers are exact in float16 (<= 2048) and in every box sum, so the reference and the
    # engine agree to the last bit; small ranges make many float32-key ties on purpose.
    volume = np.random.default_rng(value_seed).integers(0, high, size=shape).astype(dtype)
    boxes = draw(
        st.lists(
            st.tuples(
                *[st.integers(0, max_side + 1) for _ in range(3)],
                *[st.integers(1, 8) for _ in range(3)],
            ),
            max_size=4,
        )
    )
    as_patch = draw(st.lists(st.booleans(), min_size=len(boxes), max_size=len(boxes)))
    annotated = [
        Patch("elsewhere.nii.gz", b[:3], b[3:]) if p else b
        for b, p in zip(boxes, as_patch, strict=True)
    ]
    return {
        "volume": volume,
        "patch": patch,
        "stride": stride,
        "n": n,
        "annotated": annotated,
        "boxes": boxes,
    }


@EXAMPLES
@given(problems(), st.sampled_from(["C", "F", "strided", "reversed", "permuted"]))
def test_box_mean_ranking_matches_reference(problem: dict, layout: str) -> None:
    volume = in_layout(problem["volume"], layout)
    got = select_top_patches(
        volume,
        problem["patch"],
        problem["n"],
        stride=problem["stride"],
        annotated=problem["annotated"],
    )
    want = select_reference(
        problem["volume"],
        problem["patch"],
        problem["n"],
        stride=stride3(problem["stride"]),
        annotated=problem["boxes"],
    )
    assert_matches(got, want, noised=False)


@EXAMPLES
@given(
    problems(),
    st.sampled_from([0.5, 1.0, 3.1622776601683795, 100.0]),
    st.integers(0, 2**64 - 1),
    st.text(max_size=12),
)
def test_power_sampling_matches_reference(problem: dict, beta: float, seed: int, file: str) -> None:
    got = select_top_patches(
        problem["volume"],
        problem["patch"],
        problem["n"],
        stride=problem["stride"],
        annotated=problem["annotated"],
        beta=beta,
        seed=seed,
        file=file,
    )
    want = select_reference(
        problem["volume"],
        problem["patch"],
        problem["n"],
        stride=stride3(problem["stride"]),
        annotated=problem["boxes"],
        beta=beta,
        seed=seed,
        file=file,
    )
    assert_matches(got, want, noised=True, file=file)


def _save(path: str, volume: np.ndarray, how: str) -> None:
    if how == "save":
        np.save(path, volume)
    elif how == "save-fortran":
        np.save(path, np.asfortranarray(volume))
    else:
        version = {"v1": (1, 0), "v2": (2, 0), "v3": (3, 0)}[how]
        with open(path, "wb") as f:
            np.lib.format.write_array(f, np.asfortranarray(volume), version=version)


@settings(max_examples=120, deadline=None)
@given(problems(), st.sampled_from(["save", "save-fortran", "v1", "v2", "v3"]))
def test_npy_paths_match_arrays(problem: dict, how: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "case.npy")
        _save(path, problem["volume"], how)
        got = select_top_patches(
            path,
            problem["patch"],
            problem["n"],
            stride=problem["stride"],
            annotated=problem["annotated"],
            file="case",
        )
    want = select_reference(
        problem["volume"],
        problem["patch"],
        problem["n"],
        stride=stride3(problem["stride"]),
        annotated=problem["boxes"],
    )
    assert_matches(got, want, noised=False, file="case")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(problems(max_side=8), min_size=1, max_size=4),
    st.integers(0, 12),
    st.one_of(st.none(), st.sampled_from([1.0, 10.0])),
    st.integers(0, 1000),
)
def test_across_volumes_matches_reference(
    volumes: list[dict], n: int, beta: float | None, seed: int
) -> None:
    patch, stride = volumes[0]["patch"], volumes[0]["stride"]
    cases = {f"case_{i:03d}": v["volume"] for i, v in enumerate(volumes)}
    # Annotated keys use file names: they apply by case id.
    annotated = {f"case_{i:03d}.nii.gz": v["annotated"] for i, v in enumerate(volumes)}
    got = select_across_volumes(
        cases, patch, n, stride=stride, annotated=annotated, beta=beta, seed=seed
    )
    per_case = {
        f"case_{i:03d}": select_reference(
            v["volume"],
            patch,
            n,
            stride=stride3(stride),
            annotated=v["boxes"],
            beta=beta,
            seed=seed,
            file=f"case_{i:03d}",
        )
        for i, v in enumerate(volumes)
    }
    want = merge_reference(per_case, n)
    assert [p.file for p in got] == [case for case, _ in want]
    assert [(p.coords, p.size) for p in got] == [(t.coords, t.size) for _, t in want]
    np.testing.assert_allclose(
        [p.score for p in got],
        [t.mean if beta is None else t.key for _, t in want],
        rtol=1e-12,
        atol=0,
    )


def test_across_volumes_matches_per_volume_calls_and_paths(tmp_path) -> None:
    rng = np.random.default_rng(7)
    arrays = {f"c{i}": rng.random((9, 10, 11)).astype(np.float32) for i in range(3)}
    paths = {}
    for case, array in arrays.items():
        paths[case] = tmp_path / f"{case}.npy"
        np.save(paths[case], array)
    from_arrays = select_across_volumes(arrays, (3, 4, 5), 30, beta=2.0, seed=11)
    from_paths = select_across_volumes(paths, (3, 4, 5), 30, beta=2.0, seed=11)
    assert from_arrays == from_paths
    singles = [
        p
        for case in arrays
        for p in select_top_patches(arrays[case], (3, 4, 5), 30, file=case, beta=2.0, seed=11)
    ]
    keys32 = np.array([p.score for p in from_arrays]).astype(np.float32)
    assert (np.diff(keys32) <= 0).all()
    assert set(from_arrays) <= set(singles)
    assert len(from_arrays) == min(30, len(singles))
    assert len(select_across_volumes(arrays, (3, 4, 5), 2)) == 2


def test_staircase_known_answer() -> None:
    volume = np.repeat(np.round(1.0 - 0.1 * np.arange(11), 10), 10)[:, None, None]
    volume = np.broadcast_to(volume, (110, 10, 10)).astype(np.float32)
    top = select_top_patches(volume, (10, 10, 10), 3)
    assert [p.coords for p in top] == [(0, 0, 0), (10, 0, 0), (20, 0, 0)]
    np.testing.assert_allclose([p.score for p in top], [1.0, 0.9, 0.8], rtol=1e-6)
    assert all(p.size == (10, 10, 10) for p in top)
    avoided = select_top_patches(
        volume, (10, 10, 10), 3, annotated=[Patch("x.nii.gz", (0, 0, 0), (10, 10, 10))]
    )
    assert [p.coords for p in avoided] == [(10, 0, 0), (20, 0, 0), (30, 0, 0)]


def test_constant_volume_takes_candidates_in_c_order() -> None:
    got = select_top_patches(np.ones((6, 6, 6), dtype=np.float32), (2, 2, 2), 100)
    expected = [(z, y, x) for z in (0, 2, 4) for y in (0, 2, 4) for x in (0, 2, 4)]
    assert [p.coords for p in got] == expected
    assert all(p.score == 1.0 for p in got)


def test_equal_float32_keys_tie_by_index_not_by_float64_mean() -> None:
    tiny = 2.0**-40  # below float32 resolution at 1.0
    rising = np.array([[[1.0, 1.0 + tiny]]])
    falling = np.array([[[1.0 + tiny, 1.0]]])
    for volume in (rising, falling):
        got = select_top_patches(volume, (1, 1, 1), 2)
        assert [p.coords for p in got] == [(0, 0, 0), (0, 0, 1)]
        assert [p.score for p in got] == [volume[0, 0, 0], volume[0, 0, 1]]
    # One float32 step apart: the larger one wins whatever its index.
    step = np.array([[[1.0, 1.0 + 2.0**-20]]])
    assert [p.coords for p in select_top_patches(step, (1, 1, 1), 2)] == [(0, 0, 1), (0, 0, 0)]


def test_patch_larger_than_volume_is_clipped() -> None:
    volume = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    (only,) = select_top_patches(volume, (5, 5, 5), 3)
    assert only.coords == (0, 0, 0) and only.size == (2, 3, 4)
    assert only.score == pytest.approx(volume.mean(), rel=1e-15)
    clipped_x = select_top_patches(volume, (1, 1, 9), 10)
    assert [p.size for p in clipped_x] == [(1, 1, 4)] * 6
    assert clipped_x[0].coords == (1, 2, 0)


def test_n_zero_returns_empty_list() -> None:
    assert select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), 0) == []
    assert select_across_volumes({"a": np.ones((3, 3, 3))}, (1, 1, 1), 0) == []
    assert select_across_volumes({}, (1, 1, 1), 5) == []


def test_fully_annotated_volume_gives_nothing() -> None:
    assert (
        select_top_patches(np.ones((4, 4, 4)), (2, 2, 2), 5, annotated=[(0, 0, 0, 4, 4, 4)]) == []
    )


def test_zero_mean_boxes_rank_last_under_power_sampling() -> None:
    volume = np.zeros((1, 1, 6))
    volume[0, 0, 4] = 1.0
    got = select_top_patches(volume, (1, 1, 1), 6, beta=1.0, seed=3)
    assert got[0].coords == (0, 0, 4) and math.isfinite(got[0].score)
    assert [p.coords for p in got[1:]] == [(0, 0, x) for x in (0, 1, 2, 3, 5)]
    assert all(p.score == -math.inf for p in got[1:])


@pytest.mark.parametrize("beta", [1.0, 3.0])
def test_power_sampling_probability_of_two_overlapping_candidates(beta: float) -> None:
    # Exactly two candidates, x = 0 and x = 1, sharing voxel 1: means a and b.
    a, b = 0.6, 0.4
    volume = np.array([[[2 * a, 0.0, 2 * b]]])
    draws = 2000
    first = 0
    for seed in range(draws):
        (patch,) = select_top_patches(volume, (1, 1, 2), 2, beta=beta, seed=seed)
        first += patch.coords == (0, 0, 0)
    p = a**beta / (a**beta + b**beta)
    sigma = math.sqrt(p * (1 - p) / draws)
    assert abs(first / draws - p) < 5 * sigma, (first / draws, p)


def test_gumbel_draws_follow_the_gumbel_distribution() -> None:
    indices = np.arange(20_000, dtype=np.uint64)
    stream = native.stream_id("case_001", 0, -1)
    draws = np.asarray(native.gumbel(123, stream, indices))
    assert draws.dtype == np.float64 and draws.shape == indices.shape
    assert np.isfinite(draws).all()
    assert stats.kstest(draws, "gumbel_r").pvalue > 1e-3
    # Counter-based: a draw depends only on (seed, stream, index).
    np.testing.assert_array_equal(
        native.gumbel(123, stream, indices[[17, 3, 17]]), draws[[17, 3, 17]]
    )
    assert not np.array_equal(native.gumbel(124, stream, indices[:100]), draws[:100])
    other = native.stream_id("case_002", 0, -1)
    assert not np.array_equal(native.gumbel(123, other, indices[:100]), draws[:100])


def test_same_seed_same_result_other_seed_other_result() -> None:
    volume = np.random.default_rng(0).random((12, 12, 12))
    run = lambda seed: select_top_patches(volume, (3, 3, 3), 8, beta=1.0, seed=seed)  # noqa: E731
    assert run(5) == run(5)
    assert [p.coords for p in run(5)] != [p.coords for p in run(6)]
    by_file = select_top_patches(volume, (3, 3, 3), 8, beta=1.0, seed=5, file="other")
    assert [p.coords for p in by_file] != [p.coords for p in run(5)]


def test_float16_volume_ranks_its_own_values() -> None:
    rng = np.random.default_rng(1)
    volume = (rng.random((7, 8, 9)) * 4).astype(np.float16)
    got = select_top_patches(volume, (2, 3, 2), 6, stride=(1, 2, 1))
    want = select_reference(volume.astype(np.float64), (2, 3, 2), 6, stride=(1, 2, 1))
    assert [p.coords for p in got] == [t.coords for t in want]
    np.testing.assert_allclose([p.score for p in got], [t.mean for t in want], rtol=1e-12)


# ---------------------------------------------------------------- bad input


@contextlib.contextmanager
def raises(exc: type[BaseException], *words: str) -> Iterator[pytest.ExceptionInfo]:
    """pytest.raises that also requires every word in the message (case-insensitive)."""
    with pytest.raises(exc) as info:
        yield info
    message = str(info.value).lower()
    for word in words:
        assert word.lower() in message, (word, message)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_scores(bad: float, dtype: type) -> None:
    volume = np.ones((4, 4, 4), dtype=dtype)
    volume[1, 2, 3] = bad
    word = "nan" if np.isnan(bad) else "inf"
    with raises(InvalidScoresError, word):
        select_top_patches(volume, (2, 2, 2), 1)


def test_non_finite_scores_in_npy(tmp_path) -> None:
    volume = np.ones((4, 4, 4), dtype=np.float32)
    volume[3, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", volume)
    with raises(InvalidScoresError, "nan"):
        select_top_patches(tmp_path / "nan.npy", (2, 2, 2), 1)


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 4, 5), (7,)])
def test_wrong_dimensionality(shape: tuple[int, ...], tmp_path) -> None:
    with raises(InvalidScoresError, "3 dimensions", "(Z, Y, X)"):
        select_top_patches(np.ones(shape), (1, 1, 1), 1)
    np.save(tmp_path / "v.npy", np.ones(shape, dtype=np.float32))
    with raises(InvalidScoresError, f"{len(shape)} dimensions", "expected 3", "v.npy"):
        select_top_patches(tmp_path / "v.npy", (1, 1, 1), 1)


@pytest.mark.parametrize(
    "patch_size",
    [(0, 1, 1), (1, 1), (1, 1, 1, 1), (-2, 2, 2), (1.5, 2, 2), "abc", 4, (2**64, 1, 1)],
)
def test_invalid_patch_size(patch_size: object) -> None:
    with raises(InvalidPatchError, "patch size"):
        select_top_patches(np.ones((3, 3, 3)), patch_size, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "stride", [0, -1, (1, 2), (1, 0, 1), 1.5, (1, 2, 3, 4), 2**64, (1, 1, 2**64)]
)
def test_invalid_stride(stride: object) -> None:
    with raises(InvalidPatchError, "stride"):
        select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), 1, stride=stride)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [-1, 1.5, True, "3", None, 2**64])
def test_invalid_n(n: object) -> None:
    with raises(InvalidPatchError, "n (number of patches)"):
        select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), n)  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf, "1"])
def test_invalid_beta(beta: object) -> None:
    with raises(InvalidPatchError, "beta"):
        select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), 1, beta=beta)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**64, 1.0])
def test_invalid_seed(seed: object) -> None:
    with raises(InvalidPatchError, "seed"):
        select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), 1, beta=1.0, seed=seed)  # type: ignore[arg-type]


def test_negative_scores_with_power_sampling(tmp_path) -> None:
    volume = np.ones((3, 3, 3))
    volume[0, 0, 0] = -0.5
    assert len(select_top_patches(volume, (1, 1, 1), 2)) == 2  # fine without noise
    with raises(InvalidScoresError, "negative"):
        select_top_patches(volume, (1, 1, 1), 2, beta=1.0)
    np.save(tmp_path / "neg.npy", volume)
    with raises(InvalidScoresError, "negative"):
        select_top_patches(tmp_path / "neg.npy", (1, 1, 1), 2, beta=1.0)


def test_missing_npy(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        select_top_patches(tmp_path / "nope.npy", (1, 1, 1), 1)
    with pytest.raises(FileNotFoundError):
        select_across_volumes({"a": str(tmp_path / "nope.npy")}, (1, 1, 1), 1)


def test_corrupt_npy(tmp_path) -> None:
    path = tmp_path / "corrupt.npy"
    path.write_bytes(b"this is not a numpy file at all" * 10)
    with pytest.raises(NpyFormatError):
        select_top_patches(path, (1, 1, 1), 1)
    header_only = tmp_path / "header.npy"
    header_only.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4',")
    with pytest.raises(NpyFormatError):
        select_top_patches(header_only, (1, 1, 1), 1)


def test_truncated_npy(tmp_path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((8, 8, 8), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with raises(NpyFormatError, "truncated"):
        select_top_patches(path, (2, 2, 2), 1)


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.complex64, np.bool_])
def test_unsupported_dtype(dtype: type, tmp_path) -> None:
    volume = np.ones((3, 3, 3), dtype=dtype)
    with raises(InvalidScoresError, "float16/float32/float64"):
        select_top_patches(volume, (1, 1, 1), 1)
    np.save(tmp_path / "v.npy", volume)
    with pytest.raises((NpyFormatError, InvalidScoresError)) as info:
        select_top_patches(tmp_path / "v.npy", (1, 1, 1), 1)
    assert "float16" in str(info.value) and "float32" in str(info.value)


def test_object_npy_is_never_unpickled(tmp_path) -> None:
    volume = np.empty((2, 2, 2), dtype=object)
    volume[...] = 1.0
    np.save(tmp_path / "obj.npy", volume, allow_pickle=True)
    with pytest.raises((NpyFormatError, InvalidScoresError)):
        select_top_patches(tmp_path / "obj.npy", (1, 1, 1), 1)


def test_big_endian(tmp_path) -> None:
    volume = np.ones((3, 3, 3), dtype=">f4")
    with raises(InvalidScoresError, "big-endian"):
        select_top_patches(volume, (1, 1, 1), 1)
    np.save(tmp_path / "be.npy", volume)
    with pytest.raises(NpyFormatError) as info:
        select_top_patches(tmp_path / "be.npy", (1, 1, 1), 1)
    message = str(info.value).lower()
    assert "big-endian" in message or "byte order" in message, message


@pytest.mark.parametrize(
    "annotated",
    [[(0, 0, 1, 1)], [(0, 0, 0, 1, 1, 1, 1, 1)], [(0, 0, 0, 1, 1)], [(0, 0)]],
)
def test_annotated_of_wrong_dimensionality(annotated: list) -> None:
    with raises(InvalidPatchError, "3 dimensions"):
        select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), 1, annotated=annotated)


@pytest.mark.parametrize(
    "annotated",
    [
        [(0, 0, -1, 1, 1, 1)],
        [(0, 0, 0, 0, 1, 1)],
        [("a", 0, 0, 1, 1, 1)],
        [(2**64, 0, 0, 1, 1, 1)],
        5,
        Patch("a", (0, 0, 0), (1, 1, 1)),
    ],
)
def test_invalid_annotated(annotated: object) -> None:
    with pytest.raises(InvalidPatchError):
        select_top_patches(np.ones((3, 3, 3)), (1, 1, 1), 1, annotated=annotated)  # type: ignore[arg-type]


@pytest.mark.parametrize("scores", [[[[1.0]]], "not a file.npy", np.ones((0, 3, 3))])
def test_not_an_array(scores: object) -> None:
    with pytest.raises((InvalidScoresError, FileNotFoundError)):
        select_top_patches(scores, (1, 1, 1), 1)  # type: ignore[arg-type]


def test_same_case_twice_across_volumes() -> None:
    with raises(InvalidScoresError, "same case"):
        select_across_volumes({"a": np.ones((2, 2, 2)), "a.npy": np.ones((2, 2, 2))}, (1, 1, 1), 1)


def test_errors_are_clasp_errors() -> None:
    assert issubclass(InvalidScoresError, clasp_rs.ClaspError)
    assert issubclass(InvalidScoresError, ValueError)
    with pytest.raises(clasp_rs.ClaspError):
        select_top_patches(np.ones((3, 3)), (1, 1, 1), 1)


def test_huge_n_returns_everything_that_fits() -> None:
    assert len(select_top_patches(np.ones((4, 4, 4)), (1, 1, 1), 2**63 - 1)) == 64


_THREADS_SCRIPT = """
import json, numpy as np, clasp_rs
from clasp_rs import _clasp_rs
rng = np.random.default_rng(3)
volumes = {f"c{i}": rng.random((20, 24, 28)) for i in range(5)}
out = clasp_rs.select_across_volumes(volumes, (4, 5, 6), 25, beta=2.0, seed=1)
print(json.dumps([_clasp_rs.num_threads(), [[p.file, p.coords, p.score] for p in out]]))
"""


def test_results_do_not_depend_on_thread_count() -> None:
    runs = []
    for threads in ("1", "3"):
        env = {**os.environ, "CLASP_RS_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    assert [r[0] for r in runs] == [1, 3]
    assert runs[0][1] == runs[1][1] and len(runs[0][1]) == 25


def test_engine_errors_name_the_case(tmp_path) -> None:
    bad = np.ones((3, 3, 3))
    bad[1, 1, 1] = np.nan
    with raises(InvalidScoresError, "volume 'b'", "nan", "[1, 1, 1]"):
        select_across_volumes({"a": np.ones((3, 3, 3)), "b": bad}, (1, 1, 1), 1)
    np.save(tmp_path / "b.npy", bad)
    with raises(InvalidScoresError, "b.npy", "nan"):
        select_across_volumes({"a": np.ones((3, 3, 3)), "b": tmp_path / "b.npy"}, (1, 1, 1), 1)
    with raises(InvalidScoresError, "scores of 'case_7'", "negative"):
        select_top_patches(-np.ones((2, 2, 2)), (1, 1, 1), 1, beta=1.0, file="case_7")
