"""Find and check nnU-Net probability exports before any long work starts.

An export folder holds ``<case>.npz`` files (``nnUNetv2_predict --save_probabilities``;
array ``probabilities`` of shape ``(C, Z, Y, X)``), either directly (one averaged folder) or
in one sub-folder per fold: ``fold_0/<case>.npz``, ``fold_1/<case>.npz``, ... Other files
nnU-Net writes next to them (``.pkl``, segmentations) are ignored.

:func:`discover_probabilities` reads only the archives' array headers (a few hundred bytes
each, nothing decompressed beyond them) and checks that every fold has the same cases with
the same shapes, that the arrays are 4-D floating point, and that the channel count matches
the dataset's labels. Whether the values form a distribution is checked as each case is
read (:class:`clasp_rs.uncertainty.FoldAccumulator`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs.exceptions import DatasetError, InvalidProbabilitiesError, NpyFormatError

__all__ = [
    "DatasetInfo",
    "ProbabilityExport",
    "discover_probabilities",
    "npz_array_header",
    "read_dataset_json",
]

_FOLD_DIR = re.compile(r"^fold_(\d+)$")
_ARRAY_MEMBER = "probabilities.npy"


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
    if not file.is_file():
        raise FileNotFoundError(errno.ENOENT, "dataset.json not found", str(file))
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{file}: not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{file}: expected a JSON object")
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


def npz_array_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of the ``probabilities`` array of an ``.npz``, from its header only.

    Raises:
        InvalidProbabilitiesError: no ``probabilities`` array in the archive.
        NpyFormatError: not a zip archive, or an unreadable array header.
    """
    file = Path(path)
    try:
        with zipfile.ZipFile(file) as archive:
            if _ARRAY_MEMBER not in archive.namelist():
                found = (
                    ", ".join(repr(n.removesuffix(".npy")) for n in archive.namelist()) or "nothing"
                )
                raise InvalidProbabilitiesError(
                    f"{file}: no array 'probabilities' (found {found}); expected an nnU-Net "
                    "export (--save_probabilities) of shape (C, Z, Y, X)"
                )
            with archive.open(_ARRAY_MEMBER) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (zipfile.BadZipFile, EOFError) as err:
        raise NpyFormatError(f"{file}: not a readable .npz archive ({err})") from None
    except ValueError as err:
        raise NpyFormatError(f"{file}: unreadable array header ({err})") from None
    return tuple(int(s) for s in shape), np.dtype(dtype)


@dataclass(frozen=True)
class ProbabilityExport:
    """A checked probability export.

    Attributes:
        root: the folder given.
        fold_dirs: one folder per fold (``(root,)`` for a single averaged folder).
        cases: case names, sorted.
        shapes: case -> ``(C, Z, Y, X)``.
    """

    root: Path
    fold_dirs: tuple[Path, ...]
    cases: tuple[str, ...]
    shapes: dict[str, tuple[int, int, int, int]]

    @property
    def n_folds(self) -> int:
        return len(self.fold_dirs)

    @property
    def has_folds(self) -> bool:
        """Whether the folds are separate (``fold_K/`` sub-folders)."""
        return self.fold_dirs != (self.root,)

    def sources(self, case: str) -> list[Path]:
        """The ``.npz`` of ``case`` in every fold."""
        return [folder / f"{case}.npz" for folder in self.fold_dirs]


def _cases_in(folder: Path) -> dict[str, Path]:
    return {
        entry.name[: -len(".npz")]: Path(entry.path)
        for entry in os.scandir(folder)
        if entry.is_file() and entry.name.endswith(".npz") and len(entry.name) > 4
    }


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def discover_probabilities(
    root: str | os.PathLike[str], *, n_classes: int | None = None
) -> ProbabilityExport:
    """Find the folds and cases of an export folder and check them (headers only).

    Args:
        root: folder of ``<case>.npz`` files, or of ``fold_K/`` sub-folders holding them.
        n_classes: expected channel count ``C`` (from dataset.json), or None.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        InvalidProbabilitiesError: no exports; both ``.npz`` files and fold folders in
            ``root``; folds with different cases (the message names the missing and extra
            ones) or shapes; arrays that are not 4-D floating point; a channel count that
            differs from ``n_classes``.
        NpyFormatError: an archive that cannot be read.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "probability folder not found", str(folder))
    fold_dirs = sorted(
        (
            (int(m.group(1)), Path(e.path))
            for e in os.scandir(folder)
            if e.is_dir() and (m := _FOLD_DIR.match(e.name))
        ),
    )
    direct = _cases_in(folder)
    if fold_dirs and direct:
        raise InvalidProbabilitiesError(
            f"{folder} holds both <case>.npz files and fold_K/ sub-folders; expected one or "
            "the other"
        )
    if not fold_dirs and not direct:
        raise InvalidProbabilitiesError(
            f"{folder} has no <case>.npz probability exports and no fold_K/ sub-folders "
            "(run nnUNetv2_predict with --save_probabilities)"
        )
    dirs = tuple(path for _, path in fold_dirs) or (folder,)
    per_fold = [_cases_in(d) for d in dirs]
    reference = set(per_fold[0])
    if not reference:
        raise InvalidProbabilitiesError(f"{dirs[0]} holds no <case>.npz files")
    for d, cases in zip(dirs[1:], per_fold[1:], strict=True):
        missing = sorted(reference - set(cases))
        extra = sorted(set(cases) - reference)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks {_names(missing)}")
            if extra:
                parts.append(f"has extra {_names(extra)}")
            raise InvalidProbabilitiesError(
                f"fold folders disagree on the cases: {d.name} {' and '.join(parts)} "
                f"compared with {dirs[0].name}; every fold must hold the same cases"
            )
    shapes: dict[str, tuple[int, int, int, int]] = {}
    for case in sorted(reference):
        first: tuple[int, ...] | None = None
        for d, cases in zip(dirs, per_fold, strict=True):
            shape, dtype = npz_array_header(cases[case])
            if dtype.kind != "f":
                raise InvalidProbabilitiesError(
                    f"{cases[case]}: dtype {dtype} is not floating point; expected float16, "
                    "float32 or float64 probabilities"
                )
            if len(shape) != 4:
                raise InvalidProbabilitiesError(
                    f"{cases[case]}: shape {shape} is not 4-D; expected (C, Z, Y, X)"
                )
            if first is None:
                first = shape
            elif shape != first:
                raise InvalidProbabilitiesError(
                    f"case {case!r}: shape {shape} in {d.name} differs from {first} in "
                    f"{dirs[0].name}; every fold must have the same (C, Z, Y, X) shape"
                )
        assert first is not None
        if n_classes is not None and first[0] != n_classes:
            raise InvalidProbabilitiesError(
                f"case {case!r}: {first[0]} probability channels, but dataset.json lists "
                f"{n_classes} labels (background included, ignore excluded)"
            )
        shapes[case] = (first[0], first[1], first[2], first[3])
    return ProbabilityExport(folder, dirs, tuple(sorted(reference)), shapes)
