"""Executors: how a loop's task graph runs (see :mod:`.base` for the interface).

- ``local`` (:class:`.local.LocalExecutor`, the default): every task in this process, in
  order. No dependency.
- ``ray`` (:class:`.ray_executor.RayExecutor`, ``pip install "clasp-rs[ray]"``): independent
  tasks at once on a local Ray instance or a cluster, one GPU per network task when there
  are GPUs.

Both give the same results for the same models: the graph and every task are the same, only
when and where the tasks run differs.
"""

from __future__ import annotations

from typing import Any

from clasp_rs.loop.executors.base import (
    Executor,
    Resources,
    Task,
    TaskFailedError,
    TaskRecord,
    run_task,
)
from clasp_rs.loop.executors.local import LocalExecutor

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Resources",
    "Task",
    "TaskFailedError",
    "TaskRecord",
    "make_executor",
    "run_task",
]

EXECUTORS = ("local", "ray")


def make_executor(name: str, **options: Any) -> Executor:
    """An executor by name.

    Args:
        name: ``"local"`` or ``"ray"``.
        options: the executor's keyword arguments: :class:`.local.LocalExecutor`'s
            (``network_threads``) or :class:`.ray_executor.RayExecutor`'s (``address``,
            ``max_retries``, ...).

    Raises:
        ValueError: an unknown name, or options ``local`` does not take.
        ImportError: ``ray`` without Ray installed (names the extra).
    """
    if name == "local":
        unknown = sorted(set(options) - {"network_threads"})
        if unknown:
            raise ValueError(f"the local executor takes network_threads only, got {unknown}")
        return LocalExecutor(**options)
    if name == "ray":
        from clasp_rs.loop.executors.ray_executor import RayExecutor

        return RayExecutor(**options)
    raise ValueError(f"unknown executor {name!r}: expected one of {', '.join(EXECUTORS)}")
