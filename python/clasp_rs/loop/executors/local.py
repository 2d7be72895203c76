"""The ``local`` executor: every task in this process, one after another, in graph order.

Today's behaviour and the default: no dependency beyond the loop's own, one device (the
one ``--device`` names), nothing started in the background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clasp_rs.loop.executors.base import Executor, Task, TaskRecord, check_graph, run_task

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Runs tasks sequentially in the calling process (resources are not enforced).

    Args:
        network_threads: torch threads of the tasks that run networks (``uses_devices``),
            restored afterwards; None keeps the process's. On a CPU a network's floats depend
            on torch's thread count, so a local run reproduces a Ray run's maps and query
            byte for byte with the thread count of Ray's tasks (``--cpus-per-task``).
    """

    name = "local"

    def __init__(self, network_threads: int | None = None) -> None:
        if network_threads is not None and network_threads < 1:
            raise ValueError(f"network_threads must be >= 1, got {network_threads}")
        self.network_threads = network_threads

    def run(
        self,
        tasks: Sequence[Task],
        on_start: Callable[[Task], None] | None = None,
        on_done: Callable[[TaskRecord], None] | None = None,
    ) -> None:
        check_graph(tasks)
        for task in tasks:
            if on_start is not None:
                on_start(task)
            threads = self.network_threads if task.uses_devices else None
            record = run_task(task, threads=threads)
            if on_done is not None:
                on_done(record)
