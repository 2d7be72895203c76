"""Label maps of nnU-Net raw datasets: reading and writing label and image files (SimpleITK),
and the partial labels of active learning — the ground truth inside annotated patches and
the dataset's ``ignore`` value elsewhere.

Arrays are in SimpleITK / nnU-Net order ``(Z, Y, X)``. Label files are written atomically
(:mod:`clasp_rs._atomic`: a temporary file with the same ending in a scratch folder on the same
filesystem, then ``os.replace``), so a reader (or nnU-Net) never sees half a file. SimpleITK
(an nnunetv2 dependency) is imported when a file is first read or written.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._atomic import atomic_path
from clasp_rs._optional import import_simpleitk
from clasp_rs.exceptions import DatasetError
from clasp_rs.geometry import read_geometry
from clasp_rs.masks import partial_labels as _partial_labels
from clasp_rs.masks import patches_mask, patches_of_case
from clasp_rs.patches import Patch

__all__ = [
    "SUPPORTED_ENDINGS",
    "apply_patches",
    "check_patch_inside",
    "foreground_counts",
    "image_shape",
    "label_dtype",
    "partial_labels",
    "patch_mask",
    "read_image",
    "read_label",
    "write_image",
    "write_label_like",
]

SUPPORTED_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha")
"""File endings the loop reads and writes (SimpleITK formats nnU-Net also reads)."""


def read_label(path: str | os.PathLike[str]) -> tuple[np.ndarray, Any]:
    """A label file as an integer array and its SimpleITK image (for the geometry).

    Returns:
        ``(labels, image)``: labels int16/uint8/... ``(Z, Y, X)`` as stored (floating point
        files are converted when every value is an integer); ``image`` the SimpleITK image.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: more than one component per voxel, or non-integer values.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(2, "label file not found", str(file))
    sitk = import_simpleitk()
    image = sitk.ReadImage(str(file))
    if image.GetNumberOfComponentsPerPixel() != 1 or image.GetDimension() != 3:
        raise DatasetError(
            f"{file}: expected a 3-D single-component label map, got "
            f"{image.GetDimension()}-D with {image.GetNumberOfComponentsPerPixel()} components"
        )
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise DatasetError(f"{file}: non-integer values; expected a label map")
        array = rounded.astype(np.int32)
    return array, image


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """The voxels of an image file as float32 ``(Z, Y, X)`` (first channel file only)."""
    sitk = import_simpleitk()
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(Z, Y, X)`` of an image file, from its header only."""
    return read_geometry(path).shape


def label_dtype(max_value: int) -> type[np.integer]:
    """The smallest unsigned integer type that holds ``0 .. max_value``."""
    return np.uint8 if max_value < 256 else np.uint16


def write_image(
    image: Any,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    scratch: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the SimpleITK image ``image`` atomically (compressed where the format allows).

    Args:
        image: any SimpleITK image (label map, scan, crop).
        path: destination; its ending picks the format.
        overwrite: replace an existing file (True) or raise FileExistsError.
        scratch: an existing folder on the same filesystem for the temporary file; default
            the destination's folder.

    Returns:
        ``path``.
    """
    dest = Path(path)
    ending = next((e for e in SUPPORTED_ENDINGS if dest.name.endswith(e)), dest.suffix)
    with atomic_path(dest, overwrite=overwrite, scratch=scratch, suffix=ending) as tmp:
        import_simpleitk().WriteImage(image, str(tmp), True)
    return dest


def write_label_like(
    array: np.ndarray,
    reference: Any,
    path: str | os.PathLike[str],
    scratch: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``array`` (Z, Y, X) with the geometry of the SimpleITK image ``reference``.

    Args:
        array: integer labels, same shape as ``reference``.
        reference: a SimpleITK image (spacing, origin, direction are copied).
        path: destination; its ending picks the format.
        scratch: an existing folder on the same filesystem for the temporary file; default
            the destination's folder.

    Returns:
        ``path``; an existing file there is replaced atomically.
    """
    image = import_simpleitk().GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(reference)
    return write_image(image, path, overwrite=True, scratch=scratch)


def check_patch_inside(patch: Patch, shape: Sequence[int], case: str = "") -> None:
    """Raise DatasetError (naming ``case``) when ``patch`` reaches outside a volume of
    ``shape`` ``(Z, Y, X)``."""
    end = patch.end
    if any(e > s for e, s in zip(end, shape, strict=True)):
        raise DatasetError(
            f"patch {patch.coords}+{patch.size} of case {case!r} reaches {end}, outside the "
            f"volume {tuple(shape)} (Z, Y, X)"
        )


def patch_mask(shape: Sequence[int], patches: Iterable[Patch], case: str = "") -> np.ndarray:
    """bool ``(Z, Y, X)``: True inside any of ``patches`` of ``case`` (matched through
    ``case_id``; every patch when ``case`` is empty).

    Raises:
        DatasetError: a patch of ``case`` reaches outside the volume.
    """
    kept = patches_of_case(patches, case or None)
    for p in kept:
        check_patch_inside(p, shape, case)
    return patches_mask(shape, kept)


def partial_labels(
    ground_truth: np.ndarray, patches: Iterable[Patch], ignore_label: int, dtype: type
) -> np.ndarray:
    """``ground_truth`` inside ``patches``, ``ignore_label`` elsewhere; ``(Z, Y, X)``.

    Raises:
        DatasetError: a patch reaches outside the volume.
    """
    patches = list(patches)
    for p in patches:
        check_patch_inside(p, ground_truth.shape, p.case)
    return _partial_labels(np.asarray(ground_truth).astype(dtype), patches, ignore_label)  # type: ignore[no-any-return]


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


def foreground_counts(
    labels: np.ndarray, mask: np.ndarray, foreground: Sequence[int]
) -> dict[str, int]:
    """Voxels of each foreground class inside ``mask``: ``{"1": n1, ...}``."""
    values = labels[mask]
    return {str(c): int(np.count_nonzero(values == c)) for c in foreground}
