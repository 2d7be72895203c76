"""Box label maps: a volume that is 0 outside the queried patches and ``k`` inside patch
``k``, so that any viewer shows (and picks) each box; and its outline (box faces only), to
lay over the scan without hiding it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clasp_rs.nnunet.labels import check_patch_inside
from clasp_rs.patches import Patch

__all__ = ["box_dtype", "box_label_map", "box_outline_map"]


def box_dtype(n: int) -> type[np.unsignedinteger]:
    """uint8 for up to 255 patches, uint16 beyond."""
    return np.uint8 if n < 256 else np.uint16


def box_label_map(shape: Sequence[int], patches: Sequence[Patch]) -> np.ndarray:
    """``(Z, Y, X)`` map: ``k`` inside patch ``k`` (1-based, in order), 0 elsewhere; where
    patches overlap the later one wins. dtype from :func:`box_dtype`."""
    out = np.zeros(tuple(shape), dtype=box_dtype(len(patches)))
    for k, patch in enumerate(patches, start=1):
        check_patch_inside(patch, shape, patch.case)
        out[patch.slices] = k
    return out


def box_outline_map(shape: Sequence[int], patches: Sequence[Patch]) -> np.ndarray:
    """Like :func:`box_label_map`, but only the voxels on each box's six faces are set
    (a box one voxel thin on an axis is all faces)."""
    out = np.zeros(tuple(shape), dtype=box_dtype(len(patches)))
    for k, patch in enumerate(patches, start=1):
        check_patch_inside(patch, shape, patch.case)
        faces = np.ones(patch.size, dtype=bool)
        faces[1:-1, 1:-1, 1:-1] = False
        region = out[patch.slices]
        region[faces] = k
    return out
