"""The voxel grids of a raw dataset at ``clasp-rs init``: checked, brought to one spacing, and
the patch size in millimetres.

Every case's label must lie on its scan's grid, and all channels on one grid. When the
cases' spacings differ, the training dataset gets every case resampled to nnU-Net's
3d_fullres target spacing (:func:`clasp_rs.resample.target_spacing`; scans linear, labels
nearest neighbour), so that one patch size in voxels is one size in mm in every case; the
original files of the resampled cases are kept for the annotators.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._optional import import_simpleitk
from clasp_rs.exceptions import DatasetError, PatchSizeWarning
from clasp_rs.geometry import ImageGeometry, geometry_mismatches, read_geometry
from clasp_rs.loop.source import link_or_copy
from clasp_rs.nnunet.labels import write_image
from clasp_rs.resample import resample_image, resampled_geometry, same_spacing, target_spacing

__all__ = [
    "DatasetGrids",
    "check_grids",
    "patch_size_from_mm",
    "training_label",
    "warn_clipped_axes",
    "write_training_image",
]


@dataclass(frozen=True)
class DatasetGrids:
    """The grids of a dataset's cases.

    Attributes:
        original: case -> the grid of its scan and label as they came.
        target: the common spacing ``(z, y, x)`` the cases are resampled to, or ``None``
            when all cases already share one spacing.
        resampled: the cases whose spacing differs from ``target`` (sorted).
    """

    original: dict[str, ImageGeometry]
    target: tuple[float, float, float] | None
    resampled: list[str]

    def training(self, case: str) -> ImageGeometry:
        """The grid a case is trained on."""
        grid = self.original[case]
        if case in self.resampled and self.target is not None:
            return resampled_geometry(grid, self.target)
        return grid

    def spacing(self, case: str) -> tuple[float, float, float]:
        """The training spacing ``(z, y, x)`` of a case."""
        sx, sy, sz = self.training(case).spacing
        return sz, sy, sx


def check_grids(
    cases: Sequence[str], images: Mapping[str, Sequence[Path]], labels: Mapping[str, Path]
) -> DatasetGrids:
    """Read every case's header geometry, check it, and plan the resampling.

    Raises:
        DatasetError: a label or channel whose grid differs from the case's first channel
            (the message names the case and each mismatch).
    """
    grids: dict[str, ImageGeometry] = {}
    for case in cases:
        files = list(images[case])
        grid = read_geometry(files[0])
        for other in [*files[1:], labels[case]]:
            problems = geometry_mismatches(read_geometry(other), grid)
            if problems:
                raise DatasetError(
                    f"case {case!r}: {Path(other).name} does not lie on the grid of "
                    f"{Path(files[0]).name}: " + "; ".join(problems)
                )
        grids[case] = grid
    spacings = [g.spacing[::-1] for g in grids.values()]
    if all(same_spacing(s, spacings[0]) for s in spacings):
        return DatasetGrids(grids, None, [])
    target = target_spacing(spacings, [g.shape for g in grids.values()])
    resampled = sorted(c for c, g in grids.items() if not same_spacing(g.spacing[::-1], target))
    return DatasetGrids(grids, target, resampled)


def training_label(image: Any, grids: DatasetGrids, case: str) -> tuple[np.ndarray, Any]:
    """A case's label image (SimpleITK) on its training grid: ``(labels (Z, Y, X), image)``;
    nearest-neighbour resampled when the case is resampled."""
    if case not in grids.resampled:
        return import_simpleitk().GetArrayFromImage(image), image
    out = resample_image(image, grids.training(case), labels=True)
    return import_simpleitk().GetArrayFromImage(out), out


def write_training_image(source: Path, dest: Path, grids: DatasetGrids, case: str) -> None:
    """Write a scan on its training grid to ``dest`` (hard link or copy when not
    resampled)."""
    if case not in grids.resampled:
        link_or_copy(source, dest)
        return
    scan = import_simpleitk().ReadImage(str(source))
    write_image(resample_image(scan, grids.training(case), labels=False), dest, overwrite=False)


def patch_size_from_mm(size_mm: Sequence[float], spacing: Sequence[float]) -> tuple[int, int, int]:
    """Voxels ``(z, y, x)`` closest to ``size_mm`` at ``spacing`` (rounded half up, >= 1).

    Raises:
        DatasetError: not three positive sizes.
    """
    values = [float(v) for v in size_mm]
    if len(values) != 3 or not all(v > 0 and math.isfinite(v) for v in values):
        raise DatasetError(f"--patch-size-mm takes 3 positive sizes Z Y X in mm, got {values}")
    out = [max(1, int(math.floor(v / s + 0.5))) for v, s in zip(values, spacing, strict=True)]
    return out[0], out[1], out[2]


def warn_clipped_axes(size: Sequence[int], shapes: Mapping[str, Sequence[int]]) -> None:
    """Warn (:class:`~clasp_rs.exceptions.PatchSizeWarning`) when the patch size exceeds
    some case on an axis: there it is clipped to the case, which often means the axes were
    given in the wrong order."""
    axes = "ZYX"
    over: dict[int, list[str]] = {}
    for case, shape in sorted(shapes.items()):
        for a in range(3):
            if size[a] > shape[a]:
                over.setdefault(a, []).append(case)
    if not over:
        return
    parts = []
    for a, cases in sorted(over.items()):
        smallest = min(cases, key=lambda c: (shapes[c][a], c))
        parts.append(
            f"{axes[a]} ({size[a]} > the {shapes[smallest][a]} voxels of {smallest}; "
            f"{len(cases)} case(s) in all)"
        )
    warnings.warn(
        f"patch size {tuple(size)} (Z, Y, X) is larger than some cases on axis "
        + ", ".join(parts)
        + ": it is clipped to those cases there; were the axes given in Z Y X order?",
        PatchSizeWarning,
        stacklevel=3,
    )
