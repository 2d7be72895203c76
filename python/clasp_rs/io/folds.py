"""Readers that hand out Z slabs of one fold's probabilities (or logits).

A fold is a ``(C, Z, Y, X)`` array: a numpy array, a torch tensor (any device), a C-order
``.npy`` file (read slab by slab with ``preadv``, never memory-mapped, so the process holds
only the slab) or an nnU-Net ``<case>.npz`` export (key ``probabilities``; a compressed
archive cannot be read in slabs, so it is decompressed one fold at a time). Headers are read
by :mod:`clasp_rs.io.probabilities`.

Used by :mod:`clasp_rs.uncertainty`; torch is imported only for tensor sources.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs.exceptions import InvalidProbabilitiesError, InvalidTypeError, NpyFormatError
from clasp_rs.io.probabilities import PROBABILITIES_KEY, npy_file_header

__all__ = ["FoldReader", "open_fold", "split_folds"]

_FLOAT_NAMES = ("float16", "float32", "float64")
_EXPECTED_DTYPE = "expected float16, float32 or float64 probabilities (or logits)"


def _is_tensor(value: Any) -> bool:
    # Checked by name so that numpy and path sources never import torch.
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


class FoldReader:
    """One fold, readable in Z slabs.

    Attributes:
        label: how error messages name the fold (``fold 2 (/data/fold_2/case.npz)``).
        shape: the fold's shape, ``(C, Z, Y, X)`` when valid.
    """

    label: str
    shape: tuple[int, ...]

    def read_into(self, z0: int, z1: int, dest: np.ndarray) -> None:
        """Copy slab ``[:, z0:z1]`` into ``dest``, float32 ``(C, z1 - z0, Y, X)`` whose
        channels ``dest[c]`` are each C-contiguous, converting the dtype."""
        raise NotImplementedError

    def device_slab(self, z0: int, z1: int, device: Any, buffer: np.ndarray) -> Any:
        """Slab ``[:, z0:z1]`` as a float32 torch tensor on ``device``; it may be a view of
        the source and must not be written to. ``buffer`` is a float32 staging array of the
        slab's shape."""
        import torch

        self.read_into(z0, z1, buffer)
        return torch.from_numpy(buffer).to(device)

    def close(self) -> None:
        """Release the file, if any."""


class _ArrayReader(FoldReader):
    def __init__(self, array: np.ndarray, label: str) -> None:
        if array.dtype.name not in _FLOAT_NAMES:
            raise InvalidProbabilitiesError(f"{label}: dtype {array.dtype}; {_EXPECTED_DTYPE}")
        self.array = array
        self.label = label
        self.shape = tuple(int(s) for s in array.shape)

    def read_into(self, z0: int, z1: int, dest: np.ndarray) -> None:
        np.copyto(dest, self.array[:, z0:z1], casting="unsafe")


class _TensorReader(FoldReader):
    def __init__(self, tensor: Any, label: str) -> None:
        if not tensor.dtype.is_floating_point or tensor.dtype.itemsize < 2:
            raise InvalidProbabilitiesError(f"{label}: dtype {tensor.dtype}; {_EXPECTED_DTYPE}")
        self.tensor = tensor.detach()
        self.label = label
        self.shape = tuple(int(s) for s in tensor.shape)

    def read_into(self, z0: int, z1: int, dest: np.ndarray) -> None:
        import torch

        torch.from_numpy(dest).copy_(self.tensor[:, z0:z1])

    def device_slab(self, z0: int, z1: int, device: Any, buffer: np.ndarray) -> Any:
        import torch

        if self.tensor.device == device:
            return self.tensor[:, z0:z1].to(torch.float32)
        return super().device_slab(z0, z1, device, buffer)


class _NpyFileReader(FoldReader):
    def __init__(self, path: Path, label: str) -> None:
        self.label = label
        self._file = open(path, "rb", buffering=0)  # closed in close()
        try:
            self._read_header(path)
        except BaseException:
            self._file.close()
            raise
        self._fallback: _ArrayReader | None = None
        if self.fortran_order and len(self.shape) == 4:
            # Rare layout: a memory map copes with it; C-order files are the streaming path.
            self._fallback = _ArrayReader(np.load(path, mmap_mode="r"), label)

    def _read_header(self, path: Path) -> None:
        self.shape, self.fortran_order, self.dtype = npy_file_header(self._file, self.label)
        self._offset = self._file.tell()
        if self.dtype.name not in _FLOAT_NAMES:
            raise InvalidProbabilitiesError(f"{self.label}: dtype {self.dtype}; {_EXPECTED_DTYPE}")
        # Exact integers: a header may claim a shape whose size overflows int64.
        expected = self._offset + math.prod(self.shape) * self.dtype.itemsize
        actual = os.fstat(self._file.fileno()).st_size
        if actual < expected:
            raise NpyFormatError(
                f"{self.label}: truncated .npy file: {actual} bytes, expected {expected} for "
                f"shape {self.shape} and dtype {self.dtype}"
            )

    def read_into(self, z0: int, z1: int, dest: np.ndarray) -> None:
        if self._fallback is not None:
            self._fallback.read_into(z0, z1, dest)
            return
        c, z, y, x = self.shape
        direct = self.dtype == np.dtype(np.float32) and self.dtype.isnative
        target = dest if direct else np.empty(dest.shape, dtype=self.dtype)
        plane = y * x * self.dtype.itemsize
        for channel in range(c):
            self._read_exactly(target[channel], self._offset + (channel * z + z0) * plane)
        if not direct:
            np.copyto(dest, target, casting="unsafe")

    def _read_exactly(self, dest: np.ndarray, offset: int) -> None:
        view = memoryview(dest).cast("B")  # type: ignore[arg-type]  # ndarray is a buffer
        done = 0
        while done < len(view):
            got = os.preadv(self._file.fileno(), [view[done:]], offset + done)
            if got <= 0:
                raise NpyFormatError(f"{self.label}: unexpected end of file at byte {offset}")
            done += got

    def close(self) -> None:
        self._file.close()


