"""The CPU back end of :class:`~clasp_rs.uncertainty.FoldAccumulator`: numpy ufuncs, slabs
spread over a thread pool. numpy's SIMD ``log`` is several times faster than torch's on CPUs,
and slab-level threads keep working when the cores are shared, where OpenMP's barriers stall.

Both back ends keep the running sums, validate and add a fold slab by slab, and finally turn
the sum into the score maps in place (channel k receives p_{k+1} u, which reads channel k + 1
before that channel is itself overwritten; the last channel receives u).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from clasp_rs._optional import import_torch
from clasp_rs.io.folds import FoldReader
from clasp_rs.uncertainty.checks import TINY, Stats, stats_ok

__all__ = ["NumpySlabs", "np_entropy", "np_softmax"]


def np_entropy(p: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """``out = max(0, -sum_c p_c ln p_c)``; ``p`` float32 ``(C, n, Y, X)``, ``out`` ``(n, Y, X)``.

    Clipped at 0 because channel sums up to ``1 + SUM_TOLERANCE`` can make it slightly
    negative. ``work`` is scratch of ``p``'s shape.
    """
    np.maximum(p, TINY, out=work)
    np.log(work, out=work)
    np.multiply(work, p, out=work)
    np.sum(work, axis=0, out=out)
    np.negative(out, out=out)
    np.maximum(out, 0.0, out=out)


def np_softmax(s: np.ndarray, scratch: np.ndarray) -> None:
    """Softmax over axis 0 of float32 ``s`` ``(C, n, Y, X)``, in place."""
    np.max(s, axis=0, out=scratch)
    np.subtract(s, scratch, out=s)
    np.exp(s, out=s)
    np.sum(s, axis=0, out=scratch)
    np.divide(s, scratch, out=s)


class _Scratch:
    def __init__(self, c: int, chunk_z: int, y: int, x: int) -> None:
        self.fold = np.empty((c, chunk_z, y, x), dtype=np.float32)
        self.work = np.empty((c, chunk_z, y, x), dtype=np.float32)
        self.voxels = np.empty((chunk_z, y, x), dtype=np.float32)
        self.entropy = np.empty((chunk_z, y, x), dtype=np.float32)


class NumpySlabs:
    """CPU back end: numpy ufuncs, slabs spread over a thread pool (ufuncs release the GIL,
    and ``preadv`` does too, so reading and computing overlap across slabs)."""

    def __init__(
        self,
        shape: tuple[int, int, int, int],
        chunk_z: int,
        num_threads: int,
        logits: bool,
        with_mutual_information: bool,
    ) -> None:
        c, z, y, x = shape
        self.shape = shape
        self.chunk_z = chunk_z
        self.num_threads = num_threads
        self.logits = logits
        self.sum = np.empty(shape, dtype=np.float32)
        self.entropy_sum = (
            np.empty((z, y, x), dtype=np.float32) if with_mutual_information else None
        )
        self._local = threading.local()

    def _scratch(self) -> _Scratch:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            c, _, y, x = self.shape
            scratch = self._local.scratch = _Scratch(c, self.chunk_z, y, x)
        return scratch

    def _map(self, job: Callable[[int, int], Any]) -> list[Any]:
        z = self.shape[1]
        starts = list(range(0, z, self.chunk_z))

        def run(z0: int) -> Any:
            with np.errstate(all="ignore"):  # invalid input is reported from the statistics
                return job(z0, min(z, z0 + self.chunk_z))

        if self.num_threads <= 1 or len(starts) == 1:
            return [run(z0) for z0 in starts]
        with ThreadPoolExecutor(max_workers=self.num_threads) as pool:
            return list(pool.map(run, starts))

    def accumulate(self, reader: FoldReader, first: bool) -> bool:
        def job(z0: int, z1: int) -> Stats:
            n = z1 - z0
            scratch = self._scratch()
            total = self.sum[:, z0:z1]
            fold = total if first else scratch.fold[:, :n]
            reader.read_into(z0, z1, fold)
            if self.logits:
                low, high = float(fold.min()), float(fold.max())
                stats = (low, high, high)
                np_softmax(fold, scratch.voxels[:n])
            else:
                sums = np.sum(fold, axis=0, out=scratch.voxels[:n])
                stats = (float(fold.min()), float(sums.min()), float(sums.max()))
            if self.entropy_sum is not None:
                if first:
                    np_entropy(fold, self.entropy_sum[z0:z1], scratch.work[:, :n])
                else:
                    np_entropy(fold, scratch.entropy[:n], scratch.work[:, :n])
                    np.add(
                        self.entropy_sum[z0:z1], scratch.entropy[:n], out=self.entropy_sum[z0:z1]
                    )
            if not first:
                np.add(total, fold, out=total)
            return stats

        return stats_ok(self._map(job), self.logits)

    def mean(self, n_folds: int) -> np.ndarray:
        return self.sum * np.float32(1.0 / n_folds)

    def finish(self, n_folds: int, on_device: bool) -> tuple[Any, Any]:
        c = self.shape[0]
        inv_m = np.float32(1.0 / n_folds)

        def job(z0: int, z1: int) -> None:
            n = z1 - z0
            scratch = self._scratch()
            p = self.sum[:, z0:z1]
            if n_folds > 1:
                np.multiply(p, inv_m, out=p)
            u = scratch.entropy[:n]
            np_entropy(p, u, scratch.work[:, :n])
            if self.entropy_sum is not None:
                h = self.entropy_sum[z0:z1]
                np.multiply(h, -inv_m, out=h)
                np.add(h, u, out=h)
                np.maximum(h, 0.0, out=h)
            for k in range(c - 1):
                np.multiply(p[k + 1], u, out=p[k])
            p[c - 1] = u

        self._map(job)
        if on_device:
            torch = import_torch()
            mi = None if self.entropy_sum is None else torch.from_numpy(self.entropy_sum)
            return torch.from_numpy(self.sum), mi
        return self.sum, self.entropy_sum
