"""One driver per experiment: an exclusive lock on ``EXPERIMENT/.clasp_rs.lock``.

Everything that changes ``state.json`` (``clasp-rs run``, ``clasp-rs annotate``, the loop's
library calls) holds the lock while it works. It is an ``fcntl.flock`` lock, so the kernel
releases it when the holder dies, however it dies (a SIGKILL, a lost node): there is no stale
lock to remove by hand. The file itself stays; it holds the current holder's pid, host and
command, which a refused second driver reports.

The lock is re-entrant within a thread (``annotate`` continues the run, which takes it
again): a flock taken twice through two file descriptors of one process would refuse itself.
Another thread of the same process is refused like another process.

Worker processes (Ray tasks, sharded ``--num-parts`` runs) never take it: they write their
own outputs, and only the driver records them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clasp_rs.exceptions import DatasetError

__all__ = ["LOCK_FILE", "ExperimentLockedError", "experiment_lock", "lock_holder"]

LOCK_FILE = ".clasp_rs.lock"


class ExperimentLockedError(DatasetError):
    """Another process holds the experiment's lock."""


# resolved lock path -> (file descriptor, depth, owning thread): this process's held locks.
_held: dict[str, tuple[int, int, int]] = {}
_guard = threading.Lock()


def lock_holder(root: str | os.PathLike[str]) -> dict[str, object] | None:
    """What the lock file says about its last holder (``pid``, ``host``, ``command``,
    ``since``), or None when there is no readable record. Says nothing about whether the
    lock is held now."""
    path = Path(root) / LOCK_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _describe(holder: dict[str, object] | None) -> str:
    if holder is None:
        return "another process (no holder recorded)"
    pid, host = holder.get("pid"), holder.get("host")
    text = f"pid {pid} on host {host}"
    if holder.get("command"):
        text += f" ({holder['command']}"
        text += f", since {holder['since']})" if holder.get("since") else ")"
    if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        text += (
            "; that process is gone, so a child it started (a data-augmentation or Ray "
            "worker) still holds the lock: end it"
        )
    return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def experiment_lock(root: str | os.PathLike[str], command: str | None = None) -> Iterator[Path]:
    """Hold the experiment's exclusive lock for the duration of the block.

    Args:
        root: the experiment folder (must exist).
        command: what the holder is doing, for the message a refused driver gets (default:
            this process's command line).

    Yields:
        The lock file's path.

    Raises:
        ExperimentLockedError: another process holds the lock; the message names its pid and
            host.
        OSError: the lock file cannot be opened (e.g. a read-only experiment folder, or a
            symlink in its place).
    """
    path = Path(root).resolve() / LOCK_FILE
    key = str(path)
    me = threading.get_ident()
    with _guard:
        reentered = key in _held
        if reentered:
            fd, depth, owner = _held[key]
            if owner != me:
                raise ExperimentLockedError(
                    f"experiment {path.parent} is in use by another thread of this process "
                    f"(pid {os.getpid()}): one driver per experiment"
                )
            _held[key] = (fd, depth + 1, owner)
    if reentered:
        try:
            yield path
        finally:
            _release(key)
        return

    # O_NOFOLLOW: never follow a symlink planted in the experiment; O_CLOEXEC: programs this
    # process executes do not inherit the lock (forked children still do, see _describe).
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise ExperimentLockedError(
            f"experiment {path.parent} is in use by {_describe(lock_holder(path.parent))}: "
            "one driver per experiment (wait for it to finish, or stop it)"
        ) from None
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # Written in place (not renamed over): the lock belongs to this inode.
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    with _guard:
        _held[key] = (fd, 1, me)
    try:
        yield path
    finally:
        _release(key)


def _release(key: str) -> None:
    with _guard:
        fd, depth, owner = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1, owner)
            return
        del _held[key]
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock
