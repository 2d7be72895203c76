"""Strategies that look at ground-truth labels (simulation only): Random 33 % / 66 % FG, and
the voxel queues the loop's starting budget (:mod:`clasp_rs.loop.starting_budget`) shares.

They satisfy :class:`~clasp_rs.strategies.base.QueryStrategy` and query labels
(:meth:`RandomFG.query_labels`) instead of score maps, so they are not
:class:`~clasp_rs.strategies.base.Strategy` subclasses.

A patch "centred on" voxel ``v`` starts at ``v - size // 2``, moved inside the volume (the
size clipped to the volume on each axis); such patches are not restricted to the stride grid.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from clasp_rs.annotated import match_annotated
from clasp_rs.exceptions import InvalidArgumentError, InvalidScoresError
from clasp_rs.patches import Box, Patch
from clasp_rs.strategies.base import SeededStrategy
from clasp_rs.strategies.baselines import Random
from clasp_rs.strategies.budget import as_fraction, floor_share
from clasp_rs.strategies.streams import CODE_FG_CLASS, CODE_RANDOM, code_fg_voxels, draws
from clasp_rs.strategies.types import QueryRequest, QueryResult, ScoreSet

__all__ = [
    "LabelSource",
    "RandomFG",
    "RandomFG33",
    "RandomFG66",
    "VoxelQueue",
    "load_labels",
    "random_fg_patches",
]

LabelSource = Any
"""A ``(Z, Y, X)`` integer label array, or the path of a ``.npy`` file of one."""

# Voxels examined per vectorised overlap check while looking for a patch that fits.
_VOXEL_BATCH = 4096


def load_labels(labels: Mapping[str, LabelSource]) -> dict[str, np.ndarray]:
    """The integer ``(Z, Y, X)`` label arrays of ``labels`` (``.npy`` paths memory-mapped),
    in sorted case order.

    Raises:
        ValueError: not a non-empty mapping.
        InvalidScoresError: an array that is not integer and 3-D.
    """
    if not isinstance(labels, Mapping) or not labels:
        raise InvalidArgumentError(
            "labels must be a non-empty dict case name -> (Z, Y, X) label array"
        )
    out = {}
    for case in sorted(labels):
        value = labels[case]
        if isinstance(value, (str, os.PathLike)):
            value = np.load(value, mmap_mode="r", allow_pickle=False)
        array = np.asarray(value)
        if array.ndim != 3 or not np.issubdtype(array.dtype, np.integer):
            raise InvalidScoresError(
                f"labels of case {case!r} must be an integer (Z, Y, X) array, got "
                f"{array.ndim}-D {array.dtype}"
            )
        out[str(case)] = array
    return out


def _centred_box(
    flat: int, shape: tuple[int, ...], patch_size: Sequence[int]
) -> tuple[int, int, int, int, int, int]:
    voxel = np.unravel_index(flat, shape)
    size = [min(int(p), int(s)) for p, s in zip(patch_size, shape, strict=True)]
    start = [
        min(max(int(v) - d // 2, 0), int(s) - d) for v, d, s in zip(voxel, size, shape, strict=True)
    ]
    return (start[0], start[1], start[2], size[0], size[1], size[2])


def _centred_boxes(
    flats: np.ndarray, shape: tuple[int, ...], patch_size: Sequence[int]
) -> np.ndarray:
    """int64 (n, 6) boxes centred on the flat voxel indices ``flats``."""
    voxels = np.stack(np.unravel_index(flats, shape), axis=1).astype(np.int64)
    size = np.array([min(int(p), int(s)) for p, s in zip(patch_size, shape, strict=True)])
    start = np.clip(voxels - size // 2, 0, np.array(shape) - size)
    return np.concatenate([start, np.broadcast_to(size, start.shape)], axis=1)


def _free(boxes: np.ndarray, blockers: list[Box]) -> np.ndarray:
    """Which of ``boxes`` (n, 6) overlap none of ``blockers``."""
    if not blockers:
        return np.ones(len(boxes), dtype=bool)
    b = np.asarray(blockers, dtype=np.int64)
    a0, a1 = boxes[:, None, :3], boxes[:, None, :3] + boxes[:, None, 3:]
    b0, b1 = b[None, :, :3], b[None, :, :3] + b[None, :, 3:]
    hit = np.all((a0 < b1) & (b0 < a1), axis=2)
    return ~hit.any(axis=1)


class VoxelQueue:
    """Voxels of one label over the given cases in a seeded random order (higher draw
    first; ties: earlier case, lower flat index), consumed front to back."""

    def __init__(
        self,
        labels: Mapping[str, np.ndarray],
        cases: Sequence[str],
        label: int,
        *,
        seed: int,
        loop: int,
        code: int,
    ) -> None:
        keys, ranks, flats = [], [], []
        for rank, case in enumerate(cases):
            flat = np.flatnonzero(np.asarray(labels[case]).reshape(-1) == label)
            if flat.size == 0:
                continue
            keys.append(draws(seed, case, loop, code, flat))
            ranks.append(np.full(flat.size, rank))
            flats.append(flat)
        if keys:
            key = np.concatenate(keys)
            rank_all = np.concatenate(ranks)
            flat_all = np.concatenate(flats)
            order = np.lexsort((flat_all, rank_all, -key))
            self.ranks = rank_all[order]
            self.flats = flat_all[order]
        else:
            self.ranks = np.zeros(0, dtype=np.int64)
            self.flats = np.zeros(0, dtype=np.int64)
        self.cases = list(cases)
        self.position = 0

    def next_free(
        self,
        labels: Mapping[str, np.ndarray],
        patch_size: Sequence[int],
        blockers: Mapping[str, list[Box]],
    ) -> tuple[str, Box] | None:
        """The next voxel whose centred patch overlaps nothing in ``blockers`` of its case
        (and consume everything up to it), or None when the queue is exhausted."""
        while self.position < self.flats.size:
            stop = min(self.position + _VOXEL_BATCH, self.flats.size)
            ranks = self.ranks[self.position : stop]
            flats = self.flats[self.position : stop]
            free = np.zeros(stop - self.position, dtype=bool)
            for rank in np.unique(ranks):
                case = self.cases[int(rank)]
                mine = ranks == rank
                boxes = _centred_boxes(flats[mine], labels[case].shape, patch_size)
                free[mine] = _free(boxes, blockers.get(case, []))
            hits = np.flatnonzero(free)
            if hits.size == 0:
                self.position = stop
                continue
            j = int(hits[0])
            self.position += j + 1
            case = self.cases[int(ranks[j])]
            return case, _centred_box(int(flats[j]), labels[case].shape, patch_size)
        return None


def _foreground_classes(
    labels: Mapping[str, np.ndarray], classes: Iterable[int] | None, ignore_label: int | None
) -> list[int]:
    if classes is not None:
        return sorted({int(c) for c in classes if int(c) > 0 and int(c) != ignore_label})
    found: set[int] = set()
    for array in labels.values():
        found.update(int(v) for v in np.unique(array))
    return sorted(c for c in found if c > 0 and c != ignore_label)


def random_fg_patches(
    labels: Mapping[str, np.ndarray],
    n: int,
    request: QueryRequest,
    *,
    share: Fraction,
    seed: int,
    classes: Iterable[int] | None = None,
    ignore_label: int | None = None,
    offset: int = 0,
    extra_blockers: Mapping[str, list[Box]] | None = None,
) -> list[Patch]:
    """``floor(share n)`` patches centred on foreground voxels of random classes, then
    Random up to ``n`` (see :class:`RandomFG`). ``offset`` shifts every stream code."""
    cases = sorted(labels)
    blockers: dict[str, list[Box]] = {
        case: request.boxes(case) + list((extra_blockers or {}).get(case, [])) for case in cases
    }
    fg = _foreground_classes(labels, classes, ignore_label)
    target = floor_share(share, n)
    queues: dict[int, VoxelQueue] = {}
    active = list(fg)
    patches: list[Patch] = []
    attempt = 0
    while len(patches) < target and active:
        g = draws(
            seed,
            "",
            request.loop,
            CODE_FG_CLASS + offset,
            attempt * len(fg) + np.arange(len(fg)),
        )
        attempt += 1
        # Gumbel-max over the classes that still have room: a uniform choice among them.
        c = max(active, key=lambda label: (g[fg.index(label)], -label))
        if c not in queues:
            queues[c] = VoxelQueue(
                labels, cases, c, seed=seed, loop=request.loop, code=code_fg_voxels(c) + offset
            )
        found = queues[c].next_free(labels, request.patch_size, blockers)
        if found is None:
            active.remove(c)
            continue
        case, box = found
        blockers[case].append(box)
        patches.append(Patch(request.file(case), box[:3], box[3:], stratum=c))

    rest = n - len(patches)
    if rest > 0:
        shapes = {case: tuple(int(s) for s in labels[case].shape) for case in cases}
        random = Random(seed=seed)
        random.code = CODE_RANDOM + offset  # type: ignore[misc]
        sub = QueryRequest(
            n=rest,
            loop=request.loop,
            patch_size=request.patch_size,
            stride=request.stride,
            per_volume=request.per_volume,
            annotated={case: tuple(boxes) for case, boxes in blockers.items()},
            files=request.files,
        )
        scores = {case: ScoreSet(shape) for case, shape in shapes.items()}  # type: ignore[arg-type]
        result = random.query_scores(scores, sub)
        patches += [Patch(p.file, p.coords, p.size) for p in result.patches]
    return patches


class RandomFG(SeededStrategy):
    """Random ``share`` FG: ``floor(share n)`` patches centred on ground-truth foreground
    voxels of random classes (each pick: a class drawn uniformly among those whose voxels
    still have room, then its next voxel in a seeded random order over all cases whose
    centred patch overlaps nothing annotated or taken), the rest Random on the stride grid.

    Needs the ground-truth labels: simulation only. ``per_volume`` caps the random part.
    ``Patch.stratum`` is the class for the centred patches, None for the random ones.
    """

    needs = frozenset({"shape"})
    needs_labels = True
    shardable = False
    share: ClassVar[float] = 0.33

    def __init__(self, *, seed: int = 0, n_loops: int = 5) -> None:
        super().__init__(seed=seed, n_loops=n_loops)
        self._share = as_fraction(self.share, "share")

    def query(
        self,
        volumes: Mapping[str, Any] | None,
        n: int,
        loop: int,
        patch_size: Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        per_volume: int | None = None,
        annotated: Mapping[str, Iterable[Any]] | Iterable[Patch] | None = None,
        labels: Mapping[str, LabelSource],
        classes: Iterable[int] | None = None,
        ignore_label: int | None = None,
        device: str = "auto",
        workdir: str | os.PathLike[str] | None = None,
    ) -> list[Patch]:
        """Query ``n`` patches; ``volumes`` is only checked to name the same cases as
        ``labels`` (it may be None). ``classes``: the foreground labels to draw from
        (default: every positive value in ``labels`` except ``ignore_label``). ``annotated``
        as for map strategies (a dict or a flat list of ``Patch``, matched to the cases of
        ``labels`` through ``case_id``). ``device`` and ``workdir`` are accepted for the
        signature of map strategies and unused."""
        arrays = load_labels(labels)
        request = QueryRequest.build(
            n,
            loop,
            patch_size,
            stride=stride,
            per_volume=per_volume,
            annotated=match_annotated(annotated, arrays),
        )
        if volumes is not None and set(volumes) != set(arrays):
            missing = sorted(set(volumes) - set(arrays))
            extra = sorted(set(arrays) - set(volumes))
            raise InvalidArgumentError(
                f"labels and volumes must name the same cases; labels lack {missing}, "
                f"have extra {extra}"
            )
        return self.query_labels(
            arrays, request, classes=classes, ignore_label=ignore_label
        ).patches

    def query_labels(
        self,
        labels: Mapping[str, LabelSource],
        request: QueryRequest,
        *,
        classes: Iterable[int] | None = None,
        ignore_label: int | None = None,
    ) -> QueryResult:
        """The query over the ground truth ``labels`` (case -> ``(Z, Y, X)`` integers)."""
        patches = random_fg_patches(
            load_labels(labels),
            request.n,
            request,
            share=self._share,
            seed=self.seed,
            classes=classes,
            ignore_label=ignore_label,
        )
        return QueryResult(patches, beta=None)


class RandomFG33(RandomFG):
    """Random 33 % FG (``random-fg33``)."""

    name = "random-fg33"
    share = 0.33


class RandomFG66(RandomFG):
    """Random 66 % FG (``random-fg66``)."""

    name = "random-fg66"
    share = 0.66
