"""Benchmark (issue 8): loop wall time, local executor vs Ray, on this machine, same run.

Two experiments are created from the bundled CT dataset with the same seed (same split,
same starting budget); each runs ``--loops L --folds 0 1 --simulate`` with the tiny trainer,
one with ``--executor local`` and one with ``--executor ray`` on a local Ray instance with
all CPUs (``--cpus N``). Wall times are measured around ``run_experiment`` (Ray's start is
timed separately); the per-step times from each ``state.json`` are printed too, as the input
of the projection to k GPUs and N nodes in ``benches/RESULTS.md``.

On a shared machine the load changes between the two runs; run it with both ``--first``
orders and compare the steps both executors run alike (plan, preprocess) to see how much.

Usage:
    nnUNet_n_proc_DA=0 python benches/bench_loop_executors.py [--loops 2] [--cpus 2]
        [--first local|ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "Dataset_clasp_ct"


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def step_table(state_file: Path) -> dict[str, list[float]]:
    """Step kind -> seconds of each recorded step."""
    from clasp_rs.loop.progress import step_kind

    out: dict[str, list[float]] = defaultdict(list)
    for step in json.loads(state_file.read_text())["steps"]:
        out[step_kind(step["step"])].append(float(step["seconds"]))
    return out


def busy_span(state_file: Path) -> float:
    """From the first step's start to the last step's end (what the graph took)."""
    steps = json.loads(state_file.read_text())["steps"]
    starts = [_stamp(s["started"]) for s in steps if "started" in s]
    ends = [_stamp(s["finished"]) for s in steps if "." in s["finished"]]
    return max(ends) - min(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--first", choices=["local", "ray"], default="local", help="which executor runs first"
    )
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="clasp_rs_bench_loop_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (work / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(work / name)
    os.environ.setdefault("nnUNet_n_proc_DA", "0")
    os.environ.setdefault("nnUNet_def_n_proc", "1")
    os.environ.setdefault("nnUNet_compile", "false")
    shutil.copytree(DATA, work / "nnUNet_raw" / "Dataset900_clasp_ct", dirs_exist_ok=True)

    import torch

    from clasp_rs.loop.driver import RunOptions, run_experiment
    from clasp_rs.loop.executors import make_executor
    from clasp_rs.loop.setup import init_experiment

    torch.set_num_threads(args.cpus)
    common = {
        "loops": args.loops,
        "strategy": "clasp-pe",
        "trainer": "nnUNetTrainer_clasp_tiny",
        "folds": [0, 1],
        "simulate": True,
        "device": "cpu",
    }
    results: dict[str, dict[str, float]] = {}
    order = ("local", "ray") if args.first == "local" else ("ray", "local")
    for name in order:
        root = work / f"exp_{name}"
        init_experiment("900", root, patch_size=(4, 16, 16), budget=8, seed=0)
        executor = None
        ray_start = 0.0
        if name == "ray":
            t = time.perf_counter()
            executor = make_executor("ray", num_cpus=args.cpus)
            ray_start = time.perf_counter() - t
        t = time.perf_counter()
        try:
            run_experiment(root, RunOptions(executor=name, **common), executor=executor)
        finally:
            wall = time.perf_counter() - t
            if executor is not None:
                executor.close()
        results[name] = {
            "wall": wall,
            "ray_start": ray_start,
            "busy": busy_span(root / "state.json"),
        }
        print(f"\n{name}: run {wall:.1f} s (graph {results[name]['busy']:.1f} s)", end="")
        print(f", Ray start {ray_start:.1f} s" if name == "ray" else "")
        for kind, seconds in step_table(root / "state.json").items():
            print(
                f"  {kind:<11} {len(seconds)} x mean {sum(seconds) / len(seconds):6.2f} s "
                f"(sum {sum(seconds):6.1f} s)"
            )
    local, ray = results["local"], results["ray"]
    print(
        f"\nlocal / ray wall time: {local['wall'] / ray['wall']:.2f}x "
        f"(with Ray's start: {local['wall'] / (ray['wall'] + ray['ray_start']):.2f}x); "
        f"{args.loops} loops, 2 folds, {args.cpus} CPUs"
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
