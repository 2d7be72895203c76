"""Greedy, overlap-free selection of the best patches of score volumes.

Both functions here are thin, validating wrappers around one call of the native engine
(:func:`clasp_rs._engine.select`), which computes box means with exact summed-volume tables,
ranks candidates with partial selection and rejects overlapping ones, in parallel over
volumes with the GIL released.

Candidates are the patch starts on the stride grid whose whole patch lies inside the volume;
a patch size larger than the volume on an axis is clipped to the volume on that axis. The
engine ranks candidates by their key rounded to float32 precision (box mean, or
``ln(box mean) + Gumbel(0, 1) / beta`` under power sampling; box means of maps beyond
float32's range keep float64's range, see :mod:`clasp_rs._key_rounding`); equal keys go to
the lower C-order candidate index first.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from clasp_rs._engine import (
    MapJob,
    ScoreSource,
    Taken,
    VolumeJob,
    merge_best_first,
    select,
    stream_id,
)
from clasp_rs._messages import shown
from clasp_rs.annotated import match_annotated, volume_ids
from clasp_rs.arrays import score_array, score_layout_hint
from clasp_rs.exceptions import InvalidPatchError, InvalidScoresError
from clasp_rs.patches import MAX_VOXEL, Box, Patch

__all__ = [
    "ScoreSource",
    "as_annotated_boxes",
    "as_beta",
    "as_count",
    "as_patch_size",
    "as_score_source",
    "as_seed",
    "as_stride",
    "select_across_volumes",
    "select_top_patches",
]

_FLOAT_ITEMSIZES = (2, 4, 8)
# The engine holds counts and voxel positions in 64-bit integers; bigger Python ints would
# fail in the binding with a bare OverflowError.
_MAX_COUNT = 2**63 - 1
_MAX_VOXEL = MAX_VOXEL


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_count(n: Any) -> int:
    """Validate a patch count: an integer >= 0."""
    if not _is_int(n) or not 0 <= int(n) <= _MAX_COUNT:
        raise InvalidPatchError(
            f"n (number of patches) must be an integer in [0, 2**63), got {shown(n)}"
        )
    return int(n)


def _is_sequence(value: Any) -> bool:
    # A string is iterable, but never meant as three sizes.
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes))


def _voxel_triple(value: Any) -> tuple[int, int, int] | None:
    """``value`` as 3 integers (z, y, x) in [1, 2**62], or None when it is not that."""
    if not _is_sequence(value):
        return None
    items = tuple(value)
    if len(items) != 3 or not all(_is_int(v) and 0 < int(v) <= _MAX_VOXEL for v in items):
        return None
    return int(items[0]), int(items[1]), int(items[2])


def as_patch_size(patch_size: Any) -> tuple[int, int, int]:
    """Validate a patch size: 3 integers (dz, dy, dx) in [1, 2**62]."""
    if not _is_sequence(patch_size):
        raise InvalidPatchError(
            f"patch size must be 3 positive integers (z, y, x), got {shown(patch_size)}"
        )
    triple = _voxel_triple(patch_size)
    if triple is None:
        raise InvalidPatchError(
            "patch size must be 3 positive integers (z, y, x), each at most 2**62, for a 3-D "
            f"volume, got {shown(patch_size)}"
        )
    return triple


def as_stride(stride: Any) -> tuple[int, int, int]:
    """Validate a stride: one integer in [1, 2**62] for all axes, or 3 (z, y, x)."""
    if _is_int(stride):
        if not 0 < int(stride) <= _MAX_VOXEL:
            raise InvalidPatchError(
                f"stride must be a positive integer of at most 2**62, got {shown(stride)}"
            )
        return int(stride), int(stride), int(stride)
    triple = _voxel_triple(stride)
    if triple is None:
        raise InvalidPatchError(
            "stride must be a positive integer or 3 positive integers (z, y, x), each at most "
            f"2**62, got {shown(stride)}"
        )
    return triple


def as_beta(beta: Any) -> float:
    """Validate a power-sampling exponent: a finite number > 0."""
    if (
        isinstance(beta, bool)
        or not isinstance(beta, numbers.Real)
        or not _finite_float(beta)
        or float(beta) <= 0
    ):
        raise InvalidPatchError(
            f"beta must be a finite number > 0 (power sampling), got {shown(beta)}"
        )
    return float(beta)


def _finite_float(value: numbers.Real) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond float64's range
        return False


def as_seed(seed: Any) -> int:
    """Validate a seed: an integer in [0, 2**64)."""
    if not _is_int(seed) or not 0 <= int(seed) < 2**64:
        raise InvalidPatchError(f"seed must be an integer in [0, 2**64), got {shown(seed)}")
    return int(seed)


def as_score_source(scores: Any) -> npt.NDArray[np.floating[Any]] | str:
    """Check the cheap properties of a score volume before the engine reads it.

    Arrays must be numpy or torch (see :func:`clasp_rs.arrays.score_array`: detached, moved
    to the CPU, shared when already a CPU float array), 3-D (Z, Y, X), non-empty,
    float16/float32/float64 (or bfloat16 tensors) in native (little-endian) byte order; any
    strides are fine. Paths must exist; the engine checks the ``.npy`` header and data
    itself.

    Raises:
        InvalidScoresError: the array has the wrong type, dimensionality, dtype or byte order.
        FileNotFoundError: the path does not exist.
    """
    if isinstance(scores, (str, os.PathLike)):
        path = os.fspath(scores)
        if not isinstance(path, str):
            raise InvalidScoresError(f"score volume path must be text, got {shown(path)}")
        if not os.path.exists(path):
            raise FileNotFoundError(2, "score volume not found", path)
        return path
    scores = score_array(scores)
    if not isinstance(scores, np.ndarray):
        raise InvalidScoresError(
            "scores must be a numpy array or torch tensor (Z, Y, X) of float16/float32/float64 "
            f"or the path of a .npy file, got {type(scores).__name__}"
        )
    if scores.ndim != 3:
        raise InvalidScoresError(
            f"scores must have 3 dimensions (Z, Y, X), got {scores.ndim} (shape {scores.shape})"
            + score_layout_hint(tuple(scores.shape))
        )
    dtype = scores.dtype
    if dtype.kind != "f" or dtype.itemsize not in _FLOAT_ITEMSIZES:
        raise InvalidScoresError(
            f"scores dtype must be float16/float32/float64, got {dtype} "
            f"(convert with scores.astype(np.float32))"
        )
    if not dtype.isnative:
        raise InvalidScoresError(
            f"scores have non-native (big-endian) byte order {dtype.str!r}; expected native "
            "little-endian (convert with scores.astype(scores.dtype.newbyteorder('=')))"
        )
    if 0 in scores.shape:
        raise InvalidScoresError(f"scores volume is empty: shape {scores.shape}")
    return scores


def _as_box(item: Any) -> Box:
    if isinstance(item, Patch):
        return item.box
    if not _is_sequence(item):
        raise InvalidPatchError(
            "annotated patches must be clasp_rs.Patch or (z, y, x, dz, dy, dx) tuples, "
            f"got {shown(item)}"
        )
    values = tuple(item)
    if len(values) != 6:
        raise InvalidPatchError(
            "annotated patch must have 3 dimensions: a clasp_rs.Patch or a "
            f"(z, y, x, dz, dy, dx) tuple of 6 integers, got {len(values)} values: {shown(item)}"
        )
    if not all(_is_int(v) for v in values):
        raise InvalidPatchError(f"annotated patch must be 6 integers, got {shown(item)}")
    box = tuple(int(v) for v in values)
    if min(box[:3]) < 0 or min(box[3:]) <= 0 or max(box) > _MAX_VOXEL:
        raise InvalidPatchError(
            "annotated patch needs coords >= 0 and sizes > 0 (z, y, x, dz, dy, dx), each at "
            f"most 2**62, got {shown(item)}"
        )
    return box[0], box[1], box[2], box[3], box[4], box[5]


def as_annotated_boxes(annotated: Any) -> list[Box]:
    """Convert annotated patches (``Patch`` objects or 6-tuples) to engine boxes."""
    if isinstance(annotated, (Patch, str, bytes)) or not isinstance(annotated, Iterable):
        raise InvalidPatchError(
            "annotated must be a sequence of clasp_rs.Patch or (z, y, x, dz, dy, dx) tuples, "
            f"got {type(annotated).__name__}"
        )
    return [_as_box(item) for item in annotated]


def select_top_patches(
    scores: ScoreSource,
    patch_size: Sequence[int],
    n: int,
    *,
    stride: int | Sequence[int] = 1,
    annotated: Iterable[Patch | Sequence[int]] | Mapping[str, Iterable[Patch | Sequence[int]]] = (),
    file: str | None = None,
    beta: float | None = None,
    seed: int = 0,
) -> list[Patch]:
    """The best ``n`` non-overlapping patches of one score volume, greedily.

    Candidates are taken best first (ties: lower C-order candidate index first); each is
    taken unless it overlaps an ``annotated`` patch or one already taken.

    Args:
        scores: float16/float32/float64 array (Z, Y, X), any memory layout, as numpy or as a
            torch tensor on any device (detached; a CPU float tensor is read in place,
            bfloat16 is upcast), or the path of a ``.npy`` file (memory-mapped,
            little-endian, C or Fortran order, versions 1-3).
        patch_size: (dz, dy, dx); clipped to the volume on axes where it is larger.
        n: Number of patches wanted (>= 0).
        stride: Candidate grid step, one integer or (sz, sy, sx).
        annotated: Patches (or (z, y, x, dz, dy, dx) tuples) the result must not overlap: a
            list, all of them in this volume whatever their ``file``; or a dict in the form
            of :func:`select_across_volumes`, whose keys must name ``file`` (through
            ``case_id``).
        file: Stored as ``Patch.file`` (``""`` when None) and keys the noise stream.
        beta: None ranks by box mean. A number > 0 ranks by
            ``ln(box mean) + Gumbel(0, 1) / beta`` (power sampling); scores must then be
            non-negative, and a box mean of 0 ranks at ``-inf``.
        seed: Seed of the counter-based noise generator; same (scores, file, seed) give the
            same result on any thread count.

    Returns:
        ``min(n, all that fit)`` patches in the order taken. ``Patch.score`` is the
        float64 box mean, or the noised key when ``beta`` is given; ``Patch.size`` is the
        clipped size; ``Patch.stratum`` is None.

    Raises:
        InvalidScoresError: bad array (dimensions, dtype, byte order, NaN/inf, negative
            values under power sampling).
        InvalidPatchError: bad patch size, stride, n, beta, seed or annotated patch; a dict
            ``annotated`` key that does not name ``file``.
        NpyFormatError: corrupt, truncated or unsupported ``.npy`` file.
        FileNotFoundError: the ``.npy`` path does not exist.
    """
    count = as_count(n)
    size = as_patch_size(patch_size)
    step = as_stride(stride)
    if file is not None and not isinstance(file, str):
        raise InvalidPatchError(f"file must be a string or None, got {shown(file)}")
    if isinstance(annotated, Mapping):
        annotated = match_annotated(annotated, [file or ""]).get(file or "", [])
    boxes = as_annotated_boxes(annotated)
    noise = None
    if beta is not None:
        noise = (as_beta(beta), as_seed(seed), stream_id(file or "", 0, -1))
    else:
        as_seed(seed)
    source = as_score_source(scores)
    if count == 0:
        return []
    name = "scores" if file is None else f"scores of {shown(file)}"
    job = VolumeJob([MapJob(source, count, noise)], boxes, name)
    taken = select([job], size, step)[0][0]
    return [_patch(file or "", t, beta is not None) for t in taken]


def _patch(file: str, taken: Taken, noised: bool) -> Patch:
    return Patch(
        file,
        taken.start,
        taken.size,
        score=taken.key if noised else taken.mean,
        mean=taken.mean,
        key=taken.key,
    )


def select_across_volumes(
    volumes: Mapping[str, ScoreSource],
    patch_size: Sequence[int],
    n: int,
    *,
    stride: int | Sequence[int] = 1,
    annotated: Mapping[str, Iterable[Patch | Sequence[int]]] | Iterable[Patch] | None = None,
    beta: float | None = None,
    seed: int = 0,
) -> list[Patch]:
    """The best ``n`` patches over several score volumes.

    Each volume is selected greedily as by :func:`select_top_patches` (up to ``n`` patches,
    ``file`` = its key), all volumes in one parallel engine call; the per-volume lists are
    then merged best first by the key rounded to float32 precision (ties keep the sorted
    case-name order, then the order taken) and cut to ``n``.

    Args:
        volumes: Case name -> score volume (numpy array or torch tensor (Z, Y, X), as for
            :func:`select_top_patches`, or ``.npy`` path); volumes may have different shapes.
        patch_size: (dz, dy, dx), clipped per volume.
        n: Number of patches wanted in total (>= 0).
        stride: One integer or (sz, sy, sx).
        annotated: Patches already annotated, as a dict case (or file) name -> patches
            (``Patch`` or 6-tuples) or a flat list of ``Patch`` whose ``file`` names the
            volume. Names match through ``case_id`` (``"case_001.nii.gz"`` applies to volume
            ``"case_001"``); one that names no volume is an error.
        beta: Power sampling exponent, or None to rank by box mean.
        seed: Noise seed; the noise stream of a case is keyed by its name.

    Returns:
        Up to ``n`` patches, best first; ``Patch.file`` is the case name.

    Raises:
        Same as :func:`select_top_patches`; also InvalidScoresError when two keys share a
        case id, and InvalidPatchError when an ``annotated`` name names no volume.
    """
    count = as_count(n)
    size = as_patch_size(patch_size)
    step = as_stride(stride)
    beta_value = None if beta is None else as_beta(beta)
    seed_value = as_seed(seed)
    if not isinstance(volumes, Mapping):
        raise InvalidScoresError(
            f"volumes must be a mapping of case name -> scores, got {type(volumes).__name__}"
        )
    cases = sorted(volumes, key=str)
    volume_ids(cases)
    sources = [as_score_source(volumes[case]) for case in cases]
    boxes = {
        case: as_annotated_boxes(items) for case, items in match_annotated(annotated, cases).items()
    }

    if count == 0 or not cases:
        return []
    jobs = [
        VolumeJob(
            [
                MapJob(
                    source,
                    count,
                    None if beta_value is None else (beta_value, seed_value, stream_id(c, 0, -1)),
                )
            ],
            boxes.get(c, []),
            f"volume {c!r}",
        )
        for c, source in zip(cases, sources, strict=True)
    ]
    result = select(jobs, size, step)
    merged = merge_best_first({c: v[0] for c, v in zip(cases, result, strict=True)})[:count]
    return [_patch(case, t, beta_value is not None) for case, t in merged]
