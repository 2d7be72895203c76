"""A plain numpy brute-force reference of DESIGN.md's patch selection.

Slow and obviously correct: every candidate's box mean is a direct float64 sum of its
voxels, candidates are sorted in full, and overlaps are found on a voxel occupancy mask.
It mirrors two engine conventions on purpose: candidates rank by their key rounded to
float32 precision, 24 significant bits over float64's exponent range (equal rounded keys:
lower C-order candidate index first), and under power sampling the key is
``ln(mean) + g / beta`` with ``g`` the engine's counter-based Gumbel draw for the
candidate's C-order index in the stride grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from clasp_rs import _clasp_rs

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Taken:
    coords: Triple
    size: Triple
    mean: float
    key: float


def clipped_size(shape: Sequence[int], patch_size: Sequence[int]) -> Triple:
    """The patch size clipped to the volume on every axis."""
    z, y, x = (min(int(p), int(s)) for p, s in zip(patch_size, shape, strict=True))
    return z, y, x


def candidate_starts(
    shape: Sequence[int], patch_size: Sequence[int], stride: Sequence[int]
) -> list[list[int]]:
    """Per axis, the starts k * stride with the whole (clipped) patch inside the volume."""
    size = clipped_size(shape, patch_size)
    return [list(range(0, s - p + 1, st)) for s, p, st in zip(shape, size, stride, strict=True)]


def box_means(volume: np.ndarray, patch_size: Sequence[int], stride: Sequence[int]) -> np.ndarray:
    """float64 (nz, ny, nx): the mean of every candidate box, summed voxel by voxel."""
    values = np.asarray(volume, dtype=np.float64)
    dz, dy, dx = clipped_size(values.shape, patch_size)
    zs, ys, xs = candidate_starts(values.shape, patch_size, stride)
    means = np.empty((len(zs), len(ys), len(xs)), dtype=np.float64)
    count = dz * dy * dx
    for i, z in enumerate(zs):
        for j, y in enumerate(ys):
            for k, x in enumerate(xs):
                block = values[z : z + dz, y : y + dy, x : x + dx]
                means[i, j, k] = float(np.sum(block, dtype=np.float64)) / count
    return means


def float32_precision(keys: np.ndarray | float) -> np.ndarray:
    """float64 keys rounded to 24 significant bits, one by one: each key's significand, in
    [0.5, 1), is a normal float32 after rounding, so float32 keeps exactly 24 bits of it."""
    out = np.array(keys, dtype=np.float64)
    flat = out.reshape(-1)
    for i, key in enumerate(flat.tolist()):
        if math.isfinite(key) and key != 0.0:
            significand, exponent = math.frexp(key)
            rounded = float(np.float32(significand))
            try:
                flat[i] = math.ldexp(rounded, exponent)
            except OverflowError:  # within half a float32 step of float64's maximum
                flat[i] = math.copysign(math.inf, key)
    return out


def ranking_keys(means: np.ndarray, beta: float | None, seed: int, stream: int) -> np.ndarray:
    """float64 keys, same shape as ``means``: the mean, or ln(mean) + Gumbel/beta."""
    if beta is None:
        return means.copy()
    indices = np.arange(means.size, dtype=np.uint64)
    gumbel = np.asarray(_clasp_rs.gumbel(seed, stream, indices)).reshape(means.shape)
    with np.errstate(divide="ignore"):
        return np.log(means) + gumbel / beta


def select_reference(
    volume: np.ndarray,
    patch_size: Sequence[int],
    n: int,
    *,
    stride: Sequence[int] = (1, 1, 1),
    annotated: Iterable[Sequence[int]] = (),
    beta: float | None = None,
    seed: int = 0,
    file: str = "",
) -> list[Taken]:
    """DESIGN.md's greedy selection on one volume, by brute force.

    ``annotated`` holds (z, y, x, dz, dy, dx) boxes; the noise stream is keyed by ``file``
    exactly as ``select_top_patches`` keys it.
    """
    values = np.asarray(volume, dtype=np.float64)
    size = clipped_size(values.shape, patch_size)
    zs, ys, xs = candidate_starts(values.shape, patch_size, stride)
    means = box_means(values, patch_size, stride)
    stream = _clasp_rs.stream_id(file, 0, -1)
    keys = ranking_keys(means, beta, seed, stream)

    occupied = np.zeros(values.shape, dtype=bool)
    for z, y, x, dz, dy, dx in annotated:
        occupied[z : z + dz, y : y + dy, x : x + dx] = True

    flat_keys = keys.ravel()
    key32 = float32_precision(flat_keys)
    # Best rounded key first; among equal rounded keys the lower C-order index.
    order = sorted(range(flat_keys.size), key=lambda i: (-key32[i], i))
    taken: list[Taken] = []
    for index in order:
        if len(taken) == n:
            break
        i, j, k = np.unravel_index(index, means.shape)
        z, y, x = zs[i], ys[j], xs[k]
        box = (slice(z, z + size[0]), slice(y, y + size[1]), slice(x, x + size[2]))
        if occupied[box].any():
            continue
        occupied[box] = True
        taken.append(Taken((z, y, x), size, float(means[i, j, k]), float(flat_keys[index])))
    return taken


def merge_reference(per_case: dict[str, list[Taken]], n: int) -> list[tuple[str, Taken]]:
    """All cases' taken patches, best rounded key first; ties by case name, then the order
    taken; cut to ``n``."""
    rows = []
    for case_rank, case in enumerate(sorted(per_case)):
        for position, t in enumerate(per_case[case]):
            rows.append((-float(float32_precision(t.key)), case_rank, position, case, t))
    rows.sort(key=lambda row: row[:3])
    return [(row[3], row[4]) for row in rows[:n]]


def boxes_overlap(a: Sequence[int], b: Sequence[int]) -> bool:
    """Whether two (z, y, x, dz, dy, dx) boxes share a voxel, by painting both on a grid."""
    extent = [max(a[i] + a[i + 3], b[i] + b[i + 3]) for i in range(3)]
    grid = np.zeros(extent, dtype=np.int8)
    for z, y, x, dz, dy, dx in (a, b):
        grid[z : z + dz, y : y + dy, x : x + dx] += 1
    return bool((grid == 2).any())
