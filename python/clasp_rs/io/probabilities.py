"""nnU-Net probability exports: finding and checking them, reading array headers, and reading
folds in Z slabs.

An export folder holds ``<case>.npz`` files (``nnUNetv2_predict --save_probabilities``;
array ``probabilities`` of shape ``(C, Z, Y, X)``), either directly (one averaged folder) or
in one sub-folder per fold: ``fold_0/<case>.npz``, ``fold_1/<case>.npz``, ... Other files
nnU-Net writes next to them (``.pkl``, segmentations) are ignored.

:func:`discover_probabilities` reads only the archives' array headers (a few hundred bytes
each, nothing decompressed beyond them) and checks that every fold has the same cases with
the same shapes, that the arrays are 4-D floating point, and that the channel count matches
the dataset's labels. Whether the values form a distribution is checked as each case is
read (:class:`clasp_rs.uncertainty.FoldAccumulator`), through the fold readers of
:mod:`clasp_rs.io.folds`, which read headers with this module's :func:`npy_file_header`.
"""

from __future__ import annotations

import errno
import os
import re
import tokenize
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from clasp_rs.exceptions import InvalidProbabilitiesError, InvalidTypeError, NpyFormatError

__all__ = [
    "PROBABILITIES_KEY",
    "ProbabilityExport",
    "discover_probabilities",
    "npy_file_header",
    "npz_array_header",
    "source_shape",
]

#: Key of the probability array inside an nnU-Net ``<case>.npz`` export.
PROBABILITIES_KEY = "probabilities"

_FOLD_DIR = re.compile(r"^fold_(\d+)$")
_ARRAY_MEMBER = f"{PROBABILITIES_KEY}.npy"

# -- array headers ------------------------------------------------------------------------------


def _read_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """The header of the ``.npy`` at ``handle``.

    Raises:
        ValueError: not a readable header, with a one-line message (numpy's own parser also
            raises SyntaxError, tokenize.TokenError, ... and messages of several lines).
    """
    try:
        version = np.lib.format.read_magic(handle)
        with warnings.catch_warnings():
            # Headers written by Python 2 parse with a warning; they are read all the same.
            warnings.simplefilter("ignore", UserWarning)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, SyntaxError, TypeError, tokenize.TokenError, RecursionError) as err:
        text = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(text if len(text) <= 300 else text[:300] + "...") from None
    if any(side < 0 for side in shape):
        raise ValueError(f"negative size in the shape {tuple(shape)}")
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


def npy_file_header(handle: IO[bytes], label: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """``(shape, fortran_order, dtype)`` of the ``.npy`` file open at its start in ``handle``
    (left at the first data byte); ``label`` names it in errors.

    Raises:
        NpyFormatError: not a readable ``.npy`` header.
    """
    try:
        return _read_header(handle)
    except ValueError as err:
        raise NpyFormatError(f"{label}: not a readable .npy file: {err}") from err


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
                shape, _, dtype = _read_header(f)
    except (zipfile.BadZipFile, EOFError) as err:
        raise NpyFormatError(f"{file}: not a readable .npz archive ({err})") from None
    except ValueError as err:
        raise NpyFormatError(f"{file}: unreadable array header ({err})") from None
    return shape, dtype


def source_shape(source: Any) -> tuple[int, ...]:
    """Shape of probabilities without reading them: an array or tensor, a ``.npy`` path, an
    nnU-Net ``.npz`` path (key ``probabilities``), or a list of folds (the first one's).

    Raises:
        FileNotFoundError: a path does not exist.
        InvalidProbabilitiesError, NpyFormatError: an unreadable file or an empty list.
        TypeError: none of the above.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"probability file not found: {path}")
        if path.suffix.lower() == ".npz":
            return npz_array_header(path)[0]
        with open(path, "rb") as f:
            return npy_file_header(f, str(path))[0]
    if hasattr(source, "shape"):
        return tuple(int(s) for s in source.shape)
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        items = list(source)
        if not items:
            raise InvalidProbabilitiesError("an empty list of folds")
        return source_shape(items[0])
    raise InvalidTypeError(
        f"expected probabilities as an array, tensor, path or list of folds, got "
        f"{type(source).__name__}"
    )


# -- export folders -----------------------------------------------------------------------------


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
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            "expected the probability export folder (<case>.npz files, or fold_K/ folders of "
            "them), got a file"
            + (" (pass the folder that holds it)" if folder.suffix.lower() == ".npz" else ""),
            str(folder),
        )
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
