"""Query patches and the ``loop_NNN.json`` files that record them.

A patch is an axis-aligned box in a volume stored in (Z, Y, X) order: it starts at voxel
``coords = (z, y, x)`` (inclusive) and spans ``size = (dz, dy, dx)`` voxels, so it covers
``coords[i] <= v < coords[i] + size[i]`` on every axis.

Loop files follow nnActive's format, ``{"patches": [{"file", "coords", "size"}, ...]}``.
clasp-rs adds ``score`` and ``stratum`` to every patch and a top-level ``meta`` object;
readers that do not know these keys ignore them. A loop file is written once, atomically,
and never overwritten.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs._atomic import write_text_atomic
from clasp_rs._messages import escaped, shown
from clasp_rs.exceptions import InvalidArgumentError, InvalidPatchError, LoopFileError
from clasp_rs.io.json_files import parse_json_file

__all__ = [
    "Box",
    "Patch",
    "case_id",
    "identical_patches",
    "patches_by_case",
    "read_loop_file",
    "read_loop_meta",
    "write_loop_file",
]

Box = tuple[int, int, int, int, int, int]
"""``(z, y, x, dz, dy, dx)``: start voxel and size of a patch."""

# Longest first, so that ".nii.gz" wins over ".gz"-less ".nii" style prefixes.
_IMAGE_SUFFIXES = (
    ".nii.gz",
    ".nrrd.gz",
    ".tif.gz",
    ".npy.gz",
    ".seg.nrrd",
    ".b2nd",
    ".nrrd",
    ".tiff",
    ".nii",
    ".mha",
    ".mhd",
    ".tif",
    ".png",
    ".npy",
    ".npz",
    ".pkl",
    ".h5",
)


def case_id(file: str | os.PathLike[str]) -> str:
    """The case name of an image, label or score file: its base name without the extension.

    ``case_id("imagesTr/case_001.nii.gz") == "case_001"``; a name without a known image
    extension (``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``, ``.mhd``, ``.tif``, ``.tiff``,
    ``.png``, ``.npy``, ``.npz``, ``.b2nd``, ...) is returned unchanged apart from its folder.
    nnU-Net channel suffixes such as ``_0000`` are kept.
    """
    name = os.path.basename(os.fspath(file))
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def patches_by_case(patches: Iterable[Patch]) -> dict[str, list[Patch]]:
    """Patches grouped by case name (``case_id`` of ``Patch.file``), case names sorted."""
    grouped: defaultdict[str, list[Patch]] = defaultdict(list)
    for p in patches:
        grouped[case_id(p.file)].append(p)
    return dict(sorted(grouped.items()))


MAX_VOXEL = 2**62
"""The largest patch coordinate or size: a box's end (coords + size) stays in int64."""


