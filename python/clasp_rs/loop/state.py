"""Progress of an experiment's run: ``state.json``, rewritten atomically after every step.

A step is named ``"NNN/name"`` (``"000/plan"``, ``"001/train/fold_0"``, ...). A step is
recorded only after all of its output is in place, so a crash or kill leaves at most the
step in progress unrecorded; ``clasp-rs run --resume`` runs that step again (steps clean up
what a previous attempt left) and skips every recorded one.

``state.json``::

    {"version": 1,
     "settings": {"strategy": "clasp-pe", "n_loops": 3, "trainer": "...", "folds": [0, 1],
                  "configuration": "3d_fullres", "simulate": true},
     "steps": [{"step": "000/plan", "seconds": 12.3, "finished": "2025-...Z"}, ...],
     "waiting": null | {"loop": 1, "query": "loop_001.json"}}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import read_json, write_json

__all__ = ["RunState", "StepHooks", "load_state", "step_key"]

STATE_VERSION = 1


def step_key(loop: int, name: str) -> str:
    """``"NNN/name"``."""
    return f"{loop:03d}/{name}"


@dataclass
class StepHooks:
    """Callbacks around every step body (``before`` runs before it, ``after`` after it and
    before the step is recorded); used to watch a run and, in tests, to interrupt one."""

    before: Callable[[str], None] | None = None
    after: Callable[[str], None] | None = None


@dataclass
class RunState:
    """The loaded ``state.json``; :meth:`save` writes it atomically."""

    path: Path
    settings: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    waiting: dict[str, Any] | None = None

    @property
    def started(self) -> bool:
        return bool(self.steps) or self.waiting is not None

    def is_done(self, key: str) -> bool:
        return any(entry["step"] == key for entry in self.steps)

    def done_keys(self) -> list[str]:
        return [entry["step"] for entry in self.steps]

    def save(self) -> None:
        write_json(
            self.path,
            {
                "version": STATE_VERSION,
                "settings": self.settings,
                "steps": self.steps,
                "waiting": self.waiting,
            },
        )

    def mark_done(self, key: str, seconds: float, **info: Any) -> None:
        """Record ``key`` as finished and save (a key is never recorded twice)."""
        if self.is_done(key):
            raise DatasetError(f"step {key} is already recorded as done in {self.path}")
        entry = {
            "step": key,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        entry.update(info)
        self.steps.append(entry)
        self.save()

    def run_step(
        self, key: str, body: Callable[[], dict[str, Any] | None], hooks: StepHooks | None = None
    ) -> bool:
        """Run ``body`` unless ``key`` is done, then record it.

        Returns:
            True when the body ran, False when the step was already done.
        """
        if self.is_done(key):
            return False
        if hooks is not None and hooks.before is not None:
            hooks.before(key)
        start = time.perf_counter()
        info = body() or {}
        if hooks is not None and hooks.after is not None:
            hooks.after(key)
        self.mark_done(key, time.perf_counter() - start, **info)
        return True


def load_state(path: Path) -> RunState:
    """``state.json`` at ``path``, or an empty state when it does not exist yet.

    Raises:
        DatasetError: the file is malformed.
    """
    if not path.exists():
        return RunState(path)
    doc = read_json(path, "state.json")
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        raise DatasetError(f"{path}: not a clasp-rs state file (version {STATE_VERSION})")
    steps = doc.get("steps", [])
    if not isinstance(steps, list) or not all(
        isinstance(s, dict) and isinstance(s.get("step"), str) for s in steps
    ):
        raise DatasetError(f"{path}: 'steps' must be a list of {{\"step\": ...}} objects")
    return RunState(path, dict(doc.get("settings") or {}), steps, doc.get("waiting"))
