"""Atomic file writing: a temporary file next to the destination, published in one step.

A reader never sees half a file: the content goes to a temporary file in the destination's
folder (or a scratch folder on the same filesystem), which is then renamed over the
destination (``os.replace``) or, when existing files must never be overwritten, hard-linked to
it (``os.link`` fails if the name exists, even when two writers race).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic"]

_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV)


def _exists_error(dest: Path, message: str) -> FileExistsError:
    return FileExistsError(errno.EEXIST, message, str(dest))


@contextmanager
def atomic_path(
    dest: str | os.PathLike[str],
    *,
    overwrite: bool,
    scratch: str | os.PathLike[str] | None = None,
    suffix: str = ".tmp",
    exists_message: str = "file already exists (never overwritten)",
) -> Iterator[Path]:
    """Yield a temporary path; when the block ends without an error, publish it as ``dest``.

    The temporary file exists (empty) when yielded, with the permissions a plain ``open()``
    would give (``0o666 & ~umask``); it is removed in every case.

    Args:
        dest: The destination file. Its folder must exist.
        overwrite: True: replace an existing ``dest`` (``os.replace``). False: never
            overwrite; ``dest`` is hard-linked to the temporary file, with a checked rename
            on filesystems without hard links.
        scratch: Folder for the temporary file, on the same filesystem as ``dest``; default
            ``dest``'s folder.
        suffix: Ending of the temporary file's name (some writers pick the format from it).
        exists_message: Message of the FileExistsError raised when ``overwrite`` is False.

    Raises:
        FileExistsError: ``overwrite`` is False and ``dest`` exists (checked before the block
            runs and again when publishing).
    """
    dest = Path(dest)
    if not overwrite and os.path.lexists(dest):
        raise _exists_error(dest, exists_message)
    folder = dest.parent if scratch is None else Path(scratch)
    tmp = _create_temp(folder, f".{dest.name}.", suffix)
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, dest)
        else:
            _publish_new(tmp, dest, exists_message)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    # Not tempfile.mkstemp: it creates the file 0600. Mode 0o666 lets the kernel apply the
    # umask (and default ACLs) as for a plain open(); changing the process umask to read it
    # would race with other threads creating files.
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder / prefix))


def _publish_new(tmp: Path, dest: Path, exists_message: str) -> None:
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise _exists_error(dest, exists_message) from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        # No hard links on this filesystem: fall back to a checked rename (a writer racing
        # between the check and the rename could still be replaced).
        if os.path.lexists(dest):
            raise _exists_error(dest, exists_message) from None
        os.replace(tmp, dest)


def write_text_atomic(
    dest: str | os.PathLike[str],
    text: str,
    *,
    overwrite: bool,
    exists_message: str = "file already exists (never overwritten)",
) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically, flushed to disk before it is published.

    Args:
        dest: The destination file. Its folder must exist.
        text: The content.
        overwrite: Replace an existing file (True) or raise FileExistsError (False).
        exists_message: Message of that FileExistsError.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: ``overwrite`` is False and ``dest`` exists.
        OSError: the disk is full (the error names ``dest``; nothing is left behind).
    """
    dest = Path(dest)
    with atomic_path(dest, overwrite=overwrite, exists_message=exists_message) as tmp:
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            # A full disk fails in write/flush/fsync without a file name: name the file.
            if e.filename is not None:
                raise
            raise OSError(e.errno, e.strerror, str(dest)) from None
    return dest
