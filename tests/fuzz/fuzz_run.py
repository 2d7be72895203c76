"""Run fuzz batches, each in its own process with a timeout (``make fuzz`` and the suite).

``python tests/fuzz/fuzz_run.py --seconds 1200`` runs rounds of every target with fresh
seeds until the time is up (``--examples`` inputs per batch) and prints one JSON summary:
inputs tried per target, what worked, errors by class, and every failed batch with its
seed, exit status and the end of its output (rerun one with
``python tests/fuzz/fuzz_batch.py TARGET --examples N --seed S``). A batch that crashes (a
signal), hangs past ``--timeout`` or breaks the rule fails; the run goes on with the next.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TARGETS = [
    "select_top_patches",
    "select_across_volumes",
    "strategy_query",
    "loop_files",
    "export_query",
    "cli",
]


def run_batch(target: str, examples: int, seed: int, timeout: float) -> dict[str, Any]:
    """One batch in a subprocess: its statistics, or ``failed`` with the reason."""
    command = [sys.executable, str(HERE / "fuzz_batch.py"), target]
    command += ["--examples", str(examples), "--seed", str(seed)]
    env = {**os.environ, "CLASP_RS_NUM_THREADS": "2"}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-2000:]
        return {
            "target": target,
            "seed": seed,
            "failed": f"hung: no end after {timeout} s",
            "output": tail.decode(errors="replace") if isinstance(tail, bytes) else tail,
        }
    seconds = round(time.perf_counter() - start, 2)
    last = done.stdout.strip().splitlines()[-1:] or ["{}"]
    try:
        stats = json.loads(last[0])
    except json.JSONDecodeError:
        stats = {}
    if done.returncode != 0 or stats.get("failed"):
        why = (
            f"killed by signal {-done.returncode}"
            if done.returncode < 0
            else f"exit status {done.returncode}"
        )
        return {
            "target": target,
            "seed": seed,
            "failed": why,
            "wall_seconds": seconds,
            "output": (done.stdout + done.stderr)[-4000:],
        }
    stats["wall_seconds"] = seconds
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600, help="time budget (default 600)")
    parser.add_argument("--examples", type=int, default=300, help="inputs per batch")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="first seed")
    parser.add_argument("--timeout", type=float, default=600, help="per batch, seconds")
    parser.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS)
    args = parser.parse_args()
    end = time.monotonic() + args.seconds
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    failures: list[dict[str, Any]] = []
    batches, seed = 0, args.seed
    while time.monotonic() < end:
        for target in args.targets:
            if time.monotonic() >= end:
                break
            stats = run_batch(target, args.examples, seed, args.timeout)
            batches += 1
            if "failed" in stats:
                failures.append(stats)
                print(f"FAILED {target} seed {seed}: {stats['failed']}", file=sys.stderr)
                continue
            for key, value in stats.items():
                if isinstance(value, int) and key != "seed":
                    totals[target][key] += value
            totals[target]["batches"] += 1
        seed += 1
    summary = {
        "seconds": args.seconds,
        "batches": batches,
        "inputs": sum(t["inputs"] for t in totals.values()),
        "per_target": {t: dict(c) for t, c in totals.items()},
        "failures": failures,
    }
    print(json.dumps(summary, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
