"""Patches on arrays: the mask they cover and the partial labels of active learning.

Arrays are ``(..., Z, Y, X)`` numpy arrays or torch tensors (any device); a patch covers
``coords[a] <= v < coords[a] + size[a]`` on the last three axes. Patches of other cases are
left out when a ``case`` is given (matched through :func:`~clasp_rs.case_id`, so
``"case_001"``, ``"case_001.nii.gz"`` and ``"case_001.npy"`` are one case). torch is imported
only for tensor inputs.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from clasp_rs.exceptions import InvalidPatchError
from clasp_rs.patches import Patch, case_id

__all__ = ["partial_labels", "patches_mask", "patches_of_case"]


def patches_of_case(patches: Iterable[Patch], case: str | os.PathLike[str] | None) -> list[Patch]:
    """``patches`` whose ``case_id(file)`` is ``case_id(case)``; all of them when ``case`` is
    None.

    Raises:
        InvalidPatchError: an item is not a :class:`~clasp_rs.Patch`.
    """
    items = list(patches)
    for p in items:
        if not isinstance(p, Patch):
            raise InvalidPatchError(f"expected clasp_rs.Patch objects, got {type(p).__name__}")
    if case is None:
        return items
    wanted = case_id(case)
    return [p for p in items if p.case == wanted]


def _spatial_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
        raise InvalidPatchError(f"shape must be 3 integers (Z, Y, X), got {shape!r}")
    items = tuple(shape)
    if len(items) != 3 or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) >= 0 for s in items
    ):
        raise InvalidPatchError(f"shape must be 3 non-negative integers (Z, Y, X), got {shape!r}")
    return int(items[0]), int(items[1]), int(items[2])


def patches_mask(
    shape: Sequence[int],
    patches: Iterable[Patch],
    case: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """Where the patches are: bool ``(Z, Y, X)``, True inside any patch of ``case``.

    Args:
        shape: ``(Z, Y, X)`` of the volume.
        patches: :class:`~clasp_rs.Patch` objects, of one case or of many.
        case: keep only the patches of this case (a name or file name, matched through
            ``case_id``); None keeps them all (the caller vouches they are of this volume).

    Returns:
        bool numpy array ``(Z, Y, X)``, C-order.

    Raises:
        InvalidPatchError: a kept patch reaches outside ``shape`` (the axes are named), or an
            item is not a Patch.
    """
    spatial = _spatial_shape(shape)
    mask = np.zeros(spatial, dtype=bool)
    for p in patches_of_case(patches, case):
        outside = [a for a in range(3) if p.end[a] > spatial[a]]
        if outside:
            raise InvalidPatchError(
                f"patch {p.coords}+{p.size} of {p.file!r} reaches {p.end}, outside the volume "
                f"(Z, Y, X) = {spatial} on axis {' and '.join(map(str, outside))}"
            )
        mask[p.slices] = True
    return mask


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def partial_labels(
    labels: Any,
    patches: Iterable[Patch],
    ignore: int | float,
    *,
    case: str | os.PathLike[str] | None = None,
) -> Any:
    """The labels an annotator gave so far: ``labels`` inside the patches, ``ignore`` outside.

    Args:
        labels: integer (or float) labels ``(..., Z, Y, X)``, numpy array or torch tensor on
            any device; leading axes (a channel axis, a batch of one volume's channels) are
            masked alike.
        patches: the annotated patches.
        ignore: the value of unlabelled voxels (nnU-Net's ``ignore`` label, or the
            ``ignore_index`` of the loss, e.g. ``-100`` for ``torch.nn.CrossEntropyLoss``);
            it must fit the dtype of ``labels``.
        case: keep only the patches of this case (see :func:`patches_mask`).

    Returns:
        A new array or tensor of the same type, dtype, device and shape as ``labels``.

    Raises:
        InvalidPatchError: ``labels`` has fewer than 3 axes, or a patch reaches outside it.
    """
    shape = tuple(int(s) for s in getattr(labels, "shape", ()))
    if len(shape) < 3:
        raise InvalidPatchError(
            f"labels must be an array (..., Z, Y, X) with at least 3 axes, got shape {shape}"
        )
    outside = ~patches_mask(shape[-3:], patches, case)
    if _is_tensor(labels):
        import torch  # already loaded: labels is a tensor

        out = labels.detach().clone()
        out[..., torch.from_numpy(outside).to(out.device)] = ignore
        return out
    out_array = np.array(labels, copy=True)
    out_array[..., outside] = ignore
    return out_array
