"""Annotating patches: the partial training labels, simulated annotation from the ground
truth, and a human's label files for queried patches.

A training label file holds the full label inside annotated patches and the ``ignore`` value
everywhere else. Annotating new patches writes values only inside them, so applying the same
annotation twice gives the same file: a step interrupted half-way is simply run again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clasp_rs.exceptions import DatasetError
from clasp_rs.patches import Patch, case_id

__all__ = [
    "HumanLabels",
    "apply_patches",
    "check_human_labels",
    "foreground_counts",
    "partial_labels",
    "patch_mask",
    "patches_by_case",
    "union_voxels",
]


def patches_by_case(patches: Iterable[Patch]) -> dict[str, list[Patch]]:
    """Patches grouped by case name (``case_id`` of ``Patch.file``), case names sorted."""
    grouped: defaultdict[str, list[Patch]] = defaultdict(list)
    for p in patches:
        grouped[case_id(p.file)].append(p)
    return dict(sorted(grouped.items()))


def _check_inside(patch: Patch, shape: Sequence[int], case: str) -> None:
    end = patch.end
    if any(e > s for e, s in zip(end, shape, strict=True)):
        raise DatasetError(
            f"patch {patch.coords}+{patch.size} of case {case!r} reaches {end}, outside the "
            f"volume {tuple(shape)} (Z, Y, X)"
        )


def patch_mask(shape: Sequence[int], patches: Iterable[Patch], case: str = "") -> np.ndarray:
    """bool ``(Z, Y, X)``: True inside any of ``patches``.

    Raises:
        DatasetError: a patch reaches outside the volume.
    """
    mask = np.zeros(tuple(shape), dtype=bool)
    for p in patches:
        _check_inside(p, shape, case)
        z, y, x = p.coords
        dz, dy, dx = p.size
        mask[z : z + dz, y : y + dy, x : x + dx] = True
    return mask


def partial_labels(
    ground_truth: np.ndarray, patches: Iterable[Patch], ignore_label: int, dtype: type
) -> np.ndarray:
    """``ground_truth`` inside ``patches``, ``ignore_label`` elsewhere; ``(Z, Y, X)``."""
    out: np.ndarray = np.full(ground_truth.shape, ignore_label, dtype=dtype)
    mask = patch_mask(ground_truth.shape, patches)
    out[mask] = ground_truth[mask]
    return out


def apply_patches(current: np.ndarray, source: np.ndarray, patches: Iterable[Patch]) -> np.ndarray:
    """A copy of ``current`` with ``source``'s values inside ``patches``.

    Args:
        current: the training labels ``(Z, Y, X)``.
        source: the labels to copy from (ground truth or a human's file), same shape.
    """
    if current.shape != source.shape:
        raise DatasetError(f"label shape {source.shape} != training label shape {current.shape}")
    out = current.copy()
    mask = patch_mask(current.shape, patches)
    out[mask] = source[mask].astype(out.dtype)
    return out


@dataclass(frozen=True)
class HumanLabels:
    """A human's label file for one case, checked.

    Attributes:
        case: case name.
        path: the file.
        labels: its labels ``(Z, Y, X)``.
    """

    case: str
    path: Path
    labels: np.ndarray


def _describe(mask: np.ndarray) -> str:
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0), where.max(axis=0) + 1
    return (
        f"{len(where)} voxel(s) in the box z {lo[0]}:{hi[0]}, y {lo[1]}:{hi[1]}, x {lo[2]}:{hi[2]}"
    )


def check_human_labels(
    case: str,
    path: Path,
    human: np.ndarray,
    current: np.ndarray,
    patches: Sequence[Patch],
    n_classes: int,
    ignore_label: int,
) -> HumanLabels:
    """Check a human's label file for the queried ``patches`` of one case.

    The file is a full label map of the case. Inside the queried patches every voxel must be
    a class ``0 .. n_classes - 1``. Outside them it must be unchanged: each voxel equal to the
    current training label or the ``ignore`` value (so both the file clasp-rs handed out and a
    map that is ``ignore`` outside the patches are accepted). Anything else writes outside
    the queried patches and is refused.

    Raises:
        DatasetError: wrong shape, unlabelled or invalid voxels inside a patch, or voxels
            changed outside the patches (the message says how many and where).
    """
    if human.shape != current.shape:
        raise DatasetError(
            f"{path}: shape {human.shape} differs from case {case!r}'s {current.shape} (Z, Y, X)"
        )
    inside = patch_mask(current.shape, patches, case)
    bad_inside = inside & ((human < 0) | (human >= n_classes))
    if bad_inside.any():
        values = sorted({int(v) for v in np.unique(human[bad_inside])})
        raise DatasetError(
            f"{path}: {_describe(bad_inside)} inside the queried patches hold {values}; every "
            f"voxel of a queried patch needs a class 0..{n_classes - 1} (ignore={ignore_label} "
            "means unlabelled)"
        )
    outside = ~inside & (human != current) & (human != ignore_label)
    if outside.any():
        raise DatasetError(
            f"{path}: label writes outside its patches: {_describe(outside)} differ from the "
            f"current training label; only the queried patches of case {case!r} may be "
            f"annotated (outside them keep the file as handed out, or use ignore={ignore_label})"
        )
    return HumanLabels(case, path, human)


def foreground_counts(
    labels: np.ndarray, mask: np.ndarray, foreground: Sequence[int]
) -> dict[str, int]:
    """Voxels of each foreground class inside ``mask``: ``{"1": n1, ...}``."""
    values = labels[mask]
    return {str(c): int(np.count_nonzero(values == c)) for c in foreground}


def union_voxels(
    by_case: Mapping[str, Sequence[Patch]], shapes: Mapping[str, Sequence[int]]
) -> int:
    """Voxels covered by the patches (overlaps counted once)."""
    return sum(int(patch_mask(shapes[c], ps, c).sum()) for c, ps in by_case.items())
