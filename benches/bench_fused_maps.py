"""Benchmark (issue 8): the post-network cost of the query step per case, .npz route vs fused.

After the network of each of M folds has predicted a case (identical in both routes, not
timed), what does it cost to get from the M per-fold probability volumes to the score maps
on disk?

* **npz route** (before issue 8): nnU-Net exports each fold, ``np.savez_compressed`` of the
  float32 (C, Z, Y, X) probabilities (what ``export_prediction_from_logits`` does with
  ``--save_probabilities``; ``--with-segmentation`` adds the argmax ``.nii.gz`` it also
  writes), then the query reads the M ``.npz`` files back (zlib decompression) and computes
  and writes the maps.
* **fused** (:mod:`clasp_rs.nnunet.fused_maps`): each fold's probabilities go from memory
  into the :class:`~clasp_rs.uncertainty.FoldAccumulator`, then the maps are written.

Both end with the same ``.npy`` score maps (checked). As a yardstick, the time of one read of
the M folds' probabilities from uncompressed ``.npy`` files in the page cache is measured too.
Fold probabilities are softmaxes of smooth random logits (a low-resolution field upsampled,
mostly confident background), so they compress like real predictions rather than like noise.

Usage:
    python benches/bench_fused_maps.py [--shape 200 256 256] [--classes 4] [--folds 5]
                                       [--with-segmentation] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = HERE / "_work" / "fused_maps"


def fold_probabilities(k: int, c: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """float32 (C, Z, Y, X): softmax of smooth logits (fold k of a seeded ensemble)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1000 + k)
    coarse = torch.randn((1, c, *(max(2, s // 16) for s in shape)), generator=gen) * 3.0
    coarse[:, 0] += 4.0  # mostly confident background
    logits = torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear")[0]
    return torch.softmax(logits, dim=0).numpy()


def write_segmentation(probabilities: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    segmentation = np.argmax(probabilities, axis=0).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(segmentation), str(path), useCompression=True)


def maps_to(folder: Path, maps, case: str) -> list[Path]:
    from clasp_rs.strategies.scores import score_set_from_maps

    score_set = score_set_from_maps(case, maps, frozenset({"classes"}), workdir=folder)
    return [Path(p) for p in (*score_set.classes, score_set.entropy)]


def folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", nargs=3, type=int, default=[200, 256, 256])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--with-segmentation", action="store_true")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()

    import torch

    from clasp_rs.uncertainty import FoldAccumulator, compute_case_maps

    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    c, m = args.classes, args.folds
    work: Path = args.work
    shutil.rmtree(work, ignore_errors=True)
    for sub in ("npz", "raw", "maps_npz", "maps_fused"):
        (work / sub).mkdir(parents=True)
    print(
        f"case {shape}, C = {c}, M = {m} folds, {args.threads} thread(s); "
        f"{c * np.prod(shape) * 4 / 2**20:.0f} MiB per fold",
        flush=True,
    )

    export_s = segmentation_s = fused_add_s = 0.0
    accumulator = FoldAccumulator(device="cpu", num_threads=args.threads)
    for k in range(m):
        p = fold_probabilities(k, c, shape, args.seed)
        np.save(work / "raw" / f"fold_{k}.npy", p)  # for the one-read yardstick (untimed)
        t = time.perf_counter()
        np.savez_compressed(work / "npz" / f"fold_{k}.npz", probabilities=p)
        export_s += time.perf_counter() - t
        if args.with_segmentation:
            t = time.perf_counter()
            write_segmentation(p, work / "npz" / f"fold_{k}.nii.gz")
            segmentation_s += time.perf_counter() - t
        t = time.perf_counter()
        accumulator.add(p, name=f"fold {k}")
        fused_add_s += time.perf_counter() - t
        del p
        print(f"  fold {k}: exported, accumulated", flush=True)

    t = time.perf_counter()
    fused_maps = accumulator.finish()
    fused_paths = maps_to(work / "maps_fused", fused_maps, "case")
    fused_finish_s = time.perf_counter() - t
    del fused_maps

    t = time.perf_counter()
    npz_maps = compute_case_maps(
        sorted((work / "npz").glob("fold_*.npz")), device="cpu", num_threads=args.threads
    )
    npz_paths = maps_to(work / "maps_npz", npz_maps, "case")
    read_maps_s = time.perf_counter() - t
    del npz_maps

    for a, b in zip(fused_paths, npz_paths, strict=True):
        np.testing.assert_array_equal(np.load(a), np.load(b))

    raw = sorted((work / "raw").glob("fold_*.npy"))
    for path in raw:  # warm the page cache: the yardstick reads memory, not the disk
        path.read_bytes()
    t = time.perf_counter()
    for path in raw:
        np.load(path)
    one_read_s = time.perf_counter() - t

    npz_route = export_s + segmentation_s + read_maps_s
    fused = fused_add_s + fused_finish_s
    print()
    print(f"npz route: export {export_s:.2f} s", end="")
    if args.with_segmentation:
        print(f" + segmentation {segmentation_s:.2f} s", end="")
    print(f" + read .npz and maps {read_maps_s:.2f} s = {npz_route:.2f} s")
    print(
        f"fused:     accumulate {fused_add_s:.2f} s + maps {fused_finish_s:.2f} s = {fused:.2f} s"
    )
    print(f"one read of the {m} folds' probabilities (.npy, page cache): {one_read_s:.2f} s")
    print(f"ratio npz route / fused: {npz_route / fused:.1f}x")
    print(
        f"against one read: npz route {npz_route / one_read_s:.1f}x, "
        f"fused {fused / one_read_s:.1f}x"
    )
    npz_bytes = folder_bytes(work / "npz", "*.npz")
    maps_bytes = folder_bytes(work / "maps_fused", "*.npy")
    print(
        f"disk: {m} .npz {npz_bytes / 2**20:.0f} MiB (plus the maps) vs maps "
        f"{maps_bytes / 2**20:.0f} MiB"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
