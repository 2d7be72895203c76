"""One voxel size for every case: nnU-Net's 3d_fullres target spacing, and resampling onto
it in physical space.

The target spacing follows nnU-Net v2's planner (``ExperimentPlanner.
determine_fullres_target_spacing``): the per-axis median of the cases' spacings; when one
axis is much coarser than the others (more than 3 ×) and also has much fewer voxels (3 ×
fewer than the smallest other axis), that axis takes the 10th percentile of its spacings
instead (never finer than the other axes). The median shape is taken over the whole images
(nnU-Net's fingerprint crops to the non-zero region first; the tests compare the two on
the bundled data).

A resampled grid keeps the direction and the centre of the scan's extent; its size is
``round(size · spacing / target)`` per axis (as nnU-Net's ``compute_new_shape``). Images are
interpolated linearly, label maps by nearest neighbour (SimpleITK ``Resample``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clasp_rs._optional import import_simpleitk
from clasp_rs.geometry import ImageGeometry

__all__ = [
    "ANISOTROPY_THRESHOLD",
    "resample_array",
    "resample_image",
    "resampled_geometry",
    "same_spacing",
    "target_spacing",
]

ANISOTROPY_THRESHOLD = 3.0
"""nnU-Net's ``ANISO_THRESHOLD``."""


def target_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]
) -> tuple[float, float, float]:
    """nnU-Net's 3d_fullres target spacing of a dataset.

    Args:
        spacings: per case, the voxel spacing ``(z, y, x)`` in mm.
        shapes: per case, the shape ``(Z, Y, X)``.

    Returns:
        The target spacing ``(z, y, x)``.
    """
    s = np.asarray(spacings, dtype=np.float64).reshape(-1, 3)
    target = np.percentile(s, 50, axis=0)
    size = np.percentile(np.asarray(shapes, dtype=np.float64).reshape(-1, 3), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    other_spacing = max(target[a] for a in others)
    aniso_spacing = target[worst] > ANISOTROPY_THRESHOLD * other_spacing
    aniso_voxels = size[worst] * ANISOTROPY_THRESHOLD < min(size[a] for a in others)
    if aniso_spacing and aniso_voxels:
        value = float(np.percentile(s[:, worst], 10))
        if value < other_spacing:
            value = max(other_spacing, value) + 1e-5
        target[worst] = value
    return float(target[0]), float(target[1]), float(target[2])


def same_spacing(a: Sequence[float], b: Sequence[float], rtol: float = 1e-4) -> bool:
    """Whether two spacings are equal up to header rounding."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(np.abs(x - y) <= rtol * np.abs(y)))


def resampled_geometry(geometry: ImageGeometry, spacing_zyx: Sequence[float]) -> ImageGeometry:
    """The grid of ``geometry`` resampled to ``spacing_zyx``: same direction, same centre of
    the extent, ``round(size · spacing / target)`` voxels per axis (at least 1)."""
    new_spacing = np.asarray(spacing_zyx, dtype=np.float64)[::-1]
    old_spacing = np.asarray(geometry.spacing)
    old_size = np.asarray(geometry.size)
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    # Centre of the voxel centres stays put: origin moves by half the difference of spans.
    shift = ((old_size - 1) * old_spacing - (new_size - 1) * new_spacing) / 2
    origin = np.asarray(geometry.origin) + geometry.direction_matrix @ shift
    return ImageGeometry(
        (int(new_size[0]), int(new_size[1]), int(new_size[2])),
        (float(new_spacing[0]), float(new_spacing[1]), float(new_spacing[2])),
        (float(origin[0]), float(origin[1]), float(origin[2])),
        geometry.direction,
    )


def resample_image(image: Any, target: ImageGeometry, *, labels: bool) -> Any:
    """A SimpleITK image resampled onto ``target`` (linear, or nearest for ``labels``),
    keeping its pixel type (integer images are rounded after linear interpolation)."""
    sitk = import_simpleitk()
    if labels:
        return sitk.Resample(
            image,
            list(target.size),
            sitk.Transform(),
            sitk.sitkNearestNeighbor,
            list(target.origin),
            list(target.spacing),
            list(target.direction),
            0,
            image.GetPixelID(),
        )
    out = sitk.Resample(
        image,
        list(target.size),
        sitk.Transform(),
        sitk.sitkLinear,
        list(target.origin),
        list(target.spacing),
        list(target.direction),
        0.0,
        sitk.sitkFloat64,
    )
    array = sitk.GetArrayFromImage(out)
    original = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(original.dtype, np.integer):
        info = np.iinfo(original.dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    result = sitk.GetImageFromArray(array.astype(original.dtype))
    result.CopyInformation(out)
    return result


def resample_array(
    array: np.ndarray, source: ImageGeometry, target: ImageGeometry, *, labels: bool
) -> np.ndarray:
    """``array`` (Z, Y, X) on ``source``'s grid, resampled onto ``target``'s (nearest for
    ``labels``, else linear); same dtype."""
    sitk = import_simpleitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    source.apply_to(image)
    out: np.ndarray = sitk.GetArrayFromImage(resample_image(image, target, labels=labels))
    return out
