"""GPU benchmark (issue 3, 6b): uncertainty-map throughput vs. device copy bandwidth.

On a CUDA device, measures

* the device-to-device copy bandwidth: bytes of a float32 tensor copied per second by
  ``dst.copy_(src)`` (the memory traffic is twice that: every byte is read and written), and
* the throughput of the maps: bytes of input probabilities (M folds of float32
  ``(C, Z, Y, X)``, already on the device) turned into the score maps per second by
  ``FoldAccumulator`` (validation, running sum, entropy, class maps; results left on the
  device with ``finish(on_device=True)``),

and prints the throughput as a percentage of the copy bandwidth (target >= 50 %). With
``--with-mi`` the mutual information is computed too; ``--no-triton`` measures the plain
torch path. The end-to-end time including the copy of the maps back to the host is printed
for information. A sample of the maps is checked against a float64 reference.

Without a CUDA device it prints "skipped: no CUDA device" and exits 0.

Usage:
    python benches/bench_uncertainty_gpu.py [--z 526] [--m 5] [--c 4] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def timed(fn, repeat: int, torch, device) -> list[float]:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    for _ in range(repeat):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def copy_bandwidth(src, repeat: int, torch, device) -> float:
    """Bytes of ``src`` copied per second by a device-to-device ``copy_`` (best of runs)."""
    target = torch.empty_like(src)
    times = timed(lambda: target.copy_(src), repeat + 3, torch, device)[3:]
    return src.numel() * src.element_size() / min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--z", type=int, default=526)
    parser.add_argument("--y", type=int, default=512)
    parser.add_argument("--x", type=int, default=512)
    parser.add_argument("--c", type=int, default=4)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--chunk-z", type=int, default=None)
    parser.add_argument("--with-mi", action="store_true", help="also mutual information")
    parser.add_argument("--no-triton", action="store_true", help="plain torch kernels")
    # --device cpu runs the script's logic without a GPU (a dry run; the numbers mean nothing).
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.no_triton:
        os.environ["CLASP_RS_NO_TRITON"] = "1"

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (torch.cuda.is_available() is False)")
        return 0

    from clasp_rs.uncertainty import FoldAccumulator
    from clasp_rs.uncertainty.torch_backend import triton_kernels

    m, c, y, x = args.m, args.c, args.y, args.x
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        free, total = torch.cuda.mem_get_info(device)
    else:
        name, free, total = "CPU (dry run)", 2 * 2**30, 2 * 2**30
    # Folds + running sum + copy target + slack for generation temporaries.
    per_slice = (m + 4) * c * y * x * 4
    z = min(args.z, int(0.8 * free) // per_slice)
    if z < args.z:
        print(f"Z reduced from {args.z} to {z} to fit {free / 2**30:.1f} GiB of free GPU memory")
    print(f"device: {name}, {total / 2**30:.0f} GiB; torch {torch.__version__}")
    fused = triton_kernels() is not None and device.type == "cuda"
    print(f"kernels: {'fused Triton' if fused else 'plain torch'}")
    print(f"input: M = {m} folds of float32 (C, Z, Y, X) = ({c}, {z}, {y}, {x}) on the device")

    generator = torch.Generator(device=device).manual_seed(0)
    folds = []
    for _ in range(m):
        logits = torch.randn((c, z, y, x), generator=generator, device=device) * 4.0
        logits[0] += 3.0
        folds.append(torch.softmax(logits, dim=0))
        del logits
    fold_bytes = folds[0].numel() * folds[0].element_size()
    input_bytes = m * fold_bytes

    copy_bw = copy_bandwidth(folds[0], max(args.repeat, 5), torch, device)

    def maps_on_device():
        acc = FoldAccumulator(
            device=device, with_mutual_information=args.with_mi, chunk_z=args.chunk_z
        )
        for fold in folds:
            acc.add(fold)
        return acc.finish(on_device=True)

    result = maps_on_device()  # warm-up: Triton compiles here
    check_sample(result, folds, args.with_mi, torch)
    del result
    map_times = timed(maps_on_device, args.repeat, torch, device)
    best = min(map_times)
    throughput = input_bytes / best

    def maps_to_host():
        acc = FoldAccumulator(device=device, with_mutual_information=args.with_mi)
        for fold in folds:
            acc.add(fold)
        return acc.finish()

    host_time = min(timed(maps_to_host, 2, torch, device))

    print()
    print(f"device copy bandwidth: {copy_bw / 1e9:8.1f} GB/s (bytes copied per second)")
    print(
        f"maps throughput:       {throughput / 1e9:8.1f} GB/s of input probabilities "
        f"({best * 1e3:.2f} ms best of {args.repeat} for {input_bytes / 1e9:.2f} GB)"
    )
    print(f"ratio: {100 * throughput / copy_bw:.1f} % of the copy bandwidth (target >= 50 %)")
    print(f"for information, maps copied back to the host: {host_time * 1e3:.1f} ms end to end")
    return 0


def check_sample(result, folds, with_mi: bool, torch) -> None:
    """Compare a few Z slices of the maps with a float64 reference."""
    z = folds[0].shape[1]
    slices = sorted({0, z // 2, z - 1})
    p_m = torch.stack([f[:, slices].double() for f in folds])
    p = p_m.mean(dim=0)
    u = torch.special.entr(p).sum(dim=0).clamp_min(0)
    expected = torch.cat([p[1:] * u, u[None]])
    got = result.scores[:, slices].double()
    error = (got - expected).abs().max().item()
    if with_mi:
        mi = (u - torch.special.entr(p_m).sum(dim=1).mean(dim=0)).clamp_min(0)
        error = max(error, (result.mutual_information[slices].double() - mi).abs().max().item())
    if not error <= 1e-5:
        raise SystemExit(f"maps differ from the float64 reference by {error:.3g}")
    print(f"sample check vs float64 reference: max abs error {error:.2e}")


if __name__ == "__main__":
    sys.exit(main())
