"""What every executor shares: tasks, their records, the interface, the task wrapper.

A loop is a small graph of tasks (train fold K, evaluate, predict + maps of a shard, query
part, merge, annotate). A :class:`Task` names a plain module-level function and its
arguments, the tasks it must wait for and the resources it asks for. An :class:`Executor`
runs a graph and calls back in the caller's thread when a task starts and when it finishes
with its :class:`TaskRecord`; the caller (the loop's driver, the only writer of
``state.json``) records it. Task functions are idempotent and write their outputs
atomically, so a task that ran but was never recorded simply runs again on resume.

Task functions run through :func:`run_task` wherever they run (this process, a Ray worker):
it times them, notes where they ran, and sends everything written to stdout/stderr (nnU-Net
prints a lot, its worker processes too) to the task's log file.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs.exceptions import ClaspError

__all__ = [
    "Executor",
    "Resources",
    "Task",
    "TaskFailedError",
    "TaskRecord",
    "check_graph",
    "run_task",
    "utc_stamp",
]


class TaskFailedError(ClaspError, RuntimeError):
    """A task failed for good (its worker died more often than retries allow, or its
    function raised something that is not a clasp-rs error)."""


@dataclass(frozen=True)
class Resources:
    """What one task asks the executor for.

    Attributes:
        cpus: CPU slots (Ray's ``num_cpus``); the task's torch uses that many threads.
        gpus: GPUs (Ray's ``num_gpus``); Ray sets ``CUDA_VISIBLE_DEVICES`` for the task.
    """

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class Task:
    """One unit of a loop's graph.

    Attributes:
        key: the step key it is recorded under (``"001/train/fold_0"``).
        function: a module-level function (workers import it by name); returns a small
            JSON-able dict recorded with the step, or None.
        args: its positional arguments (small, picklable values: paths, names, numbers).
        after: keys of the tasks that must finish first; keys not in the graph count as
            done.
        resources: what it asks for.
        log: file that receives the task's stdout and stderr (appended), or None to leave
            them alone.
        uses_devices: the task runs networks (so its record notes the visible GPUs).
    """

    key: str
    function: Callable[..., dict[str, Any] | None]
    args: tuple[Any, ...] = ()
    after: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    log: Path | None = None
    uses_devices: bool = False


@dataclass(frozen=True)
class TaskRecord:
    """How a task went.

    Attributes:
        key: the task's key.
        info: what its function returned.
        seconds: wall time of the function.
        started, finished: UTC ISO 8601 times (with milliseconds), so that concurrency can
            be read from ``state.json``.
        host, pid: where it ran.
        cuda_visible_devices: ``CUDA_VISIBLE_DEVICES`` as the task saw it (None: unset).
    """

    key: str
    info: dict[str, Any]
    seconds: float
    started: str
    finished: str
    host: str
    pid: int
    cuda_visible_devices: str | None = None

    def as_step_info(self) -> dict[str, Any]:
        """The fields ``state.json`` keeps with the step (besides ``seconds``)."""
        where: dict[str, Any] = {"started": self.started, "host": self.host, "pid": self.pid}
        if self.cuda_visible_devices is not None:
            where["cuda_visible_devices"] = self.cuda_visible_devices
        return {**self.info, **where}


def utc_stamp(seconds: float | None = None) -> str:
    """``2025-01-31T12:34:56.789Z`` for ``seconds`` since the epoch (default: now)."""
    now = time.time() if seconds is None else seconds
    whole = int(now)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        + f".{int((now - whole) * 1000):03d}Z"
    )


def run_task(task: Task, *, threads: int | None = None) -> TaskRecord:
    """Run ``task``'s function here, with its output sent to ``task.log``; time it.

    Args:
        task: the task.
        threads: torch's thread count while the task runs (restored afterwards): a worker
            computing in the CPU slots it was given, or network tasks pinned to a count so
            that their floats match another executor's; None leaves it alone.

    Raises:
        Whatever the function raises.
    """
    from clasp_rs.loop.step_log import output_to

    wall = time.time()
    start = time.perf_counter()
    previous = _set_threads(threads) if threads is not None else None
    try:
        with output_to(task.log):
            info = task.function(*task.args) or {}
    finally:
        if previous is not None:
            _set_threads(previous)
    seconds = time.perf_counter() - start
    return TaskRecord(
        key=task.key,
        info=dict(info),
        seconds=seconds,
        started=utc_stamp(wall),
        finished=utc_stamp(),
        host=socket.gethostname(),
        pid=os.getpid(),
        cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES") if task.uses_devices else None,
    )


def _set_threads(n: int) -> int | None:
    """Set torch's thread count; returns the previous one (None without torch)."""
    from clasp_rs._optional import torch_or_none

    torch = torch_or_none()
    if torch is None:
        return None
    previous = int(torch.get_num_threads())
    torch.set_num_threads(max(1, n))
    return previous


def check_graph(tasks: Sequence[Task]) -> None:
    """Keys unique, ``after`` only naming earlier tasks (or keys outside the graph).

    Raises:
        ValueError: a repeated key, or a task waiting for a later one (a cycle).
    """
    seen: set[str] = set()
    keys = {t.key for t in tasks}
    for task in tasks:
        if task.key in seen:
            raise ValueError(f"task {task.key} appears twice in the graph")
        for dep in task.after:
            if dep in keys and dep not in seen:
                raise ValueError(f"task {task.key} waits for {dep}, which comes after it")
        seen.add(task.key)


class Executor(ABC):
    """Runs a loop's task graph.

    ``run`` may be called many times (one graph per loop); ``close`` releases what the
    executor started (a local Ray instance). Usable as a context manager.
    """

    name: str = "executor"

    @abstractmethod
    def run(
        self,
        tasks: Sequence[Task],
        on_start: Callable[[Task], None] | None = None,
        on_done: Callable[[TaskRecord], None] | None = None,
    ) -> None:
        """Run every task once the tasks in its ``after`` are done.

        ``on_start(task)`` is called (in the caller's thread) before a task is started or
        submitted, ``on_done(record)`` when it finished; a callback that raises stops the run
        (tasks already running finish first). Tasks are listed in a valid order (see
        :func:`check_graph`).

        Raises:
            TaskFailedError: a task failed for good; tasks that finished before are
                reported through ``on_done`` first.
            ClaspError: a task's function raised it (passed through unchanged).
        """

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release resources the executor started."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