def _open_npz(path: Path, label: str) -> _ArrayReader:
    if not zipfile.is_zipfile(path):
        # np.load would take a non-zip file for a pickle and refuse it with a confusing message.
        raise NpyFormatError(f"{label}: not a readable .npz archive (not a zip file)")
    member = f"{PROBABILITIES_KEY}.npy"
    try:
        with zipfile.ZipFile(path) as archive:
            if member not in archive.namelist():
                found = ", ".join(repr(n.removesuffix(".npy")) for n in archive.namelist())
                raise InvalidProbabilitiesError(
                    f"{label}: no array {PROBABILITIES_KEY!r} in the archive (found "
                    f"{found or 'no arrays'}); expected an nnU-Net export (--save_probabilities) "
                    f"whose key {PROBABILITIES_KEY!r} holds (C, Z, Y, X) probabilities"
                )
            stored = archive.getinfo(member).file_size
            with archive.open(member) as f:
                array = _read_npz_member(f, stored, label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as err:
        raise NpyFormatError(f"{label}: not a readable .npz archive: {err}") from None
    return _ArrayReader(array, label)


def _read_npz_member(f: Any, stored: int, label: str) -> np.ndarray:
    # The member's header is checked against its stored size before anything is allocated:
    # a header may claim any shape, and np.load would allocate it (or hand back raw bytes
    # when the member is no .npy at all).
    shape, fortran, dtype = npy_file_header(f, f"{label} {PROBABILITIES_KEY!r}")
    if dtype.name not in _FLOAT_NAMES:
        raise InvalidProbabilitiesError(f"{label}: dtype {dtype}; {_EXPECTED_DTYPE}")
    count = math.prod(shape)
    if count * dtype.itemsize != stored - f.tell():
        raise NpyFormatError(
            f"{label}: array {PROBABILITIES_KEY!r} of shape {shape} and dtype {dtype} needs "
            f"{count * dtype.itemsize} bytes, the archive holds {stored - f.tell()}"
        )
    data = f.read()
    if len(data) != count * dtype.itemsize:
        raise NpyFormatError(f"{label}: array {PROBABILITIES_KEY!r} is cut short")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array


def open_fold(source: Any, label: str) -> FoldReader:
    """Open one fold.

    Args:
        source: numpy array, torch tensor, or path of a ``.npy`` / ``.npz`` file.
        label: how error messages name the fold; a path is appended to it.

    Raises:
        FileNotFoundError: the path does not exist.
        InvalidProbabilitiesError: not a floating-point array, an unknown file type, or an
            ``.npz`` without the ``probabilities`` key.
        NpyFormatError: the file is corrupt or truncated.
        TypeError: the source is none of the above.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = f"{label} ({path})"
        if not path.is_file():
            raise FileNotFoundError(f"{label}: probability file not found")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return _NpyFileReader(path, label)
        if suffix == ".npz":
            return _open_npz(path, label)
        raise InvalidProbabilitiesError(
            f"{label}: unsupported file type {suffix!r}; expected a .npz (key "
            f"{PROBABILITIES_KEY!r}) or a .npy file holding (C, Z, Y, X) probabilities"
        )
    if isinstance(source, np.ndarray):
        return _ArrayReader(source, label)
    if _is_tensor(source):
        return _TensorReader(source, label)
    raise InvalidTypeError(
        f"{label}: expected a numpy array, a torch tensor or a path, got {type(source).__name__}"
    )


def split_folds(folds: Any, what: str) -> tuple[list[Any], bool]:
    """Turn a folds argument into a list of single-fold sources.

    Args:
        folds: a path, a ``(C, Z, Y, X)`` or ``(M, C, Z, Y, X)`` array or tensor, or a
            sequence of single-fold sources.
        what: the caller's name, for error messages.

    Returns:
        The sources, and whether ``folds`` was one 4-D array or one path (a fold mean,
        perhaps, rather than an ensemble).
    """
    if isinstance(folds, (str, os.PathLike)):
        return [folds], True
    if isinstance(folds, np.ndarray) or _is_tensor(folds):
        if folds.ndim == 5:
            return [folds[m] for m in range(folds.shape[0])], False
        if folds.ndim == 4:
            return [folds], True
        raise InvalidProbabilitiesError(
            f"{what}: expected probabilities of shape (C, Z, Y, X) or (M, C, Z, Y, X), got "
            f"{folds.ndim}-D shape {tuple(folds.shape)}"
        )
    if isinstance(folds, Sequence):
        if len(folds) == 0:
            raise InvalidProbabilitiesError(f"{what}: no folds given")
        return list(folds), False
    raise InvalidTypeError(
        f"{what}: expected an array, a tensor, a path or a sequence of them, got "
        f"{type(folds).__name__}"
    )
