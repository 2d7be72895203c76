"""Fuzzing in the suite (issue 10): every public entry point and file reader, fed malformed
arrays, dtypes, shapes, numbers, ``.npy``/``.npz``/loop-JSON bytes and command lines, works
or raises a ``ClaspError``/``OSError`` with a one-line message (see ``fuzz_targets.py``).

Each target runs as one batch in a subprocess with a fixed seed (the same inputs every run)
and a timeout, so that a crash or a hang fails its test instead of pytest. The batches are
sized to take about 40 s together on two cores; ``CLASP_RS_FUZZ_SCALE`` multiplies them, and
``make fuzz`` runs the long, randomly seeded version (``fuzz_run.py``).
"""

from __future__ import annotations

import os

import pytest
from fuzz_run import run_batch

EXAMPLES = {
    "select_top_patches": 300,
    "select_across_volumes": 250,
    "strategy_query": 150,
    "loop_files": 150,
    "export_query": 100,
    "cli": 150,
}
SCALE = float(os.environ.get("CLASP_RS_FUZZ_SCALE", "1"))


@pytest.mark.parametrize("target", list(EXAMPLES))
def test_fuzz_batch(target: str) -> None:
    examples = max(1, round(EXAMPLES[target] * SCALE))
    stats = run_batch(target, examples, seed=20251202, timeout=300 * max(SCALE, 1))
    assert "failed" not in stats, f"{stats['failed']}\n{stats.get('output', '')}"
    # The batch ran every input, and some of them got through the checks to real work.
    assert stats["inputs"] >= examples
    assert stats.get("worked", 0) > 0, stats
