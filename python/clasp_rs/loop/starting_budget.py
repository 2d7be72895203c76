"""The starting budget of an experiment (``loop_000.json``), from the pool's ground truth.

Two patches centred on voxels of every label, background included, in different cases, then
Random 33 % FG (:mod:`clasp_rs.strategies.random_fg`) up to the budget. Its draws use the
random-FG stream codes shifted by :data:`~clasp_rs.strategies.streams.START_OFFSET`, so they
never repeat those of a ``random-fg33`` query of loop 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from clasp_rs.exceptions import InvalidPatchError
from clasp_rs.patches import Box, Patch
from clasp_rs.strategies.random_fg import LabelSource, VoxelQueue, load_labels, random_fg_patches
from clasp_rs.strategies.streams import START_OFFSET, code_start_case, code_start_voxels, draws
from clasp_rs.strategies.types import QueryRequest

__all__ = ["starting_budget"]


def starting_budget(
    labels: Mapping[str, LabelSource],
    budget: int,
    patch_size: Sequence[int],
    *,
    seed: int = 0,
    stride: int | Sequence[int] = 1,
    classes: Iterable[int] | None = None,
    ignore_label: int | None = None,
    annotated: Mapping[str, Iterable[Any]] | None = None,
    files: Mapping[str, str] | None = None,
) -> list[Patch]:
    """The starting budget (``loop_000.json``): two patches centred on voxels of every label,
    background included, each of the two in a different case, then Random 33 % FG up to
    ``budget`` patches.

    For each label in ascending order the cases containing it are visited in a seeded random
    order; in each, the patch is centred on the first voxel of the label (seeded random
    order) whose patch overlaps nothing chosen so far, until two cases have one. A label
    found in one case only gets one patch there. The label patches carry the label as
    ``Patch.stratum``.

    Args:
        labels: case name -> integer ``(Z, Y, X)`` ground truth (array or ``.npy`` path).
        budget: patches in total.
        patch_size: ``(dz, dy, dx)``, clipped to each volume.
        seed: seed of every draw.
        stride: grid of the random part.
        classes: all label values, background included (default: every value found in
            ``labels`` except ``ignore_label``).
        ignore_label: value that is not a class.
        annotated: case name -> patches to avoid.
        files: case name -> ``Patch.file`` (default: the case name).

    Raises:
        InvalidPatchError: ``budget`` is smaller than the label patches it must hold.
    """
    arrays = load_labels(labels)
    request = QueryRequest.build(
        budget, 0, patch_size, stride=stride, annotated=annotated, files=files
    )
    cases = sorted(arrays)
    if classes is None:
        seen: set[int] = set()
        for array in arrays.values():
            seen.update(int(v) for v in np.unique(array))
        values = sorted(v for v in seen if v != ignore_label)
    else:
        values = sorted({int(c) for c in classes if int(c) != ignore_label})
    present = {
        value: [case for case in cases if bool(np.any(np.asarray(arrays[case]) == value))]
        for value in values
    }
    needed = sum(min(2, len(with_value)) for with_value in present.values())
    if request.n < needed:
        raise InvalidPatchError(
            f"starting budget {request.n} is smaller than the {needed} patches it needs (two "
            f"per label, in different cases, for labels {values})"
        )
    blockers: dict[str, list[Box]] = {case: request.boxes(case) for case in cases}
    chosen: dict[str, list[Box]] = {case: [] for case in cases}
    patches: list[Patch] = []
    for value in values:
        with_value = present[value]
        case_draws = {
            case: float(draws(seed, case, 0, code_start_case(value), [0])[0]) for case in with_value
        }
        placed = 0
        for case in sorted(with_value, key=lambda c: (-case_draws[c], c)):
            if placed == 2:
                break
            queue = VoxelQueue(
                arrays, [case], value, seed=seed, loop=0, code=code_start_voxels(value)
            )
            found = queue.next_free(arrays, request.patch_size, blockers)
            if found is None:
                continue
            _, box = found
            blockers[case].append(box)
            chosen[case].append(box)
            patches.append(Patch(request.file(case), box[:3], box[3:], stratum=value))
            placed += 1
    fg_classes = [v for v in values if v > 0]
    patches += random_fg_patches(
        arrays,
        request.n - len(patches),
        request,
        share=Fraction(33, 100),
        seed=seed,
        classes=fg_classes,
        ignore_label=ignore_label,
        offset=START_OFFSET,
        extra_blockers=chosen,
    )
    return patches
