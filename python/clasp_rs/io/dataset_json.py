"""nnU-Net's ``dataset.json``: the one place clasp-rs reads (and writes) it.

:func:`load_dataset_json` returns the raw document, as nnU-Net's own APIs take it;
:func:`read_dataset_json` checks what clasp-rs relies on (labels ``0 .. C-1`` plus an optional
``ignore``, the file ending) and returns it as a :class:`DatasetInfo`.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clasp_rs._messages import escaped
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import parse_json_file, write_json

__all__ = ["DatasetInfo", "load_dataset_json", "read_dataset_json", "write_dataset_json"]


def load_dataset_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw ``dataset.json`` document (a JSON object).

    Raises:
        FileNotFoundError: no such file.
        DatasetError: not JSON, or not a JSON object.
    """
    file = Path(path)
    if file.is_dir():
        raise IsADirectoryError(
            errno.EISDIR,
            "expected the dataset.json file, got a folder"
            + (" (it holds a dataset.json)" if (file / "dataset.json").is_file() else ""),
            str(file),
        )
    if not file.is_file():
        raise FileNotFoundError(errno.ENOENT, "dataset.json not found", str(file))
    try:
        doc = parse_json_file(file)
    except ValueError as err:
        raise DatasetError(f"{escaped(str(file))}: {err}") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{file}: expected a JSON object")
    return doc


def write_dataset_json(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write a ``dataset.json`` atomically (replacing one that exists)."""
    return write_json(path, doc)


@dataclass(frozen=True)
class DatasetInfo:
    """What clasp-rs needs from an nnU-Net ``dataset.json``.

    Attributes:
        path: the file.
        labels: class name -> label value, background included, ``ignore`` excluded.
        n_classes: number of probability channels ``C`` (labels without ``ignore``).
        ignore_label: value of the ``ignore`` label, or None.
        file_ending: image file ending, e.g. ``".nii.gz"``.
    """

    path: Path
    labels: dict[str, int]
    n_classes: int
    ignore_label: int | None
    file_ending: str

    def file_of(self, case: str) -> str:
        """The image file name of ``case``: ``<case><file_ending>``."""
        return f"{case}{self.file_ending}"


def read_dataset_json(path: str | os.PathLike[str]) -> DatasetInfo:
    """Read and check an nnU-Net v2 ``dataset.json``.

    Labels must be integers ``0 .. C-1`` (background 0), optionally plus ``ignore`` as the
    highest value; region-based labels (lists of values) are not supported.

    Raises:
        FileNotFoundError: no such file.
        DatasetError: not JSON, no ``labels``, labels that are not consecutive integers, or
            a ``file_ending`` that is not a string.
    """
    file = Path(path)
    doc = load_dataset_json(file)
    raw = doc.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f'{file}: no "labels" (expected e.g. {{"background": 0, "liver": 1}})')
    labels: dict[str, int] = {}
    ignore: int | None = None
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise DatasetError(
                f"{file}: label {name!r} has value {value!r}; expected an integer "
                "(region-based labels are not supported)"
            )
        if name == "ignore":
            ignore = value
        else:
            labels[str(name)] = value
    values = sorted(labels.values())
    if values != list(range(len(values))):
        raise DatasetError(
            f"{file}: label values {values} must be 0 .. {len(values) - 1} (background 0, "
            "consecutive, ignore excluded)"
        )
    if len(values) < 2:
        raise DatasetError(f"{file}: needs background and at least one foreground label")
    if ignore is not None and ignore != len(values):
        raise DatasetError(
            f"{file}: the ignore label must be the highest value {len(values)}, got {ignore}"
        )
    ending = doc.get("file_ending", ".nii.gz")
    if not isinstance(ending, str) or not ending:
        raise DatasetError(f'{file}: "file_ending" must be a string such as ".nii.gz"')
    return DatasetInfo(file, labels, len(values), ignore, ending)
