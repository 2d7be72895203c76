"""Physical geometry of images and patches: voxel index ↔ LPS millimetres.

Arrays are ``(Z, Y, X)`` as SimpleITK gives them; ITK, its file headers and the viewers index
voxels ``(i, j, k) = (x, y, z)``. A voxel's centre at index ``(i, j, k)`` lies at
``origin + D · diag(spacing) · (i, j, k)`` in ITK/DICOM patient coordinates (LPS: x towards
the patient's left, y posterior, z superior; millimetres), with the direction matrix ``D``
(columns: the index axes in LPS), as ``TransformContinuousIndexToPhysicalPoint`` computes it.
``D`` is never assumed to be the identity: scans are oblique, flipped, or stored in any axis
order. RAS (3D Slicer's display convention) is LPS with x and y negated.

A patch ``coords = (z, y, x)``, ``size = (dz, dy, dx)`` covers the voxels
``coords[a] <= v < coords[a] + size[a]``; in physical space it spans their extent, i.e. the
continuous indices ``start - 0.5`` to ``end - 0.5`` on every axis.

Only numpy is needed here; :func:`read_geometry` reads a file's header with SimpleITK.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clasp_rs._optional import import_simpleitk
from clasp_rs.exceptions import DatasetError
from clasp_rs.patches import Patch

__all__ = [
    "GeometryTolerance",
    "ImageGeometry",
    "PhysicalBox",
    "covering_box",
    "geometry_mismatches",
    "is_proper_rotation",
    "lps_to_ras",
    "physical_box",
    "read_geometry",
]

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image's voxels are: what an image header holds, in ITK's (x, y, z) order.

    Attributes:
        size: voxels along ``(i, j, k) = (x, y, z)``; the array shape is ``size[::-1]``.
        spacing: voxel size in mm along ``(i, j, k)``.
        origin: LPS position (mm) of the centre of voxel ``(0, 0, 0)``.
        direction: 3 × 3 row-major direction cosines, as ``sitk.Image.GetDirection()``:
            column ``a`` is the LPS direction of index axis ``a``.
    """

    size: tuple[int, int, int]
    spacing: Triple
    origin: Triple
    direction: tuple[float, float, float, float, float, float, float, float, float]

    @classmethod
    def of(cls, image: Any) -> ImageGeometry:
        """The geometry of a SimpleITK image (or image file reader after
        ``ReadImageInformation``)."""
        size = tuple(int(s) for s in image.GetSize())
        if len(size) != 3:
            raise DatasetError(f"expected a 3-D image, got size {size}")
        return cls(
            size,  # type: ignore[arg-type]
            tuple(float(s) for s in image.GetSpacing()),  # type: ignore[arg-type]
            tuple(float(o) for o in image.GetOrigin()),  # type: ignore[arg-type]
            tuple(float(d) for d in image.GetDirection()),  # type: ignore[arg-type]
        )

    @classmethod
    def from_index_to_lps(cls, matrix: np.ndarray, size: Sequence[int]) -> ImageGeometry:
        """From a 4 × 4 (or 3 × 4) affine mapping index ``(i, j, k, 1)`` to LPS mm."""
        m = np.asarray(matrix, dtype=np.float64)
        columns = m[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        if np.any(spacing <= 0):
            raise DatasetError(f"index-to-LPS matrix has a zero column: {m[:3, :3].tolist()}")
        direction = columns / spacing
        return cls(
            (int(size[0]), int(size[1]), int(size[2])),
            (float(spacing[0]), float(spacing[1]), float(spacing[2])),
            (float(m[0, 3]), float(m[1, 3]), float(m[2, 3])),
            tuple(float(v) for v in direction.reshape(-1)),  # type: ignore[arg-type]
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """The array shape ``(Z, Y, X)``."""
        return self.size[2], self.size[1], self.size[0]

    @property
    def direction_matrix(self) -> np.ndarray:
        """float64 (3, 3): column ``a`` is the LPS unit vector of index axis ``a``."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def index_to_lps(self) -> np.ndarray:
        """float64 (4, 4): ``[D · diag(spacing) | origin]``, maps ``(i, j, k, 1)`` to LPS."""
        out = np.eye(4)
        out[:3, :3] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        out[:3, 3] = self.origin
        return out

    def to_lps(self, index: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS mm of continuous indices ``(..., 3)`` in ``(i, j, k)`` order."""
        idx = np.asarray(index, dtype=np.float64)
        m = self.index_to_lps
        return idx @ m[:3, :3].T + m[:3, 3]

    def to_index(self, lps: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous ``(i, j, k)`` indices of LPS points ``(..., 3)``."""
        points = np.asarray(lps, dtype=np.float64)
        m = self.index_to_lps
        return np.linalg.solve(m[:3, :3], (points - m[:3, 3]).reshape(-1, 3).T).T.reshape(
            points.shape
        )

    def cropped(self, coords: Sequence[int], size: Sequence[int]) -> ImageGeometry:
        """The geometry of the sub-array ``[z:z+dz, y:y+dy, x:x+dx]`` (``coords``/``size``
        in (Z, Y, X) order): same spacing and direction, origin at the first voxel."""
        start_ijk = [coords[2], coords[1], coords[0]]
        origin = self.to_lps(np.asarray(start_ijk, dtype=np.float64))
        return ImageGeometry(
            (int(size[2]), int(size[1]), int(size[0])),
            self.spacing,
            (float(origin[0]), float(origin[1]), float(origin[2])),
            self.direction,
        )

    def apply_to(self, image: Any) -> Any:
        """Set this geometry on a SimpleITK image of the same size; returns the image."""
        if tuple(image.GetSize()) != self.size:
            raise DatasetError(f"image size {image.GetSize()} != geometry size {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def describe(self) -> str:
        """One line: size, spacing, origin, direction."""
        return (
            f"size {list(self.size)}, spacing {_fmt(self.spacing)}, origin {_fmt(self.origin)}, "
            f"direction {_fmt(self.direction)}"
        )


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def read_geometry(path: str | os.PathLike[str]) -> ImageGeometry:
    """The geometry in an image file's header (the voxels are not read).

    Raises:
        FileNotFoundError: no such file.
        DatasetError: not a 3-D image.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "image file not found", os.fspath(path))
    reader = import_simpleitk().ImageFileReader()
    reader.SetFileName(os.fspath(path))
    reader.ReadImageInformation()
    try:
        return ImageGeometry.of(reader)
    except DatasetError as err:
        raise DatasetError(f"{os.fspath(path)}: {err}") from None


@dataclass(frozen=True)
class GeometryTolerance:
    """How close two geometries must be to count as the same grid.

    Attributes:
        spacing: relative tolerance of each spacing.
        origin: tolerance of the origin, as a fraction of the smallest spacing.
        direction: absolute tolerance of each direction cosine.
    """

    spacing: float = 1e-4
    origin: float = 1e-3
    direction: float = 1e-4


def geometry_mismatches(
    found: ImageGeometry, expected: ImageGeometry, tolerance: GeometryTolerance | None = None
) -> list[str]:
    """What differs between two geometries beyond ``tolerance`` (empty when they match).

    Each item names the property and both values, e.g.
    ``"origin [0, 0, 3] != [0, 0, 0] (LPS mm)"``.
    """
    tol = tolerance or GeometryTolerance()
    problems = []
    if found.size != expected.size:
        problems.append(f"size {list(found.size)} != {list(expected.size)} (x, y, z voxels)")
    s_found, s_expected = np.asarray(found.spacing), np.asarray(expected.spacing)
    if np.any(np.abs(s_found - s_expected) > tol.spacing * np.abs(s_expected)):
        problems.append(f"spacing {_fmt(found.spacing)} != {_fmt(expected.spacing)} (mm)")
    o_tol = tol.origin * float(np.min(np.abs(s_expected)))
    if np.any(np.abs(np.asarray(found.origin) - np.asarray(expected.origin)) > o_tol):
        problems.append(f"origin {_fmt(found.origin)} != {_fmt(expected.origin)} (LPS mm)")
    if np.any(np.abs(np.asarray(found.direction) - np.asarray(expected.direction)) > tol.direction):
        problems.append(f"direction {_fmt(found.direction)} != {_fmt(expected.direction)}")
    return problems


def lps_to_ras(points: np.ndarray | Sequence[float]) -> np.ndarray:
    """RAS coordinates of LPS points ``(..., 3)``: x and y negated."""
    out = np.array(points, dtype=np.float64)
    out[..., 0] *= -1.0
    out[..., 1] *= -1.0
    return out


@dataclass(frozen=True)
class PhysicalBox:
    """A patch in physical space (LPS mm). Index triples are ``(i, j, k) = (x, y, z)``.

    Attributes:
        start_index: continuous index of the first corner, ``start - 0.5``.
        end_index: continuous index of the opposite corner, ``end - 0.5``.
        start: LPS of ``start_index``.
        end: LPS of ``end_index``.
        centre: LPS of the box centre.
        corners: float64 (8, 3): LPS of all corners; corner ``c`` takes the end on index axis
            ``a`` when bit ``a`` of ``c`` is set.
        extent: edge lengths in mm along the index axes ``(i, j, k)``.
    """

    start_index: Triple
    end_index: Triple
    start: Triple
    end: Triple
    centre: Triple
    corners: np.ndarray
    extent: Triple


def _ijk(values: Sequence[int]) -> np.ndarray:
    return np.asarray([values[2], values[1], values[0]], dtype=np.float64)


def physical_box(patch: Patch, geometry: ImageGeometry) -> PhysicalBox:
    """The physical extent of ``patch`` (voxel box, (Z, Y, X)) in an image of ``geometry``."""
    lo = _ijk(patch.coords) - 0.5
    hi = _ijk(patch.end) - 0.5
    bits = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)], dtype=bool)
    corners_index = np.where(bits, hi[None, :], lo[None, :])
    corners = geometry.to_lps(corners_index)
    start, end, centre = geometry.to_lps(np.stack([lo, hi, (lo + hi) / 2]))
    extent = (hi - lo) * np.asarray(geometry.spacing)

    def triple(v: np.ndarray) -> Triple:
        return float(v[0]), float(v[1]), float(v[2])

    return PhysicalBox(
        triple(lo), triple(hi), triple(start), triple(end), triple(centre), corners, triple(extent)
    )


