"""One progress line per step of ``clasp-rs run``.

``clasp-rs run exp: loop 2 of 3 · train/fold_1 · 0:04:12 elapsed · about 0:09:30 left``

The estimate for the rest comes from the steps ``state.json`` recorded: the mean seconds of
each kind of step (plan, train, maps, ...) times the steps of that kind still to run, where
steps of one loop that run at once (folds, prediction shards, query parts) count once per
round of ``parallel`` tasks. It appears once every kind still to run has been seen.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ProgressLine", "format_seconds", "step_kind"]

# Kinds of step that run side by side within a loop under a parallel executor.
_PARALLEL_KINDS = {"train", "maps", "query part"}


def step_kind(key: str) -> str:
    """``"001/train/fold_0"`` -> ``"train"``; ``"000/query/part_0_of_2"`` -> ``"query part"``;
    ``"000/maps/part_1_of_2"`` -> ``"maps"``; otherwise the step's name."""
    name = key.split("/", 1)[1] if "/" in key else key
    head, _, rest = name.partition("/")
    if head == "query" and rest:
        return "query part"
    return head


def format_seconds(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = max(0, int(round(seconds)))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class ProgressLine:
    """Builds the line printed when a step starts.

    Args:
        name: the experiment's folder name.
        n_loops: loops in all.
        recorded: the steps of ``state.json`` (dicts with ``step`` and ``seconds``); the list
            is read each time, so steps recorded later count.
        parallel: tasks of one kind that run at once (1 for the local executor).
    """

    def __init__(
        self, name: str, n_loops: int, recorded: Sequence[Mapping[str, Any]], parallel: int = 1
    ) -> None:
        self.name = name
        self.n_loops = n_loops
        self.recorded = recorded
        self.parallel = max(1, parallel)
        self.started = time.monotonic()

    def _means(self) -> dict[str, float]:
        seconds: dict[str, list[float]] = defaultdict(list)
        for entry in self.recorded:
            if isinstance(entry.get("seconds"), (int, float)):
                seconds[step_kind(str(entry["step"]))].append(float(entry["seconds"]))
        return {kind: sum(v) / len(v) for kind, v in seconds.items()}

    def estimate(self, remaining: Iterable[str]) -> float | None:
        """Seconds the ``remaining`` step keys will take, or None while a kind among them
        has not run yet."""
        means = self._means()
        groups: dict[tuple[str, str], int] = defaultdict(int)
        for key in remaining:
            groups[(key.split("/", 1)[0], step_kind(key))] += 1
        total = 0.0
        for (_, kind), count in groups.items():
            if kind not in means:
                return None
            rounds = math.ceil(count / self.parallel) if kind in _PARALLEL_KINDS else count
            total += rounds * means[kind]
        return total

    def line(self, key: str, remaining: Iterable[str]) -> str:
        """The line for step ``key`` starting, with ``remaining`` the keys still to run
        after it (in this run, all loops)."""
        loop = int(key.split("/", 1)[0])
        step = key.split("/", 1)[1]
        elapsed = format_seconds(time.monotonic() - self.started)
        text = (
            f"clasp-rs run {self.name}: loop {loop + 1} of {self.n_loops} · {step} · "
            f"{elapsed} elapsed"
        )
        left = self.estimate([key, *remaining])
        if left is not None:
            text += f" · about {format_seconds(left)} left"
        return text
