"""Score volumes on disk: one ``(Z, Y, X)`` ``.npy`` per map, written atomically, for the
engine to memory-map.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from clasp_rs._atomic import atomic_path
from clasp_rs.exceptions import InvalidArgumentError, InvalidScoresError

__all__ = ["ScoreDtype", "score_volume_names", "write_score_volume", "write_score_volumes"]

ScoreDtype = Literal["float32", "float16"]
_WRITE_CHUNK_ELEMENTS = 1 << 22


def score_volume_names(case: str, n_classes: int) -> list[str]:
    """File names of a case's score volumes, in the order of :attr:`CaseMaps.scores`.

    ``<case>_c1.npy`` … ``<case>_c{C-1}.npy`` for the foreground classes, then
    ``<case>_all.npy`` for the entropy ``u`` (stratum -1).

    Args:
        case: case name (no extension).
        n_classes: C, channels including background.
    """
    return [f"{case}_c{label}.npy" for label in range(1, n_classes)] + [f"{case}_all.npy"]


def write_score_volume(
    volume: np.ndarray, path: str | os.PathLike[str], dtype: str = "float32"
) -> Path:
    """Write one ``(Z, Y, X)`` score map as a C-order ``.npy`` file, atomically.

    The data go to a temporary file in the same folder, which then replaces ``path``; a
    reader never sees a partial file.

    Args:
        volume: ``(Z, Y, X)`` array (numpy or torch), finite and non-negative.
        path: destination ``.npy`` path.
        dtype: ``"float32"`` or ``"float16"``.

    The file's blocks are reserved (``posix_fallocate``) and the data written, never
    memory-mapped: a full disk is an ``OSError`` and leaves nothing behind.

    Returns:
        The written path.

    Raises:
        OSError: the disk is full or the folder is not writable (the error names ``path``).
        InvalidScoresError: wrong dimensionality, or values that are not finite and
            non-negative in the chosen dtype.
        ValueError: unsupported dtype.
    """
    if dtype not in ("float32", "float16"):
        raise InvalidArgumentError(
            f"unsupported score dtype {dtype!r}: expected 'float32' or 'float16'"
        )
    array = volume.detach().cpu().numpy() if hasattr(volume, "detach") else np.asarray(volume)
    path = Path(path)
    if array.ndim != 3:
        raise InvalidScoresError(
            f"{path.name}: a score volume must be 3-D (Z, Y, X), got shape {array.shape}"
        )
    target = np.dtype(dtype)
    with atomic_path(path, overwrite=True) as tmp:
        try:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(
                    f,
                    {
                        "descr": np.lib.format.dtype_to_descr(target),
                        "fortran_order": False,
                        "shape": array.shape,
                    },
                )
                _reserve(f, f.tell() + array.size * target.itemsize, path)
                _write_checked(f, array, target, path.name, dtype)
        except OSError as e:
            if e.filename is not None:
                raise
            raise OSError(e.errno, f"{e.strerror} (writing a score map)", str(path)) from None
    return path


def _reserve(f: Any, size: int, path: Path) -> None:
    # Reserve the file's blocks before writing: a full disk fails here, at once, as an
    # OSError (never as SIGBUS in a memory map, nor halfway through the data). Filesystems
    # without fallocate get plain writes, which still fail cleanly.
    if not hasattr(os, "posix_fallocate"):  # macOS
        return
    f.flush()
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
            raise OSError(
                e.errno, f"{e.strerror} (reserving {size} bytes for a score map)", str(path)
            ) from None


def _write_checked(f: Any, array: np.ndarray, target: np.dtype, name: str, dtype: str) -> None:
    step = max(1, _WRITE_CHUNK_ELEMENTS // max(1, array.shape[1] * array.shape[2]))
    for z0 in range(0, array.shape[0], step):
        block = np.empty((min(step, array.shape[0] - z0), *array.shape[1:]), dtype=target)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            np.copyto(block, array[z0 : z0 + step], casting="unsafe")
        if not (np.isfinite(block).all() and (block >= 0).all()):
            bad = int(np.count_nonzero(~(np.isfinite(block) & (block >= 0))))
            raise InvalidScoresError(
                f"{name}: {bad} values in Z slices {z0}..{z0 + len(block) - 1} are "
                f"not finite and non-negative in {dtype}; expected scores >= 0"
            )
        f.write(block.data)


def write_score_volumes(
    maps: Any,
    folder: str | os.PathLike[str],
    case: str,
    dtype: ScoreDtype = "float32",
) -> list[Path]:
    """Write a case's score maps as one ``(Z, Y, X)`` ``.npy`` per map, for the engine to
    memory-map.

    Args:
        maps: float ``(C_fg + 1, Z, Y, X)`` as returned by :func:`class_scores` /
            :attr:`CaseMaps.scores`.
        folder: destination folder (created when missing).
        case: case name; files are named by :func:`score_volume_names`.
        dtype: ``"float32"`` or ``"float16"`` on disk (entropy is at most ln C, far below
            float16's maximum).

    Returns:
        Paths in the order of ``maps``: ``<case>_c1.npy`` … ``<case>_all.npy``.
    """
    array = maps.detach().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    if array.ndim != 4 or array.shape[0] < 2:
        raise InvalidScoresError(
            f"score maps of {case!r} must be (C_fg + 1, Z, Y, X) with C_fg >= 1, got shape "
            f"{array.shape}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = score_volume_names(case, array.shape[0])
    return [write_score_volume(array[k], folder / name, dtype) for k, name in enumerate(names)]
