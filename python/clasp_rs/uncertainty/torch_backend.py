"""The torch back end of :class:`~clasp_rs.uncertainty.FoldAccumulator` (CUDA, or the CPU on
request): the running sums live on the device; slabs are staged through a CPU buffer unless
the fold is already a tensor on the device. On CUDA the per-slab work is one fused Triton
kernel (:mod:`.triton_kernels`) when Triton is available.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_rs._optional import import_torch
from clasp_rs.io.folds import FoldReader
from clasp_rs.uncertainty.checks import SUM_TOLERANCE, TINY

if TYPE_CHECKING:
    import torch

__all__ = ["TorchSlabs", "triton_kernels"]


def triton_kernels() -> Any | None:
    """The fused Triton kernels, or None when Triton is missing or disabled."""
    if os.environ.get("CLASP_RS_NO_TRITON", "") not in ("", "0"):
        return None
    try:
        from clasp_rs.uncertainty import triton_kernels as kernels
    except ImportError:
        return None
    return kernels


class TorchSlabs:
    """Torch back end (CUDA, or the CPU on request): the sums live on the device; slabs are
    staged through a CPU buffer unless the fold is already a tensor on the device. On CUDA the
    per-slab work is one fused Triton kernel when Triton is available (plain torch otherwise,
    or with ``CLASP_RS_NO_TRITON=1``). One device synchronisation per fold."""

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        chunk_z: int,
        device: torch.device,
        logits: bool,
        with_mutual_information: bool,
        fused: Any | None = None,
    ) -> None:
        torch = import_torch()
        c, z, y, x = shape
        self.torch = torch
        self.shape = shape
        self.chunk_z = chunk_z
        self.device = device
        self.logits = logits
        self.fused = fused
        self._fused_verified = False
        self.sum = torch.empty(shape, dtype=torch.float32, device=device)
        self.entropy_sum = (
            torch.empty((z, y, x), dtype=torch.float32, device=device)
            if with_mutual_information
            else None
        )
        self._work: Any = None
        self._voxels: Any = None
        # Untouched pages cost no memory, so this stays free when folds are on the device.
        self.staging = np.empty((c, chunk_z, y, x), dtype=np.float32)

    @property
    def work(self) -> Any:
        """float32 ``(C, chunk_z, Y, X)`` scratch of the plain torch path (made on first use)."""
        if self._work is None:
            c, _, y, x = self.shape
            self._work = self.torch.empty(
                (c, self.chunk_z, y, x), dtype=self.torch.float32, device=self.device
            )
        return self._work

    @property
    def voxels(self) -> Any:
        """float32 ``(chunk_z, Y, X)`` scratch of the plain torch path (made on first use)."""
        if self._voxels is None:
            _, _, y, x = self.shape
            self._voxels = self.torch.empty(
                (self.chunk_z, y, x), dtype=self.torch.float32, device=self.device
            )
        return self._voxels

    def _entropy(self, p: Any, out: Any, work: Any) -> None:
        torch = self.torch
        torch.clamp(p, min=TINY, out=work)
        work.log_().mul_(p)
        torch.sum(work, dim=0, out=out)
        out.neg_().clamp_(min=0.0)

    def _slabs(self) -> list[tuple[int, int]]:
        z = self.shape[1]
        return [(z0, min(z, z0 + self.chunk_z)) for z0 in range(0, z, self.chunk_z)]

    def _run_fused(self, kernel: str, *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Run a fused kernel: (True, its result), or (False, None) without Triton. If the
        kernel cannot even be compiled or launched on this device, warn once and fall back to
        plain torch."""
        if self.fused is None:
            return False, None
        if self._fused_verified:
            return True, getattr(self.fused, kernel)(*args, **kwargs)
        try:
            result = getattr(self.fused, kernel)(*args, **kwargs)
        except Exception as err:  # a Triton or driver failure, before any write
            import warnings

            warnings.warn(
                f"fused Triton kernels unavailable on {self.device} ({type(err).__name__}: "
                f"{err}); using plain torch operations",
                RuntimeWarning,
                stacklevel=3,
            )
            self.fused = None
            return False, None
        self._fused_verified = True
        return True, result

    def accumulate(self, reader: FoldReader, first: bool) -> bool:
        torch = self.torch
        oks = []
        for z0, z1 in self._slabs():
            n = z1 - z0
            fold = reader.device_slab(z0, z1, self.device, self.staging[:, :n])
            if not fold[0].is_contiguous():
                fold = fold.contiguous()
            total = self.sum[:, z0:z1]
            entropy = None if self.entropy_sum is None else self.entropy_sum[z0:z1]
            fused, counts = self._run_fused(
                "accumulate",
                fold,
                total,
                entropy,
                first=first,
                logits=self.logits,
                tolerance=SUM_TOLERANCE,
            )
            if fused:
                oks.append(counts[0] == 0 if self.logits else (counts == 0).all())
                continue
            if self.logits:
                low, high = torch.aminmax(fold)
                oks.append(torch.isfinite(low) & torch.isfinite(high))
                fold = torch.softmax(fold, dim=0)
            else:
                sums = torch.sum(fold, dim=0, out=self.voxels[:n])
                low, high = torch.aminmax(sums)
                oks.append(
                    (fold.amin() >= 0)
                    & (low >= 1.0 - SUM_TOLERANCE)
                    & (high <= 1.0 + SUM_TOLERANCE)
                )
            if first:
                total.copy_(fold)
            else:
                total.add_(fold)
            if entropy is not None:
                if first:
                    self._entropy(fold, entropy, self.work[:, :n])
                else:
                    self._entropy(fold, self.voxels[:n], self.work[:, :n])
                    entropy.add_(self.voxels[:n])
        return bool(torch.stack(oks).all())

    def mean(self, n_folds: int) -> np.ndarray:
        return (self.sum * (1.0 / n_folds)).cpu().numpy()

    def finish(self, n_folds: int, on_device: bool) -> tuple[Any, Any]:
        torch = self.torch
        c, z, y, x = self.shape
        copy_back = self.device.type != "cpu" and not on_device
        scores: Any = np.empty(self.shape, dtype=np.float32) if copy_back else None
        mi: Any = None
        if self.entropy_sum is not None and copy_back:
            mi = np.empty((z, y, x), dtype=np.float32)
        inv_m = 1.0 / n_folds
        for z0, z1 in self._slabs():
            n = z1 - z0
            p = self.sum[:, z0:z1]
            h = None if self.entropy_sum is None else self.entropy_sum[z0:z1]
            fused, _ = self._run_fused("finish", p, h, n_folds)
            if not fused:
                if n_folds > 1:
                    p.mul_(inv_m)
                u = self.voxels[:n]
                self._entropy(p, u, self.work[:, :n])
                if h is not None:
                    h.mul_(-inv_m).add_(u).clamp_(min=0.0)
                for k in range(c - 1):
                    torch.mul(p[k + 1], u, out=p[k])
                p[c - 1].copy_(u)
            if copy_back:
                torch.from_numpy(scores[:, z0:z1]).copy_(p)
                if mi is not None:
                    torch.from_numpy(mi[z0:z1]).copy_(h)
        if copy_back:
            return scores, mi
        if on_device:
            return self.sum, self.entropy_sum
        mi_cpu = None if self.entropy_sum is None else self.entropy_sum.numpy()
        return self.sum.numpy(), mi_cpu
