"""Benchmark (issue 3, 6a): class maps from M folds on disk, streaming vs. stacking.

Compares ``clasp_rs.uncertainty.compute_case_maps`` (folds streamed one at a time from
``.npy`` files, O(C * V) memory) with a straightforward torch version that loads every fold,
stacks them to (M, C, Z, Y, X) and computes the mean, entropy and class maps on the whole
stack. Each implementation runs in its own subprocess, which reports its wall time (from the
first file read to the maps in memory; imports excluded) and its peak resident memory
(``getrusage(RUSAGE_SELF).ru_maxrss``); the page cache is warmed by reading the fold files
before every run so both read from memory, not from the disk.

The default volume is 526 x 512 x 512 with C = 4 and M = 5. When the stacked reference would
not fit in the available memory it uses the largest Z that does (printed), for both.

Usage:
    python benches/bench_uncertainty.py [--z 526] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / "_work" / "uncertainty"


def reference_peak_bytes(m: int, c: int, voxels: int) -> int:
    """Peak memory of the stacked reference: the loaded folds and their stack exist at the
    same time (2 M C float32 per voxel), plus slack for the mean and a temporary (2 C)."""
    return (2 * m * c + 2 * c) * 4 * voxels


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def generate(folder: Path, m: int, c: int, shape: tuple[int, int, int], seed: int) -> list[Path]:
    """Write M fold files of softmax probabilities, float32 (C, Z, Y, X), once."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    z, y, x = shape
    paths = [folder / f"fold_{k}.npy" for k in range(m)]
    for k, path in enumerate(paths):
        if path.exists():
            header = np.load(path, mmap_mode="r")
            if header.shape == (c, z, y, x) and header.dtype == np.float32:
                continue
        print(f"generating {path} ({c}, {z}, {y}, {x}) float32", flush=True)
        gen = torch.Generator().manual_seed(seed * 1000 + k)
        tmp = path.with_name(path.name + ".tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(c, z, y, x))
        step = 16
        for z0 in range(0, z, step):
            n = min(step, z - z0)
            logits = torch.randn((c, n, y, x), generator=gen) * 4.0
            logits[0] += 3.0  # mostly confident background, as in real predictions
            out[:, z0 : z0 + n] = torch.softmax(logits, dim=0).numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    return paths


def warm_page_cache(paths: list[Path]) -> None:
    buffer = bytearray(64 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


# -- the two implementations, each run in a child process -------------------------------------


def run_streaming(paths: list[Path]) -> np.ndarray:
    from clasp_rs.uncertainty import compute_case_maps

    return compute_case_maps([str(p) for p in paths], device="cpu").scores


def run_stacked(paths: list[Path]) -> np.ndarray:
    import torch

    probs = torch.stack([torch.from_numpy(np.load(p)) for p in paths])  # (M, C, Z, Y, X)
    p = probs.mean(dim=0)
    u = torch.special.entr(p).sum(dim=0)
    return torch.cat([p[1:] * u, u[None]]).numpy()


def child(impl: str, paths: list[Path], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if impl == "streaming":
        import clasp_rs.uncertainty  # noqa: F401  (import cost outside the timing)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    maps = run_streaming(paths) if impl == "streaming" else run_stacked(paths)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    checksums = [float(maps[k].sum(dtype=np.float64)) for k in range(maps.shape[0])]
    sample = maps[:, :: max(1, maps.shape[1] // 7), ::61, ::67].astype(np.float64)
    print(
        json.dumps(
            {
                "impl": impl,
                "wall_s": wall,
                "peak_rss_bytes": peak_kib * 1024,
                "baseline_rss_bytes": baseline_kib * 1024,
                "checksums": checksums,
                "sample": sample.ravel().tolist(),
                "shape": list(maps.shape),
            }
        )
    )


def run_child(impl: str, paths: list[Path], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, "--threads", str(threads)]
    cmd += ["--files", *map(str, paths)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{impl} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--z", type=int, default=526)
    parser.add_argument("--y", type=int, default=512)
    parser.add_argument("--x", type=int, default=512)
    parser.add_argument("--c", type=int, default=4)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument(
        "--streaming-only",
        action="store_true",
        help="run only the streaming implementation, at the requested Z even when the stacked "
        "reference would not fit",
    )
    parser.add_argument("--memory-fraction", type=float, default=0.7, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=["streaming", "stacked"], help=argparse.SUPPRESS)
    parser.add_argument("--files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.files, args.threads)
        return

    m, c, y, x = args.m, args.c, args.y, args.x
    budget = int(args.memory_fraction * mem_available())
    z = args.z
    if not args.streaming_only and reference_peak_bytes(m, c, z * y * x) > budget:
        fit = budget // reference_peak_bytes(m, c, y * x)
        print(
            f"the stacked reference needs ~{reference_peak_bytes(m, c, z * y * x) / 2**30:.1f} "
            f"GiB for Z = {z}, more than {args.memory_fraction:.0%} of the available "
            f"{mem_available() / 2**30:.1f} GiB: using the largest Z that fits, Z = {fit}"
        )
        z = int(fit)
    print(f"volume (C, Z, Y, X) = ({c}, {z}, {y}, {x}), M = {m} folds, threads = {args.threads}")
    print(f"load average before the runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    paths = generate(args.work / f"{m}x{c}x{z}x{y}x{x}", m, c, (z, y, x), seed=3)
    input_bytes = sum(p.stat().st_size for p in paths)
    print(f"input: {len(paths)} .npy files, {input_bytes / 2**30:.2f} GiB")

    results: dict[str, list[dict]] = {"streaming": [], "stacked": []}
    impls = ("streaming",) if args.streaming_only else ("stacked", "streaming")
    for rep in range(args.repeat):
        for impl in impls:
            warm_page_cache(paths)
            r = run_child(impl, paths, args.threads)
            results[impl].append(r)
            print(
                f"  run {rep} {impl:9s}: {r['wall_s']:7.2f} s, peak RSS "
                f"{r['peak_rss_bytes'] / 2**30:6.2f} GiB",
                flush=True,
            )

    if args.streaming_only:
        best = min(r["wall_s"] for r in results["streaming"])
        peak = max(r["peak_rss_bytes"] for r in results["streaming"])
        print(
            f"streaming only: best {best:.2f} s ({input_bytes / best / 2**30:.2f} GiB/s of input), "
            f"peak RSS {peak / 2**30:.2f} GiB; the stacked reference would need "
            f"~{reference_peak_bytes(m, c, z * y * x) / 2**30:.1f} GiB"
        )
        return

    ours, ref = results["streaming"][0], results["stacked"][0]
    assert ours["shape"] == ref["shape"], (ours["shape"], ref["shape"])
    np.testing.assert_allclose(ours["checksums"], ref["checksums"], rtol=1e-4)
    np.testing.assert_allclose(ours["sample"], ref["sample"], rtol=1e-4, atol=1e-6)

    best_ours = min(r["wall_s"] for r in results["streaming"])
    best_ref = min(r["wall_s"] for r in results["stacked"])
    peak_ours = max(r["peak_rss_bytes"] for r in results["streaming"])
    peak_ref = max(r["peak_rss_bytes"] for r in results["stacked"])
    print()
    print("| implementation | best wall time (s) | peak RSS (GiB) | input GiB/s |")
    print("|---|---|---|---|")
    for name, wall, peak in (
        ("streaming (clasp_rs.uncertainty)", best_ours, peak_ours),
        ("stacked torch reference", best_ref, peak_ref),
    ):
        print(f"| {name} | {wall:.2f} | {peak / 2**30:.2f} | {input_bytes / wall / 2**30:.2f} |")
    print()
    speedup = best_ref / best_ours
    memory_ratio = peak_ours / peak_ref
    print(f"speed-up (stacked time / streaming time): {speedup:.2f}x   (target >= 3x)")
    print(f"peak memory ratio (streaming / stacked): {memory_ratio:.3f}   (target <= 0.333)")
    print("outputs agree (per-map sums and a sample, rtol 1e-4)")
    print(f"load average after the runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
