"""Benchmark: `select_top_patches` against the reference approach, measured in the same run.

The reference is a faithful vectorised version of what nnActive does: box means by scipy
FFT convolution in 'valid' mode, a full argsort of all candidates, and a greedy loop that
checks each candidate against the patches taken so far. Every ratio printed is measured in
this one run, so machine noise cancels out of it:

* ``ref/ours``  reference time over ours (target >= 50x at stride 1);
* ``ours/read`` our time over one float64 read of the input (``x.sum(dtype=float64)``;
  target <= 3x);
* ``rss/file``  peak RSS growth of a fresh process running ours on a memory-mapped ``.npy``
  over the file size (target <= 1.25x); best time and worst peak of three processes.

Run: ``python benches/bench_select.py [--quick] [--skip-large]`` (the large case writes a
551 MB ``.npy`` to ``benches/_work/`` once and needs ~2 GiB of free memory for ours).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / "_work"


def smooth_volume(shape: tuple[int, int, int], seed: int = 0, blobs: int = 12) -> np.ndarray:
    """A smooth float32 map: a sum of Gaussian blobs, built separably (cheap for 10^8 voxels)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, dtype=np.float32)
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    for _ in range(blobs):
        centre = [rng.uniform(0, n) for n in shape]
        width = [rng.uniform(0.08, 0.25) * n for n in shape]
        amp = np.float32(rng.uniform(0.2, 1.0))
        gz, gy, gx = (
            np.exp(-0.5 * ((a - c) / w) ** 2) for a, c, w in zip(axes, centre, width, strict=True)
        )
        for z in range(shape[0]):
            out[z] += (amp * gz[z]) * np.outer(gy, gx)
    return out


def reference_select(vol: np.ndarray, patch, n: int, stride: int) -> list[tuple[int, int, int]]:
    """nnActive-style selection: FFT box means, full argsort, greedy overlap loop."""
    from scipy.signal import fftconvolve

    kernel = np.ones(patch, dtype=np.float64)
    means = fftconvolve(vol.astype(np.float64), kernel, mode="valid") / kernel.size
    means = means[::stride, ::stride, ::stride]
    order = np.argsort(-means, axis=None, kind="stable")
    starts = np.stack(np.unravel_index(order, means.shape), axis=1) * stride
    size = np.asarray(patch)
    taken: list[np.ndarray] = []
    for start in starts:
        if taken:
            t = np.asarray(taken)
            if np.any(np.all((start < t + size) & (t < start + size), axis=1)):
                continue
        taken.append(start)
        if len(taken) == n:
            break
    return [tuple(int(v) for v in t) for t in taken]


def timed(fn, repeat: int = 1):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def one_read(vol) -> float:
    return timed(lambda: float(np.sum(vol, dtype=np.float64)), repeat=3)[0]


def rss_growth_of_ours(path: Path, patch, n: int, stride: int) -> tuple[float, float]:
    """Runs ours on a memory-mapped .npy in a fresh process: (seconds, peak RSS growth bytes)."""
    # ru_maxrss survives exec (a child starts with its parent's peak), so reset the
    # high-water mark through clear_refs and read VmHWM/VmRSS from /proc instead.
    code = f"""
import json, time
import clasp_rs

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS:")
t0 = time.perf_counter()
clasp_rs.select_top_patches({str(path)!r}, {tuple(patch)!r}, {n}, stride={stride})
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "growth": status("VmHWM:") - before}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return row["seconds"], row["growth"]


def report(rows: list[dict]) -> None:
    header = ["case", "stride", "ours s", "ref s", "ref/ours", "read s", "ours/read", "rss/file"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        cells = [
            r["case"],
            str(r["stride"]),
            f"{r['ours']:.3f}",
            f"{r['ref']:.2f}" if r.get("ref") else "skipped",
            f"{r['ref'] / r['ours']:.0f}x" if r.get("ref") else "-",
            f"{r['read']:.3f}",
            f"{r['ours'] / r['read']:.2f}x",
            f"{r['rss'] / r['file']:.2f}x" if r.get("rss") is not None else "-",
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    import clasp_rs

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller medium case, no large case")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    print(f"clasp-rs {clasp_rs.__version__}, engine threads: {clasp_rs._clasp_rs.num_threads()}")
    rows = []

    shape = (80, 128, 128) if args.quick else (160, 256, 256)
    patch = (20, 24, 24) if args.quick else (40, 48, 48)
    vol = smooth_volume(shape)
    read = one_read(vol)
    for stride in (1, 4):
        ours, got = timed(lambda s=stride: clasp_rs.select_top_patches(vol, patch, 20, stride=s), 3)
        ref, expected = timed(lambda s=stride: reference_select(vol, patch, 20, s))
        same = [p.coords for p in got] == expected
        print(f"medium stride {stride}: same patches as reference: {same}")
        rows.append(
            {
                "case": "x".join(map(str, shape)),
                "stride": stride,
                "ours": ours,
                "ref": ref,
                "read": read,
            }
        )

    if not (args.quick or args.skip_large):
        WORK.mkdir(exist_ok=True)
        path = WORK / "smooth_526x512x512.npy"
        if not path.exists():
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, smooth_volume((526, 512, 512), seed=1))
            os.replace(tmp, path)
        mm = np.load(path, mmap_mode="r", allow_pickle=False)
        read = one_read(mm)
        size = path.stat().st_size
        for stride in (8, 1):
            # Best time and worst peak of three fresh processes.
            runs = [rss_growth_of_ours(path, (64, 64, 64), 20, stride) for _ in range(3)]
            ours = min(t for t, _ in runs)
            growth = max(g for _, g in runs)
            ref = None
            if stride == 8 and os.environ.get("CLASP_BENCH_LARGE_REFERENCE") == "1":
                ref, _ = timed(lambda: reference_select(np.asarray(mm), (64, 64, 64), 20, 8))
            rows.append(
                {
                    "case": "526x512x512 mmap",
                    "stride": stride,
                    "ours": ours,
                    "ref": ref,
                    "read": read,
                    "rss": growth,
                    "file": size,
                }
            )
    report(rows)


if __name__ == "__main__":
    main()
