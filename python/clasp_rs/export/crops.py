"""Crops: each patch plus a margin, cut from the image and the current label, for annotators
who prefer small files. A crop keeps the spacing and direction of its scan and gets the
origin of its first voxel, so it lies exactly where it was cut from; ``clasp-rs annotate``
pastes labelled crops back (see :mod:`clasp_rs.loop.label_files`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from clasp_rs.geometry import ImageGeometry
from clasp_rs.patches import Patch

__all__ = ["DEFAULT_MARGIN_MM", "crop_box", "crop_name", "margin_voxels", "patch_in_crop"]

DEFAULT_MARGIN_MM = 10.0
"""Context around each patch in a crop, mm (rounded up to whole voxels per axis)."""


def margin_voxels(margin_mm: float, geometry: ImageGeometry) -> tuple[int, int, int]:
    """``(z, y, x)`` voxels that cover at least ``margin_mm`` on each axis."""
    if not margin_mm >= 0:
        raise ValueError(f"crop margin must be >= 0 mm, got {margin_mm}")
    sx, sy, sz = geometry.spacing
    return tuple(math.ceil(margin_mm / s - 1e-9) for s in (sz, sy, sx))  # type: ignore[return-value]


def crop_box(patch: Patch, shape: Sequence[int], margin: Sequence[int]) -> Patch:
    """``patch`` grown by ``margin`` voxels on every side, clipped to ``shape`` (Z, Y, X)."""
    lo = [max(0, c - m) for c, m in zip(patch.coords, margin, strict=True)]
    hi = [min(s, e + m) for e, s, m in zip(patch.end, shape, margin, strict=True)]
    return Patch(
        patch.file,
        (lo[0], lo[1], lo[2]),
        (hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]),
        score=patch.score,
        stratum=patch.stratum,
    )


def patch_in_crop(patch: Patch, box: Patch) -> Patch:
    """``patch`` in the voxels of the crop ``box`` (both (Z, Y, X) on the scan's grid)."""
    z, y, x = (c - b for c, b in zip(patch.coords, box.coords, strict=True))
    return Patch(patch.file, (z, y, x), patch.size, score=patch.score, stratum=patch.stratum)


def crop_name(case: str, number: int) -> str:
    """``<case>_p<NN>``: the stem of patch ``number``'s crop files."""
    return f"{case}_p{number:02d}"
