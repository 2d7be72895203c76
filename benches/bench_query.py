"""Benchmark (issue 3, 6c): ``clasp-rs query`` end to end over synthetic nnU-Net exports.

Writes ``--cases`` synthetic cases of shape ``--shape`` with C = 4 smooth class
probabilities (softmax of trilinearly upsampled random logits) as nnU-Net ``<case>.npz``
exports (``np.savez_compressed(probabilities=...)``) once into ``benches/_work/query/``
(git-ignored), then runs the real console command for each stride in a fresh process and
reports the time per stage (as the command's own summary prints it), the total wall time and
the process's peak RSS.

    python benches/bench_query.py                       # 10 cases of 200x256x256, strides 4 and 1
    python benches/bench_query.py --cases 2 --shape 64 96 96 --strides 2   # quick check
    python benches/bench_query.py --append-results      # also append to benches/RESULTS.md

No timing is asserted anywhere; this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "_work" / "query"
RESULTS = ROOT / "RESULTS.md"
SECTION = "## clasp-rs query end to end (issue 3, 6c)"
LABELS = {"background": 0, "liver": 1, "kidney": 2, "tumor": 3}

# Runs the console entry point and reports the peak RSS of this process (kB on Linux).
RUNNER = """
import json, resource, sys
from clasp_rs.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def make_case(seed: int, shape: tuple[int, int, int], c: int = 4) -> np.ndarray:
    """float32 (C, Z, Y, X) probabilities: softmax of smooth logits (blobs ~16 voxels wide)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    coarse = [max(2, s // 16) for s in shape]
    logits = torch.randn((1, c, *coarse), generator=gen) * 3.0
    logits[:, 0] += 2.0  # mostly background, as in CT
    fine = torch.nn.functional.interpolate(
        logits, size=shape, mode="trilinear", align_corners=False
    )
    return torch.softmax(fine[0], dim=0).numpy()


def prepare(cases: int, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    tag = f"{cases}x{'x'.join(map(str, shape))}"
    folder = WORK / tag
    probs = folder / "probs"
    dataset = folder / "dataset.json"
    done = folder / "complete"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        probs.mkdir(parents=True)
        for i in range(cases):
            start = time.perf_counter()
            np.savez_compressed(probs / f"case_{i:03d}.npz", probabilities=make_case(i, shape))
            print(f"wrote case_{i:03d}.npz ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
        dataset.write_text(json.dumps({"labels": LABELS, "file_ending": ".nii.gz"}))
        done.write_text("ok\n")
    return probs, dataset


_STAGE_ROW = re.compile(
    r"^\W*(read \+ maps|select|merge \+ fill|write|total)\s*\W\s*([\d.]+)\s*\W*$"
)


def run_query(probs: Path, dataset: Path, args: argparse.Namespace, stride: int) -> dict:
    out_dir = WORK / "runs"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"loop_stride{stride}.json"
    workdir = out_dir / "maps"
    out.unlink(missing_ok=True)
    shutil.rmtree(workdir, ignore_errors=True)
    argv = [
        "query",
        str(probs),
        "--dataset-json",
        str(dataset),
        "--n",
        str(args.n),
        "--loop",
        "1",
        "--patch-size",
        *map(str, args.patch_size),
        "--stride",
        str(stride),
        "--device",
        args.device,
        "--workdir",
        str(workdir),
        "--out",
        str(out),
    ]
    env = {**os.environ, "COLUMNS": "120"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"clasp-rs query failed with exit status {done.returncode}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    stages = {}
    for line in done.stderr.splitlines():
        m = _STAGE_ROW.match(line.strip())
        if m:
            stages[m.group(1)] = float(m.group(2))
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "stride": stride,
        "argv": argv,
        "wall_s": wall,
        "maxrss_gib": report["maxrss_kb"] / 2**20,
        "stages": stages,
        "patches": len(json.loads(out.read_text())["patches"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 256, 256])
    parser.add_argument("--strides", type=int, nargs="+", default=[4, 1])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--patch-size", type=int, nargs=3, default=[32, 64, 64])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()

    shape = (args.shape[0], args.shape[1], args.shape[2])
    probs, dataset = prepare(args.cases, shape)
    npz_bytes = sum(p.stat().st_size for p in probs.glob("*.npz"))
    load_before = os.getloadavg()[0]
    runs = [run_query(probs, dataset, args, stride) for stride in args.strides]
    load_after = os.getloadavg()[0]

    voxels = args.cases * int(np.prod(shape))
    lines = [
        f"{args.cases} cases of {'×'.join(map(str, shape))}, C = 4 (one averaged export, "
        f"{npz_bytes / 2**30:.2f} GiB of .npz), n = {args.n}, patch "
        f"{'×'.join(map(str, args.patch_size))}, ClaSP PE, loop 1 (beta 3.16), device "
        f"{args.device}; {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; 1-minute load average {load_before:.1f} before, "
        f"{load_after:.1f} after (other jobs share the machine when it is above 0).",
        "",
        "| stride | read + maps (s) | select (s) | merge + fill (s) | write (s) | total (s) | "
        "wall incl. start-up (s) | Mvoxel/s (total) | peak RSS (GiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        s = r["stages"]
        lines.append(
            f"| {r['stride']} | {s.get('read + maps', float('nan')):.2f} | "
            f"{s.get('select', float('nan')):.2f} | {s.get('merge + fill', float('nan')):.2f} | "
            f"{s.get('write', float('nan')):.2f} | {s.get('total', float('nan')):.2f} | "
            f"{r['wall_s']:.2f} | {voxels / 1e6 / s.get('total', float('nan')):.1f} | "
            f"{r['maxrss_gib']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.append_results:
        command = "python benches/bench_query.py " + " ".join(sys.argv[1:])
        example = "clasp-rs " + " ".join(
            a if "/" not in a else os.path.relpath(a, ROOT.parent) for a in runs[0]["argv"]
        )
        text = (
            f"\n{SECTION}\n\n`{command}` (runs, per stride, in a fresh process:\n"
            f"`{example}`)\n\n{table}\n"
        )
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write(text)
        print(f"appended to {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