def _int_triple(value: Any, what: str, minimum: int) -> tuple[int, int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidPatchError(f"{what} must be 3 integers (z, y, x), got {shown(value)}")
    items = tuple(value)
    if len(items) != 3:
        raise InvalidPatchError(
            f"{what} must have 3 dimensions (z, y, x), got {len(items)}: {shown(value)}"
        )
    out = []
    for item in items:
        # bool is an int subclass, but True as a voxel index is surely a mistake.
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise InvalidPatchError(f"{what} must be 3 integers (z, y, x), got {shown(value)}")
        if int(item) < minimum:
            bound = "non-negative" if minimum == 0 else f">= {minimum}"
            raise InvalidPatchError(f"{what} must be {bound} on every axis, got {shown(value)}")
        if int(item) > MAX_VOXEL:
            raise InvalidPatchError(
                f"{what} must be at most 2**62 on every axis (a voxel index in int64 range), "
                f"got {shown(value)}"
            )
        out.append(int(item))
    return out[0], out[1], out[2]


def _optional_float(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidPatchError(f"patch {what} must be a number, got {shown(value)}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float64's range
        raise InvalidPatchError(
            f"patch {what} must be a number in float64's range, got {shown(value)}"
        ) from None


def _same_number(a: float | None, b: float | None, rel_tol: float) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)


@dataclass(frozen=True, eq=False)
class Patch:
    """A query patch: a box of a volume in (Z, Y, X) order.

    Two patches are equal (and hash alike) when they are the same box of the same case:
    ``(case_id(file), coords, size)``. Scores and strata are not compared, so the same box
    found by a float16 and a float32 run, or read back from a loop file, is the same patch;
    :meth:`identical` (and :func:`identical_patches` for lists) compares every field.

    Args:
        file: The case or file the patch belongs to (e.g. ``"case_001.nii.gz"``).
        coords: Start voxel ``(z, y, x)``, inclusive; non-negative integers.
        size: Extent ``(dz, dy, dx)`` in voxels; positive integers.
        score: The value the returning function documents: the box mean for
            :func:`~clasp_rs.select_top_patches` (the noised key with ``beta``), the ranking
            value ``ln(box mean)`` (+ noise) for strategies; ``None`` when unknown. Prefer
            :attr:`mean` and :attr:`key`, which mean the same everywhere.
        stratum: The foreground class label whose map selected the patch, ``-1`` for the
            plain uncertainty map, ``None`` when not stratified.
        mean: Keyword only. The exact box mean (float64) of the score map that selected the
            patch, ``None`` when unknown (patches read from a loop file, random draws).
        key: Keyword only. The value the patch was ranked by, higher first: the box mean, or
            ``ln(box mean) + Gumbel(0, 1) / beta`` under power sampling (``-inf`` for a zero
            mean); ``None`` when unknown. The engine ranks by it rounded to float32.

    Raises:
        InvalidPatchError: ``coords`` or ``size`` are not 3 integers, a coordinate is
            negative, or a size is not positive.
    """

    file: str
    coords: tuple[int, int, int]
    size: tuple[int, int, int]
    score: float | None = None
    stratum: int | None = None
    mean: float | None = field(default=None, kw_only=True)
    key: float | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if not isinstance(self.file, str):
            raise InvalidPatchError(f"patch file must be a string, got {shown(self.file)}")
        object.__setattr__(self, "coords", _int_triple(self.coords, "patch coords", 0))
        object.__setattr__(self, "size", _int_triple(self.size, "patch size", 1))
        for name in ("score", "mean", "key"):
            object.__setattr__(self, name, _optional_float(getattr(self, name), name))
        if self.stratum is not None:
            if isinstance(self.stratum, bool) or not isinstance(self.stratum, numbers.Integral):
                raise InvalidPatchError(
                    f"patch stratum must be an integer or None, got {shown(self.stratum)}"
                )
            object.__setattr__(self, "stratum", int(self.stratum))

    def _identity(self) -> tuple[str, tuple[int, int, int], tuple[int, int, int]]:
        return case_id(self.file), self.coords, self.size

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Patch):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    @property
    def case(self) -> str:
        """``case_id(file)``: the case the patch belongs to (``"case_001"``)."""
        return case_id(self.file)

    @property
    def box(self) -> Box:
        """``(z, y, x, dz, dy, dx)``."""
        return (*self.coords, *self.size)

    @property
    def end(self) -> tuple[int, int, int]:
        """Exclusive end voxel ``coords + size``."""
        z, y, x = self.coords
        dz, dy, dx = self.size
        return z + dz, y + dy, x + dx

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """``(slice(z, z + dz), slice(y, y + dy), slice(x, x + dx))``: index a ``(Z, Y, X)``
        array with it, or ``array[(..., *patch.slices)]`` one with leading axes."""
        return tuple(slice(c, e) for c, e in zip(self.coords, self.end, strict=True))  # type: ignore[return-value]

    def crop(self, array: Any) -> Any:
        """The patch's box of ``array``: ``array[..., z:z+dz, y:y+dy, x:x+dx]``.

        Args:
            array: a numpy array or torch tensor ``(..., Z, Y, X)`` (any leading axes, such as
                channels ``(C, Z, Y, X)``), or anything indexable the same way with a
                ``shape``.

        Returns:
            A view (no copy) of shape ``(..., dz, dy, dx)``, of the same type as ``array``.

        Raises:
            InvalidPatchError: ``array`` has fewer than 3 axes, or the patch reaches outside
                its last three axes.
        """
        shape = tuple(int(s) for s in getattr(array, "shape", ()))
        if len(shape) < 3:
            raise InvalidPatchError(
                f"cannot crop patch {self.coords}+{self.size}: expected an array (..., Z, Y, X) "
                f"with at least 3 axes, got shape {shape}"
            )
        spatial = shape[-3:]
        outside = [a for a in range(3) if self.end[a] > spatial[a]]
        if outside:
            raise InvalidPatchError(
                f"patch {self.coords}+{self.size} of {shown(self.file)} reaches {self.end}, "
                f"outside the array's (Z, Y, X) = {spatial} on axis "
                f"{' and '.join(map(str, outside))}"
            )
        index = (Ellipsis, *self.slices)
        return array[index]

    def overlaps(self, other: Patch) -> bool:
        """Whether the two boxes share at least one voxel. Only geometry counts: ``file``
        is not compared."""
        return all(
            a0 < b0 + bs and b0 < a0 + as_
            for a0, as_, b0, bs in zip(
                self.coords, self.size, other.coords, other.size, strict=True
            )
        )

    def identical(self, other: Patch, *, rel_tol: float = 0.0) -> bool:
        """Whether every field matches: ``file`` (as written, not only its case), box,
        ``stratum``, and ``score``, ``mean`` and ``key`` (equal, or within ``rel_tol``
        relative difference; ``None`` only matches ``None``).

        Equality (``==``) compares only the case and the box; use this to compare runs
        score for score.
        """
        return (
            isinstance(other, Patch)
            and (self.file, self.coords, self.size, self.stratum)
            == (other.file, other.coords, other.size, other.stratum)
            and all(
                _same_number(getattr(self, n), getattr(other, n), rel_tol)
                for n in ("score", "mean", "key")
            )
        )


def identical_patches(a: Sequence[Patch], b: Sequence[Patch], *, rel_tol: float = 0.0) -> bool:
    """Whether two patch lists hold the same patches in the same order, every field
    compared by :meth:`Patch.identical` (scores within ``rel_tol``)."""
    return len(a) == len(b) and all(
        p.identical(q, rel_tol=rel_tol) for p, q in zip(a, b, strict=True)
    )


def _loop_error(path: str | os.PathLike[str], problem: str) -> LoopFileError:
    return LoopFileError(f"loop file {escaped(os.fspath(path))}: {problem}")


def _load_loop_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    text_path = os.fspath(path)
    if not os.path.exists(text_path):
        raise FileNotFoundError(errno.ENOENT, "loop file not found", text_path)
    if os.path.isdir(text_path):
        raise IsADirectoryError(errno.EISDIR, "expected a loop file, got a folder", text_path)
    try:
        doc = parse_json_file(text_path)
    except ValueError as e:
        raise _loop_error(path, str(e)) from None
    if not isinstance(doc, dict):
        raise _loop_error(path, f"expected a JSON object, got {type(doc).__name__}")
    return doc


def _patch_from_json(path: str | os.PathLike[str], i: int, entry: Any) -> Patch:
    where = f"patches[{i}]"
    if not isinstance(entry, dict):
        raise _loop_error(path, f"{where} must be an object, got {shown(entry)}")
    for key in ("file", "coords", "size"):
        if key not in entry:
            raise _loop_error(path, f'{where} has no "{key}" (needs file, coords, size)')
    file, coords, size = entry["file"], entry["coords"], entry["size"]
    if not isinstance(file, str):
        raise _loop_error(path, f"{where}.file must be a string, got {shown(file)}")
    for key, value in (("coords", coords), ("size", size)):
        if not isinstance(value, list) or len(value) != 3:
            raise _loop_error(
                path, f"{where}.{key} must be a list of 3 integers, got {shown(value)}"
            )
    score = entry.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        raise _loop_error(path, f"{where}.score must be a number or null, got {shown(score)}")
    stratum = entry.get("stratum")
    if stratum is not None and (isinstance(stratum, bool) or not isinstance(stratum, int)):
        raise _loop_error(path, f"{where}.stratum must be an integer or null, got {shown(stratum)}")
    try:
        return Patch(file, tuple(coords), tuple(size), score=score, stratum=stratum)
    except InvalidPatchError as e:
        raise _loop_error(path, f"{where}: {e}") from None


def read_loop_file(path: str | os.PathLike[str]) -> list[Patch]:
    """Read the patches of a ``loop_NNN.json`` file, in file order.

    ``score`` and ``stratum`` are read when present (a ``null`` score, which clasp-rs
    writes for a score of ``-inf``, reads as ``None``); other keys are ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        LoopFileError: the file is not JSON, has no ``"patches"`` list, or a patch lacks
            ``file``/``coords``/``size`` or has coordinates that are not 3 non-negative
            integers or sizes that are not 3 positive integers.
    """
    doc = _load_loop_json(path)
    if "patches" not in doc:
        raise _loop_error(path, 'no "patches" key (expected {"patches": [...]})')
    entries = doc["patches"]
    if not isinstance(entries, list):
        raise _loop_error(path, f'"patches" must be a list, got {type(entries).__name__}')
    return [_patch_from_json(path, i, entry) for i, entry in enumerate(entries)]


def read_loop_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level ``meta`` object of a loop file (``{}`` when it has none).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        LoopFileError: the file is not a JSON object or ``meta`` is not an object.
    """
    doc = _load_loop_json(path)
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise _loop_error(path, f'"meta" must be an object, got {type(meta).__name__}')
    return meta


def _json_score(score: float | None) -> float | None:
    # JSON has no infinities; a -inf score (box mean 0 under power sampling) becomes null.
    if score is None or not math.isfinite(score):
        return None
    return score


def _patch_to_json(patch: Patch) -> dict[str, Any]:
    if not isinstance(patch, Patch):
        raise InvalidPatchError(f"expected a clasp_rs.Patch, got {type(patch).__name__}")
    return {
        "file": patch.file,
        "coords": list(patch.coords),
        "size": list(patch.size),
        "score": _json_score(patch.score),
        "stratum": patch.stratum,
    }


def write_loop_file(
    path: str | os.PathLike[str],
    patches: Sequence[Patch],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``patches`` (and ``meta``) as a loop file, atomically, never overwriting.

    The JSON is written to a temporary file in the destination folder and then hard-linked
    to ``path``; the link fails if ``path`` exists, so a concurrent writer can never replace
    a finished loop file and a reader never sees a partial one. A score of ``-inf`` is
    written as ``null`` (JSON has no infinities).

    Args:
        path: Destination, e.g. ``loop_001.json``. Its folder must exist.
        patches: The patches, written in this order.
        meta: Optional JSON-serialisable metadata (strategy, seed, loop, beta, version, ...);
            non-finite floats are not allowed in it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``path`` already exists.
        FileNotFoundError: the destination folder does not exist.
        ValueError: ``meta`` is not JSON-serialisable.
    """
    dest = Path(os.fspath(path))
    doc: dict[str, Any] = {"patches": [_patch_to_json(p) for p in patches]}
    if meta is not None:
        doc["meta"] = dict(meta)
    try:
        text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"loop file meta is not JSON-serialisable: {e}") from None

    folder = dest.parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "folder of the loop file does not exist", str(folder))
    return write_text_atomic(
        dest,
        text,
        overwrite=False,
        exists_message="loop file already exists; loop files are never overwritten "
        "(choose another name)",
    )
