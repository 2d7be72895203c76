"""Per-step log files: nnU-Net's own output goes to ``EXPERIMENT/logs/<step>.log``.

nnU-Net prints progress from Python and from the worker processes it forks; both write to the
process's file descriptors 1 and 2. While a step runs, :func:`output_to` points those
descriptors (and ``sys.stdout``/``sys.stderr``, which may be replaced objects, e.g. under
pytest) at the step's log file, so the run shows one line per step instead of hundreds.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["log_file_name", "output_to"]


def log_file_name(key: str) -> str:
    """``001/train/fold_0`` -> ``001_train_fold_0.log``."""
    return key.replace("/", "_") + ".log"


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send stdout and stderr, of this process and of the processes it starts meanwhile, to
    ``path`` (appended; its folder is created) for the duration of the block; with None,
    change nothing."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    log = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        with contextlib.suppress(Exception):
            log.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        log.close()
