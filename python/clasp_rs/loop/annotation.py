"""A human's label files for queried patches: found, checked and accepted.

A training label file holds the full label inside annotated patches and the ``ignore`` value
everywhere else (see :mod:`clasp_rs.nnunet.labels`). Annotating new patches writes values only
inside them, so applying the same annotation twice gives the same file: a step interrupted
half-way is simply run again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clasp_rs.exceptions import DatasetError
from clasp_rs.nnunet.labels import patch_mask
from clasp_rs.patches import Patch

__all__ = ["HumanLabels", "check_human_labels"]


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
