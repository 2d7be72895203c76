"""Writing nnU-Net raw datasets: copies with a new id, and partially annotated label maps
(written with :func:`clasp_rs.loop.volumes.write_label_like`)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from clasp_rs._atomic import write_text_atomic
from clasp_rs.exceptions import DatasetError

__all__ = ["copy_raw_dataset", "mask_outside_boxes", "set_ignore_label"]

Box = tuple[Sequence[int], Sequence[int]]
"""A box as ``(coords, size)``: start voxel (z, y, x) and extent (dz, dy, dx)."""


def copy_raw_dataset(source: Path | str, raw_root: Path | str, dataset_id: int, name: str) -> Path:
    """Copy a raw dataset folder to ``raw_root/DatasetXXX_name`` (written atomically).

    Raises:
        DatasetError: the source has no dataset.json, or the target exists.
    """
    source = Path(source)
    if not (source / "dataset.json").is_file():
        raise DatasetError(f"{source} has no dataset.json; expected an nnU-Net raw dataset")
    target = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    if target.exists():
        raise DatasetError(f"{target} exists already")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=raw_root))
    staging.chmod(0o755)
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def mask_outside_boxes(labels: np.ndarray, boxes: Iterable[Box], ignore_value: int) -> np.ndarray:
    """Keep ``labels`` inside the boxes and put ``ignore_value`` everywhere else.

    Args:
        labels: integer label map (Z, Y, X).
        boxes: ``(coords, size)`` boxes, clipped to the volume.
        ignore_value: the dataset's ``ignore`` label.

    Returns:
        A new array of the same shape and dtype.

    Raises:
        DatasetError: ``ignore_value`` does not fit the dtype or already occurs in ``labels``.
    """
    if np.iinfo(labels.dtype).max < ignore_value:
        raise DatasetError(f"ignore value {ignore_value} does not fit label dtype {labels.dtype}")
    if np.any(labels == ignore_value):
        raise DatasetError(f"labels already contain the ignore value {ignore_value}")
    out = np.full_like(labels, ignore_value)
    for coords, size in boxes:
        region = tuple(
            slice(max(int(c), 0), max(int(c) + int(s), 0))
            for c, s in zip(coords, size, strict=True)
        )
        out[region] = labels[region]
    return out


def set_ignore_label(dataset_folder: Path | str) -> int:
    """Add ``"ignore"`` to a raw dataset's labels, one above the highest label.

    Returns:
        The ignore value.

    Raises:
        DatasetError: the labels have an ``ignore`` entry already, or are not integers.
    """
    path = Path(dataset_folder) / "dataset.json"
    dataset_json = json.loads(path.read_text())
    labels = dataset_json["labels"]
    if "ignore" in labels:
        raise DatasetError(f"{path} has an 'ignore' label already ({labels['ignore']})")
    values = list(labels.values())
    if not all(isinstance(v, int) for v in values):
        raise DatasetError(f"{path}: region-based labels (lists) are not supported: {labels}")
    ignore = max(values) + 1
    labels["ignore"] = ignore
    write_text_atomic(path, json.dumps(dataset_json, indent=4) + "\n", overwrite=True)
    return ignore
