"""Benchmark (issue 12): what ``clasp_rs.query_patches`` adds to ``ClaspPE.query``.

One synthetic batch of ``--batch`` volumes, ``M`` ensemble members, C = 3 softmax outputs of
random logits (torch, CPU), queried through ``ClaspPE(...).query`` with a dict of the same
float32 tensors (the reference), ``query_patches`` on the float32 batch, and
``query_patches`` on the batch in bfloat16 (upcast, checked and renormalised first). Each is
timed as the best of ``--repeats`` runs in this process; the ratios are to the reference of
the same run.

    python benches/bench_drop_in.py                  # 8 x (2, 3, 32, 96, 96), n = 20
    python benches/bench_drop_in.py --batch 2 --shape 16 48 48 --repeats 3   # quick check

No timing is asserted anywhere; this is a measurement.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

import clasp_rs


def best_of(repeats: int, job) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        job()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 96, 96])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--patch-size", type=int, nargs=3, default=[8, 32, 32])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(args.batch, args.members, 3, *args.shape)).astype(np.float32)
    probs = torch.softmax(torch.from_numpy(logits), dim=2)
    half = probs.to(torch.bfloat16)
    volumes = {str(i): probs[i] for i in range(args.batch)}
    size = tuple(args.patch_size)
    strategy = clasp_rs.ClaspPE()

    reference = best_of(
        args.repeats, lambda: strategy.query(volumes, args.n, 0, size, device="cpu")
    )
    drop_in = best_of(
        args.repeats, lambda: clasp_rs.query_patches(probs, args.n, size, device="cpu")
    )
    bf16 = best_of(args.repeats, lambda: clasp_rs.query_patches(half, args.n, size, device="cpu"))
    same = clasp_rs.query_patches(probs, args.n, size, device="cpu")
    assert sorted(same, key=lambda p: (p.file, p.coords)) == sorted(
        strategy.query(volumes, args.n, 0, size, device="cpu"), key=lambda p: (p.file, p.coords)
    )

    load = os.getloadavg()[0]
    print(
        f"{args.batch} x ({args.members}, 3, {' x '.join(map(str, args.shape))}), n = {args.n}, "
        f"patch {' x '.join(map(str, size))}, stride 1, device cpu; {os.cpu_count()} CPU cores, "
        f"{platform.machine()}, Python {sys.version.split()[0]}, torch {torch.__version__}; "
        f"1-minute load average {load:.1f}; best of {args.repeats}"
    )
    print("| call | time (s) | ratio to ClaspPE.query |")
    print("|---|---:|---:|")
    for name, seconds in (
        ("ClaspPE.query, dict of float32 tensors (reference)", reference),
        ("query_patches, float32 batch (B, M, C, Z, Y, X)", drop_in),
        ("query_patches, bfloat16 batch (upcast + renormalised)", bf16),
    ):
        print(f"| {name} | {seconds:.3f} | {seconds / reference:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
