"""The one door to the native engine (:mod:`clasp_rs._clasp_rs`): typed jobs in, typed records
out, and the cross-volume merge every caller shares.

Nothing else in the package imports the native module. Score sources are ``(Z, Y, X)``
float16/float32/float64 arrays in any memory layout, or paths of ``.npy`` files, which the
engine memory-maps itself. Boxes are ``(z, y, x, dz, dy, dx)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from clasp_rs import _clasp_rs as _native
from clasp_rs._key_rounding import float32_precision
from clasp_rs._messages import shown
from clasp_rs.exceptions import InvalidArgumentError
from clasp_rs.patches import Box

__all__ = [
    "MapJob",
    "Noise",
    "ScoreSource",
    "Taken",
    "VolumeJob",
    "__version__",
    "box_means",
    "candidate_index",
    "gumbel",
    "merge_best_first",
    "num_threads",
    "select",
    "stream_id",
]

__version__: str = _native.__version__

ScoreSource: TypeAlias = "npt.NDArray[np.floating[Any]] | str | os.PathLike[str]"
"""A score volume: a float array ``(Z, Y, X)`` or the path of a ``.npy`` file of one."""

Noise: TypeAlias = "tuple[float, int, int]"
"""``(beta, seed, stream)``: rank by ``ln(mean) + Gumbel(0, 1) / beta``, the draw of each
candidate keyed by ``(seed, stream, candidate index)``."""


@dataclass(frozen=True, slots=True)
class Taken:
    """A patch the engine took.

    Attributes:
        start: first voxel ``(z, y, x)``.
        size: extent ``(dz, dy, dx)``, the patch size clipped to the volume.
        index: C-order index of the candidate in the volume's stride grid.
        mean: exact box mean (float64).
        key: ranking value (float64): the mean, or ``ln(mean) + Gumbel / beta`` under noise
            (``-inf`` for a zero mean). The engine ranks by it rounded to float32 precision.
    """

    start: tuple[int, int, int]
    size: tuple[int, int, int]
    index: int
    mean: float
    key: float

    @property
    def box(self) -> Box:
        """``(z, y, x, dz, dy, dx)``."""
        return (*self.start, *self.size)


@dataclass(frozen=True, slots=True)
class MapJob:
    """One map of a volume: what it ranks, how many patches it may take, its noise."""

    scores: ScoreSource
    quota: int
    noise: Noise | None = None


@dataclass(frozen=True, slots=True)
class VolumeJob:
    """The maps of one volume, processed in order, and the boxes none of them may overlap.

    Attributes:
        maps: processed in this order; each takes from what the earlier ones left.
        annotated: boxes ``(z, y, x, dz, dy, dx)`` already annotated in the volume.
        name: how error messages name the volume's maps (default ``volumes[v][k]``; a
            ``.npy`` path is always named by its path).
    """

    maps: Sequence[MapJob]
    annotated: Sequence[Box] = ()
    name: str | None = None


def _triple(values: Sequence[Any]) -> tuple[int, int, int]:
    return int(values[0]), int(values[1]), int(values[2])


def select(
    jobs: Sequence[VolumeJob],
    patch_size: Sequence[int],
    stride: Sequence[int],
) -> list[list[list[Taken]]]:
    """Greedy, overlap-free selection for all ``jobs`` in one parallel engine call (GIL
    released, Ctrl-C honoured).

    Map ``k`` of volume ``v`` takes up to its quota of candidates, best float32 key first
    (ties: lower candidate index), skipping any that overlaps the volume's annotated boxes or
    a patch already taken in the volume by this call.

    Returns:
        ``result[v][k]``: the patches map ``k`` of volume ``v`` took, in the order taken.

    Raises:
        InvalidScoresError, InvalidPatchError, NpyFormatError, FileNotFoundError: as the
            engine reports them.
    """
    if not jobs:
        return []
    names = None
    if any(job.name is not None for job in jobs):
        names = [
            [
                job.name if job.name is not None else f"volumes[{v}][{k}]"
                for k in range(len(job.maps))
            ]
            for v, job in enumerate(jobs)
        ]
    result = _native.select_strata(
        [[m.scores for m in job.maps] for job in jobs],
        _triple(patch_size),
        _triple(stride),
        [[int(m.quota) for m in job.maps] for job in jobs],
        [[m.noise for m in job.maps] for job in jobs],
        [[tuple(int(v) for v in b) for b in job.annotated] for job in jobs],  # type: ignore[misc]
        names,
    )
    return [
        [[Taken(start, size, index, mean, key) for start, size, index, mean, key in m] for m in v]
        for v in result
    ]


def candidate_index(
    start: Sequence[int],
    shape: Sequence[int],
    patch_size: Sequence[int],
    stride: Sequence[int],
) -> int:
    """C-order index in the stride grid of the candidate starting at ``start`` (for records
    that were stored without it)."""
    counts = [
        (int(s) - min(int(p), int(s))) // int(st) + 1
        for s, p, st in zip(shape, patch_size, stride, strict=True)
    ]
    k = [int(start[i]) // int(stride[i]) for i in range(3)]
    return (k[0] * counts[1] + k[1]) * counts[2] + k[2]


def merge_best_first(lists: Mapping[str, Sequence[Taken]]) -> list[tuple[str, Taken]]:
    """All ``(case, taken)`` of ``lists``, best first: key rounded to float32 precision
    (:func:`~clasp_rs._key_rounding.float32_precision`, which keeps float64's range)
    descending, then sorted case-name order, then candidate index.

    Within one volume and map this is the engine's own order, so merging per-volume lists is
    the same as one greedy pass over all volumes' candidates.
    """
    entries = [(case, t) for case in sorted(lists) for t in lists[case]]
    if not entries:
        return []
    rank = {case: i for i, case in enumerate(sorted(lists))}
    keys = float32_precision([t.key for _, t in entries])
    cases = np.array([rank[case] for case, _ in entries], dtype=np.int64)
    index = np.array([t.index for _, t in entries], dtype=np.int64)
    order = np.lexsort((index, cases, -keys))
    return [entries[i] for i in order]


def box_means(
    scores: ScoreSource, patch_size: Sequence[int], stride: Sequence[int]
) -> npt.NDArray[np.float64]:
    """Box mean of every candidate, float64 ``(nz, ny, nx)`` over the stride grid."""
    return np.asarray(_native.box_means(scores, _triple(patch_size), _triple(stride)))


def stream_id(case: str, loop: int, code: int) -> int:
    """The stable 64-bit noise stream key of ``(case, loop, code)``.

    Raises:
        InvalidArgumentError: ``loop`` or ``code`` outside int64 (the engine's key).
    """
    for what, value in (("loop", loop), ("stream code", code)):
        if not -(2**63) <= int(value) < 2**63:
            raise InvalidArgumentError(f"{what} must be in [-2**63, 2**63), got {shown(value)}")
    return int(_native.stream_id(case, loop, code))


def gumbel(seed: int, stream: int, indices: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Gumbel(0, 1) draws of the counter-based generator, float64, shaped like ``indices``
    (non-negative integers)."""
    counters = np.asarray(indices, dtype=np.uint64)
    out = _native.gumbel(seed, stream, counters.reshape(-1))
    return np.asarray(out, dtype=np.float64).reshape(counters.shape)


def num_threads() -> int:
    """Threads in the engine's pool (``CLASP_RS_NUM_THREADS``, default: all cores)."""
    return int(_native.num_threads())