# Continuous-index slack when deciding which voxels a physical box touches: corners computed
# through two affine maps land within ~1e-9 voxel of a voxel face; a box that only grazes a
# voxel's face does not cover it.
_FACE_SLACK = 1e-6


def covering_box(
    patch: Patch, source: ImageGeometry, target: ImageGeometry, *, name: str = ""
) -> Patch:
    """The voxels of ``target``'s grid that the physical box of ``patch`` (on ``source``'s
    grid) reaches into: the smallest voxel box of ``target`` whose extent holds it.

    When both grids are the same this is ``patch`` itself. Used to map a patch queried on
    resampled images back onto the original scan: every voxel of the resampled patch has
    its nearest original voxel inside the covering box.

    Args:
        patch: a box on ``source``'s grid, (Z, Y, X).
        source: the grid the patch was chosen on.
        target: the grid to express it on.
        name: the case, for error messages.

    Returns:
        A patch with the same ``file``, ``score`` and ``stratum``, clipped to ``target``.

    Raises:
        DatasetError: the box lies outside ``target`` entirely.
    """
    box = physical_box(patch, source)
    index = target.to_index(box.corners)
    lo = np.floor(index.min(axis=0) + 0.5 + _FACE_SLACK)
    hi = np.ceil(index.max(axis=0) + 0.5 - _FACE_SLACK)
    size_ijk = np.asarray(target.size)
    lo_c = np.clip(lo, 0, size_ijk).astype(int)
    hi_c = np.clip(hi, 0, size_ijk).astype(int)
    if np.any(hi_c <= lo_c):
        raise DatasetError(
            f"patch {patch.coords}+{patch.size} of case {name or patch.file!r} lies outside the "
            f"image it is mapped onto ({target.describe()})"
        )
    coords = (int(lo_c[2]), int(lo_c[1]), int(lo_c[0]))
    size = (int(hi_c[2] - lo_c[2]), int(hi_c[1] - lo_c[1]), int(hi_c[0] - lo_c[0]))
    return Patch(patch.file, coords, size, score=patch.score, stratum=patch.stratum)


def is_proper_rotation(direction: np.ndarray) -> bool:
    """Whether a 3 × 3 direction matrix keeps handedness (determinant > 0, no mirroring)."""
    return float(np.linalg.det(direction)) > 0
