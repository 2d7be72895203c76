"""``--patch-size auto`` and ``--budget auto``: the deployment guidelines of ClaSP PE.

Patch size: for every foreground class and every case containing it, the bounding box of the
class's largest connected component (face connectivity, :func:`scipy.ndimage.label`); per
class the median box over its cases (per axis); the patch size is the median of the class
medians (per axis), rounded half up to whole voxels.

Budget: 50 patches per foreground class and loop, 100 for a class marked hard.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from clasp_rs.exceptions import DatasetError

__all__ = [
    "PATCHES_PER_CLASS",
    "PATCHES_PER_HARD_CLASS",
    "auto_budget",
    "auto_patch_size",
    "largest_component_box",
]

PATCHES_PER_CLASS = 50
PATCHES_PER_HARD_CLASS = 100


def largest_component_box(mask: np.ndarray) -> tuple[int, int, int] | None:
    """Extent ``(dz, dy, dx)`` of the bounding box of the largest face-connected component of
    a boolean ``(Z, Y, X)`` mask (ties: the lowest component number, i.e. the first found in
    C order), or None for an empty mask."""
    from scipy import ndimage

    components, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = np.bincount(components.reshape(-1))[1:]
    largest = int(np.argmax(sizes)) + 1
    where = ndimage.find_objects(components)[largest - 1]
    return (
        where[0].stop - where[0].start,
        where[1].stop - where[1].start,
        where[2].stop - where[2].start,
    )


def _median_half_up(values: Iterable[float]) -> int:
    return int(math.floor(float(np.median(np.asarray(list(values), dtype=np.float64))) + 0.5))


def auto_patch_size(
    boxes: Mapping[int, Iterable[Sequence[float]]],
) -> tuple[int, int, int]:
    """The query patch size from the largest-component boxes.

    Args:
        boxes: foreground class -> the ``(dz, dy, dx)`` of its largest connected component in
            each case that contains it (see :func:`largest_component_box`), in voxels of the
            training grid (``clasp-rs init`` measures them in mm on each case's own grid and
            divides by the training spacing, so cases of any spacing count alike).

    Returns:
        ``(dz, dy, dx)``: per axis, the median over classes of the per-class medians, rounded
        half up (at least 1).

    Raises:
        DatasetError: no class has any box.
    """
    per_class = []
    for _, class_boxes in sorted(boxes.items()):
        items = np.asarray(list(class_boxes), dtype=np.float64).reshape(-1, 3)
        if len(items):
            per_class.append(np.median(items, axis=0))
    if not per_class:
        raise DatasetError("no foreground voxels in any case: cannot derive a patch size")
    medians = np.asarray(per_class)
    size = [max(1, _median_half_up(medians[:, axis])) for axis in range(3)]
    return size[0], size[1], size[2]


def auto_budget(foreground: Iterable[int], hard: Iterable[int] = ()) -> int:
    """Patches per loop: 50 per foreground class, 100 per hard class.

    Raises:
        DatasetError: a hard class is not a foreground class.
    """
    classes = sorted({int(c) for c in foreground})
    hard_set = {int(c) for c in hard}
    unknown = sorted(hard_set - set(classes))
    if unknown:
        raise DatasetError(f"--hard-classes {unknown} are not foreground classes {classes}")
    return sum(PATCHES_PER_HARD_CLASS if c in hard_set else PATCHES_PER_CLASS for c in classes)
