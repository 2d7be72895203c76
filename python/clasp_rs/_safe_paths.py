"""Folders and files inside the experiment that never lead outside it through a symlink.

Someone (or something) may plant a symbolic link in ``to_annotate/`` or ``annotations/``:
writing "into" it would overwrite the link's target, anywhere on the machine. Folders are
therefore created and entered one component at a time with ``lstat`` checks, files are
published by :mod:`clasp_rs._atomic` (a rename or hard link replaces a link itself, never
its target), and files read from inside the experiment are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

from clasp_rs._atomic import atomic_path

__all__ = ["copy_into", "is_inside", "open_no_follow", "real_dirs"]


def _symlink_error(path: Path) -> OSError:
    return OSError(
        errno.ELOOP,
        "refusing to follow a symbolic link inside the experiment (remove it)",
        str(path),
    )


def real_dirs(root: str | os.PathLike[str], *parts: str) -> Path:
    """``root/parts...``, each component created if missing, none a symbolic link.

    ``root`` itself must exist and is taken as it is (it may sit below links the user chose);
    every component below it must be a real folder.

    Raises:
        OSError: a component is a symbolic link (``ELOOP``) or not a folder (``ENOTDIR``).
    """
    path = Path(root)
    for part in parts:
        for name in Path(part).parts:
            path = path / name
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                raise _symlink_error(path)
            if not stat.S_ISDIR(mode):
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    return path


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (made absolute, links of its folders resolved) lies under ``root``."""
    folder = Path(os.path.realpath(Path(path).parent)) / Path(path).name
    return Path(os.path.realpath(root)) in (folder, *folder.parents)


def open_no_follow(path: str | os.PathLike[str]) -> int:
    """A read-only file descriptor of ``path``, refusing a symbolic link in its last
    component (``O_NOFOLLOW``)."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _symlink_error(Path(path)) from None
        raise


def copy_into(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    overwrite: bool,
    scratch: str | os.PathLike[str] | None = None,
    follow_source: bool = True,
) -> Path:
    """Copy ``source`` to ``dest`` atomically; a link at ``dest`` is replaced, not followed.

    Args:
        source: the file to copy.
        dest: the destination; its folder must exist (see :func:`real_dirs`).
        overwrite: replace an existing ``dest`` (True) or raise FileExistsError.
        scratch: a folder on ``dest``'s filesystem for the temporary file.
        follow_source: False: refuse a ``source`` that is a symbolic link.
    """
    dest = Path(dest)
    if follow_source:
        fd = os.open(source, os.O_RDONLY)
    else:
        fd = open_no_follow(source)
    with os.fdopen(fd, "rb") as src, atomic_path(dest, overwrite=overwrite, scratch=scratch) as tmp:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
    return dest
