"""A ``torch.utils.data.Dataset`` of queried patches, for training on what was annotated.

Each item is a MONAI-style dict: the image crop ``(C, dz, dy, dx)`` under ``"image"``, the
label crop under ``"label"`` (when labels are given), the patch's box as ``roi_start`` /
``roi_end`` (``(z, y, x)`` start, inclusive, and end, exclusive: the arguments of MONAI's
``SpatialCrop``), and the volume's ``name`` and batch ``index``. MONAI's dictionary
transforms (``RandFlipd``, ``RandRotate90d``, ``ScaleIntensityd``, ...) and its
``DataLoader`` take these dicts as they are; so does torch's ``DataLoader`` when all patches
have one size.

torch is imported with this module (``pip install 'clasp-rs[torch]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from clasp_rs._optional import import_torch
from clasp_rs.annotated import volume_ids
from clasp_rs.exceptions import InvalidPatchError
from clasp_rs.patches import Patch

torch = import_torch("clasp_rs.adapters.torch_dataset (a torch Dataset of patches)")

__all__ = ["PatchDataset"]


def _as_tensor(value: Any) -> Any:
    """A channel-first tensor: a view of ``value``, with a channel axis of 1 added to a 3-D
    one (MONAI's transforms expect ``(C, Z, Y, X)``)."""
    tensor = value.detach() if isinstance(value, torch.Tensor) else torch.as_tensor(value)
    return tensor[None] if tensor.ndim == 3 else tensor


class _Volumes:
    """Images (or labels) by volume: a dict name -> array, or a batch / list indexed by
    the patches' batch index."""

    def __init__(self, source: Any, what: str) -> None:
        self.what = what
        self.by_id: dict[str, str] | None = None
        if isinstance(source, Mapping):
            self.by_id = volume_ids(source)
        elif not (isinstance(source, (np.ndarray, Sequence)) or isinstance(source, torch.Tensor)):
            raise InvalidPatchError(
                f"{what} must be a dict name -> array or a batch / list of arrays indexed like "
                f"the query's batch, got {type(source).__name__}"
            )
        self.source = source

    def of(self, patch: Patch) -> Any:
        if self.by_id is not None:
            name = self.by_id.get(patch.case)
            if name is None:
                raise InvalidPatchError(
                    f"patch {patch.coords}+{patch.size} of {patch.file!r}: no {self.what} "
                    f"for that volume (have {sorted(self.by_id.values())[:8]})"
                )
            return self.source[name]
        index = getattr(patch, "index", None)
        if index is None:
            raise InvalidPatchError(
                f"{self.what} given as a batch need patches that know their batch index "
                "(the QueriedPatch objects of clasp_rs.query_patches); pass a dict name -> "
                f"{self.what} for plain Patch objects"
            )
        if not 0 <= index < len(self.source):
            raise InvalidPatchError(
                f"patch of {patch.file!r} has batch index {index}, but the {self.what} hold "
                f"{len(self.source)} volumes"
            )
        return self.source[index]


class PatchDataset(torch.utils.data.Dataset):  # type: ignore[misc,name-defined]
    """Queried patches as training items.

    Args:
        patches: the patches, e.g. a :class:`~clasp_rs.PatchQuery` (or several results
            joined: ``[*r0, *r1]``), or ``Patch`` objects of a loop file.
        images: the images, ``(C, Z, Y, X)`` or ``(Z, Y, X)`` each (numpy or torch, any
            device): a dict volume name -> image (matched to ``Patch.file`` through
            ``case_id``), or a batch ``(B, C, Z, Y, X)`` / list indexed by the patches'
            ``index`` (the :class:`~clasp_rs.QueriedPatch` objects of ``query_patches``).
        labels: the labels in the same form, ``(Z, Y, X)`` or ``(1, Z, Y, X)`` each; None
            for an image-only dataset.
        transform: applied to each item dict (e.g. a MONAI ``Compose`` of dict transforms).
        crop: True (default) crops image and label to the patch; False hands out the whole
            volumes with ``roi_start`` / ``roi_end``, for cropping in a MONAI transform
            (``SpatialCropd(keys, roi_start=..., roi_end=...)`` with a margin, say).

    Items:
        ``{"image": (C, dz, dy, dx), "label": (1, dz, dy, dx), "roi_start": int64 (3,),
        "roi_end": int64 (3,), "name": str, "index": int}`` as torch tensors (views of the
        inputs, no copy, when they are CPU tensors or arrays; a 3-D image or label gets a
        channel axis of 1); ``"index"`` is -1 for plain ``Patch`` objects.

    Raises:
        InvalidPatchError: a patch names no given volume or reaches outside its image.
    """

    def __init__(
        self,
        patches: Iterable[Patch],
        images: Any,
        labels: Any = None,
        *,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        crop: bool = True,
    ) -> None:
        self.patches = list(patches)
        for p in self.patches:
            if not isinstance(p, Patch):
                raise InvalidPatchError(f"expected clasp_rs.Patch objects, got {type(p).__name__}")
        self._images = _Volumes(images, "images")
        self._labels = None if labels is None else _Volumes(labels, "labels")
        self.transform = transform
        self.crop = bool(crop)
        for p in self.patches:  # fail now, not in a DataLoader worker
            p.crop(self._images.of(p))
            if self._labels is not None:
                p.crop(self._labels.of(p))

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, i: int) -> Any:
        patch = self.patches[i]
        image = self._images.of(patch)
        item: dict[str, Any] = {
            "image": _as_tensor(patch.crop(image) if self.crop else image),
            "roi_start": torch.tensor(patch.coords, dtype=torch.int64),
            "roi_end": torch.tensor(patch.end, dtype=torch.int64),
            "name": patch.file,
            "index": int(getattr(patch, "index", -1)),
        }
        if self._labels is not None:
            label = self._labels.of(patch)
            item["label"] = _as_tensor(patch.crop(label) if self.crop else label)
        return self.transform(item) if self.transform is not None else item
