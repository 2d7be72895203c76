"""The ``local`` executor: every task in this process, one after another, in graph order.

Today's behaviour and the default: no dependency beyond the loop's own, one device (the
one ``--device`` names), nothing started in the background.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from clasp_rs.loop.executors.base import Executor, Task, TaskRecord, check_graph, run_task

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Runs tasks sequentially in the calling process (resources are not enforced)."""

    name = "local"

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
            record = run_task(task)
            if on_done is not None:
                on_done(record)
