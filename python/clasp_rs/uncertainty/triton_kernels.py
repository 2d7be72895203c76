"""Fused CUDA kernels (Triton) for :mod:`clasp_rs.uncertainty`.

Plain torch needs several passes over each fold (channel sums, minimum, add) and several more
for the maps; memory bandwidth is what limits a GPU here, so these kernels do each step in a
single pass:

* :func:`accumulate`: read one fold slab once; count non-finite values, negative values and
  voxels whose channel sum is off by more than the tolerance; add the probabilities (softmaxed
  first for logits) to the running sum; optionally add the fold's entropy ``H[p_m]``.
* :func:`finish`: turn the running sum into the score maps in place (channel k receives
  ``p_{k+1} u``, the last channel ``u``) and the entropy sum into the mutual information.

Tensors are float32 slabs ``(C, n)`` whose channels each hold ``n`` contiguous values (the
channel stride may differ, so Z slabs of a ``(C, Z, Y, X)`` volume work in place). Each voxel
is handled by exactly one program, which reads all its channels before writing any, so the
in-place update is safe.

Only used when Triton imports; tests run the kernels on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl

__all__ = ["accumulate", "finish"]

_BLOCK = 1024
# Smallest normal float32: the log's argument floor (p > 0 is checked separately).
TINY: tl.constexpr = tl.constexpr(1.1754943508222875e-38)


@triton.jit
def _accumulate_kernel(
    fold_ptr,
    fold_cstride,
    total_ptr,
    total_cstride,
    entropy_ptr,
    stats_ptr,
    n,
    tolerance,
    C: tl.constexpr,
    FIRST: tl.constexpr,
    LOGITS: tl.constexpr,
    ENTROPY: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    fold_cs = fold_cstride.to(tl.int64)
    total_cs = total_cstride.to(tl.int64)
    nonfinite = tl.zeros((BLOCK,), dtype=tl.int32)
    negative = tl.zeros((BLOCK,), dtype=tl.int32)
    off = tl.zeros((BLOCK,), dtype=tl.int32)
    entropy = tl.zeros((BLOCK,), dtype=tl.float32)
    if LOGITS:
        # Pass 1: finiteness and the per-voxel maximum; pass 2: the softmax denominator;
        # pass 3: add the softmax. Passes 2 and 3 re-read the block from the cache.
        peak = tl.full((BLOCK,), float("-inf"), dtype=tl.float32)
        for c in tl.static_range(C):
            x = tl.load(fold_ptr + c * fold_cs + offs, mask=mask, other=0.0)
            nonfinite += ((x != x) | (tl.abs(x) == float("inf"))).to(tl.int32)
            peak = tl.maximum(peak, x)
        denominator = tl.zeros((BLOCK,), dtype=tl.float32)
        for c in tl.static_range(C):
            x = tl.load(fold_ptr + c * fold_cs + offs, mask=mask, other=0.0)
            denominator += tl.exp(x - peak)
        for c in tl.static_range(C):
            x = tl.load(fold_ptr + c * fold_cs + offs, mask=mask, other=0.0)
            p = tl.exp(x - peak) / denominator
            if ENTROPY:
                entropy -= tl.where(p > 0.0, p * tl.log(tl.maximum(p, TINY)), 0.0)
            target = total_ptr + c * total_cs + offs
            if FIRST:
                tl.store(target, p, mask=mask)
            else:
                tl.store(target, tl.load(target, mask=mask, other=0.0) + p, mask=mask)
    else:
        # One pass: each value is read once, checked and added. A rejected fold leaves the
        # sum unusable, which the caller reports.
        channel_sum = tl.zeros((BLOCK,), dtype=tl.float32)
        for c in tl.static_range(C):
            p = tl.load(fold_ptr + c * fold_cs + offs, mask=mask, other=0.0)
            nonfinite += ((p != p) | (tl.abs(p) == float("inf"))).to(tl.int32)
            negative += (p < 0.0).to(tl.int32)
            channel_sum += p
            if ENTROPY:
                entropy -= tl.where(p > 0.0, p * tl.log(tl.maximum(p, TINY)), 0.0)
            target = total_ptr + c * total_cs + offs
            if FIRST:
                tl.store(target, p, mask=mask)
            else:
                tl.store(target, tl.load(target, mask=mask, other=0.0) + p, mask=mask)
        # NaN fails the comparison, so a NaN sum counts as off.
        off = (~(tl.abs(channel_sum - 1.0) <= tolerance) & mask).to(tl.int32)
    if ENTROPY:
        entropy = tl.maximum(entropy, 0.0)
        if FIRST:
            tl.store(entropy_ptr + offs, entropy, mask=mask)
        else:
            previous = tl.load(entropy_ptr + offs, mask=mask, other=0.0)
            tl.store(entropy_ptr + offs, previous + entropy, mask=mask)
    tl.store(stats_ptr + pid * 3, tl.sum(nonfinite, axis=0))
    tl.store(stats_ptr + pid * 3 + 1, tl.sum(negative, axis=0))
    tl.store(stats_ptr + pid * 3 + 2, tl.sum(off, axis=0))


@triton.jit
def _finish_kernel(
    total_ptr,
    total_cstride,
    entropy_ptr,
    n,
    inv_m,
    C: tl.constexpr,
    ENTROPY: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    cs = total_cstride.to(tl.int64)
    u = tl.zeros((BLOCK,), dtype=tl.float32)
    for c in tl.static_range(C):
        p = tl.load(total_ptr + c * cs + offs, mask=mask, other=0.0) * inv_m
        u -= tl.where(p > 0.0, p * tl.log(tl.maximum(p, TINY)), 0.0)
    u = tl.maximum(u, 0.0)
    if ENTROPY:
        mean_entropy = tl.load(entropy_ptr + offs, mask=mask, other=0.0) * inv_m
        tl.store(entropy_ptr + offs, tl.maximum(u - mean_entropy, 0.0), mask=mask)
    for c in tl.static_range(1, C):
        p = tl.load(total_ptr + c * cs + offs, mask=mask, other=0.0) * inv_m
        tl.store(total_ptr + (c - 1) * cs + offs, p * u, mask=mask)
    tl.store(total_ptr + (C - 1) * cs + offs, u, mask=mask)


def _check_slab(name: str, slab: Any) -> tuple[int, int]:
    c = slab.shape[0]
    n = slab[0].numel()
    if not slab[0].is_contiguous() or (c > 1 and slab.stride(0) < n):
        raise ValueError(f"{name}: each channel must be contiguous and channels must not overlap")
    return c, n


def accumulate(
    fold: Any,
    total: Any,
    entropy_sum: Any | None,
    *,
    first: bool,
    logits: bool,
    tolerance: float,
) -> Any:
    """Validate a fold slab and add it to the running sums in one pass.

    Args:
        fold: float32 ``(C, ...)`` slab (probabilities or logits); never written.
        total: float32 ``(C, ...)`` running sum of the same slab, updated in place (written
            without reading when ``first``).
        entropy_sum: float32 ``(...)`` running sum of per-fold entropies, or None.
        first: this is the first fold (``total`` and ``entropy_sum`` are overwritten).
        logits: ``fold`` holds logits; softmax over C before adding.
        tolerance: largest accepted ``|sum_c p_c - 1|`` (ignored for logits).

    Returns:
        int32 tensor ``(3,)`` on the device: non-finite values, negative values, voxels with
        channel sums off by more than ``tolerance`` (negative values are not errors for
        logits; the caller decides).
    """
    import torch

    c, n = _check_slab("fold", fold)
    c_total, n_total = _check_slab("total", total)
    if (c, n) != (c_total, n_total):
        raise ValueError(f"fold slab {tuple(fold.shape)} and sum slab {tuple(total.shape)} differ")
    programs = triton.cdiv(n, _BLOCK)
    stats = torch.empty((programs, 3), dtype=torch.int32, device=fold.device)
    _accumulate_kernel[(programs,)](
        fold,
        fold.stride(0),
        total,
        total.stride(0),
        entropy_sum if entropy_sum is not None else total,
        stats,
        n,
        float(tolerance),
        C=c,
        FIRST=first,
        LOGITS=logits,
        ENTROPY=entropy_sum is not None,
        BLOCK=_BLOCK,
    )
    return stats.sum(dim=0)


def finish(total: Any, entropy_sum: Any | None, n_folds: int) -> None:
    """Turn a running-sum slab into score maps (and the entropy sum into mutual information)
    in place; see the module docstring for the layout."""
    c, n = _check_slab("total", total)
    _finish_kernel[(triton.cdiv(n, _BLOCK),)](
        total,
        total.stride(0),
        entropy_sum if entropy_sum is not None else total,
        n,
        1.0 / n_folds,
        C=c,
        ENTROPY=entropy_sum is not None,
        BLOCK=_BLOCK,
    )
