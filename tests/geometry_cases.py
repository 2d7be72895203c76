"""Hypothesis strategies for image geometries that are not axis-aligned: random rotations
(oblique), mirrored axes, axis permutations and anisotropic spacing; and patches inside."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from clasp_rs import Patch
from clasp_rs.geometry import ImageGeometry


def _rotation(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@st.composite
def directions(draw: st.DrawFn) -> np.ndarray:
    """A 3 × 3 orthonormal direction matrix: a permutation with sign flips, times an
    optional random rotation."""
    perm = draw(st.permutations([0, 1, 2]))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=3, max_size=3))
    base = np.zeros((3, 3))
    for col, row in enumerate(perm):
        base[row, col] = signs[col]
    if draw(st.booleans()):
        q = np.array(
            draw(
                st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
                    lambda v: np.linalg.norm(v) > 0.1
                )
            )
        )
        base = _rotation(q) @ base
    # Denormal cosines make ITK's SVD fail; a scanner never writes them.
    return np.where(np.abs(base) < 1e-9, 0.0, base)


@st.composite
def geometries(draw: st.DrawFn, max_size: int = 12) -> ImageGeometry:
    """An image geometry with 2..max_size voxels per axis, spacing 0.3..5 mm (anisotropic),
    origin within ±300 mm, and a direction from :func:`directions`."""
    size = tuple(draw(st.integers(2, max_size)) for _ in range(3))
    spacing = tuple(draw(st.floats(0.3, 5.0)) for _ in range(3))
    origin = tuple(draw(st.floats(-300, 300)) for _ in range(3))
    direction = draw(directions())
    return ImageGeometry(
        size,  # type: ignore[arg-type]
        spacing,  # type: ignore[arg-type]
        origin,  # type: ignore[arg-type]
        tuple(float(v) for v in direction.reshape(-1)),  # type: ignore[arg-type]
    )


@st.composite
def patches_in(draw: st.DrawFn, shape: tuple[int, int, int], file: str = "c.nii.gz") -> Patch:
    """A patch inside a volume of ``shape`` (Z, Y, X)."""
    size = tuple(draw(st.integers(1, n)) for n in shape)
    coords = tuple(draw(st.integers(0, n - s)) for n, s in zip(shape, size, strict=True))
    stratum = draw(st.sampled_from([None, -1, 1, 2]))
    return Patch(file, coords, size, stratum=stratum)  # type: ignore[arg-type]


def sitk_image(geometry: ImageGeometry, array: np.ndarray | None = None):  # noqa: ANN201
    """A SimpleITK image with ``geometry`` (int16 zeros unless ``array`` is given)."""
    import SimpleITK as sitk

    data = np.zeros(geometry.shape, dtype=np.int16) if array is None else array
    image = sitk.GetImageFromArray(data)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image
