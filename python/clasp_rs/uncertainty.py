"""Uncertainty maps from an ensemble's class probabilities (torch; CUDA when present).

From per-fold probabilities ``p_m`` of M ensemble members (nnU-Net folds), each
``(C, Z, Y, X)`` with channel 0 the background, this module computes

* the fold mean ``p = mean_m p_m`` (softmax outputs are averaged, not logits),
* the predictive entropy ``u = -sum_c p_c ln p_c`` (natural log, ``0 ln 0 = 0``),
* the class maps ``u_c = p_c * u`` of the foreground classes ``c = 1 .. C-1``,
* the mutual information (BALD) ``H[p] - mean_m H[p_m]``, clipped at 0.

Folds are streamed one at a time (:class:`FoldAccumulator`): only the running sum of the
probabilities, ``C * Z * Y * X`` float32 values (plus ``Z * Y * X`` for the summed per-fold
entropies when mutual information is wanted), is held; never all M folds. Work is done in
slabs of ``chunk_z`` slices along Z, so temporaries stay small: cache-sized on the CPU,
bounded on a GPU. All math is float32; results are never NaN.

On a CUDA device the slab kernels are torch operations. On the CPU they are numpy ufuncs run
by a small thread pool over slabs: numpy's SIMD ``log`` is several times faster than torch's
on CPUs, and slab-level threads keep working when the cores are shared, where OpenMP's
barriers stall.

torch is imported when first needed, so ``import clasp_rs.uncertainty`` works without it.

Array conventions: C-order, axis order ``(C, Z, Y, X)`` for probabilities, ``(Z, Y, X)`` for a
single map, ``(C_fg + 1, Z, Y, X)`` for the stacked score maps where ``C_fg = C - 1``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clasp_rs._atomic import atomic_path
from clasp_rs._optional import import_torch, torch_or_none
from clasp_rs.devices import TorchlessCpu, maps_device, resolve_device
from clasp_rs.exceptions import InvalidProbabilitiesError, InvalidScoresError
from clasp_rs.io.folds import FoldReader, open_fold, split_folds
from clasp_rs.io.probabilities import PROBABILITIES_KEY

if TYPE_CHECKING:
    import torch

__all__ = [
    "PROBABILITIES_KEY",
    "SUM_TOLERANCE",
    "CaseMaps",
    "FoldAccumulator",
    "class_scores",
    "compute_case_maps",
    "mean_probabilities",
    "mutual_information",
    "predictive_entropy",
    "TorchlessCpu",
    "resolve_device",
    "score_volume_names",
    "write_score_volume",
    "write_score_volumes",
]

#: Largest accepted ``|sum_c p_c - 1|`` at any voxel of one fold.
SUM_TOLERANCE = 1e-3

# Elements (C * chunk_z * Y * X) of one slab when chunk_z is not given. On the CPU a slab and
# its few temporaries should stay in the caches; on a GPU slabs are large enough to amortise
# kernel launches while the temporaries stay at a few hundred MiB.
_CPU_SLAB_ELEMENTS = 1 << 18
_GPU_SLAB_ELEMENTS = 1 << 26

# ln() argument floor: a zero probability contributes 0 * ln(tiny) = 0, never 0 * -inf = NaN.
_TINY = float(np.finfo(np.float32).tiny)

CpuKernels = Literal["numpy", "torch"]


@dataclass(frozen=True)
class CaseMaps:
    """Score maps of one case, on the CPU.

    Attributes:
        scores: float32 ``(C_fg + 1, Z, Y, X)`` (numpy; a torch tensor on the compute device
            after ``finish(on_device=True)``): index ``k < C_fg`` is ``u_{k+1} = p_{k+1} u``
            (foreground labels 1 .. C-1 in channel order), the last index is ``u`` (stratum -1).
        mutual_information: float32 ``(Z, Y, X)``, or None when not requested.
        n_folds: number of folds averaged.
    """

    scores: Any
    mutual_information: Any
    n_folds: int


# --------------------------------------------------------------------------------------------
# Slab kernels. Both back ends keep the running sums, validate and add a fold slab by slab,
# and finally turn the sum into the score maps in place (channel k receives p_{k+1} u, which
# reads channel k + 1 before that channel is itself overwritten; the last channel receives u).
# --------------------------------------------------------------------------------------------

# Per-slab statistics: (min value, min channel sum, max channel sum) for probabilities,
# (min value, max value, max value) for logits. NaN propagates through min/max, so the check
# of these three numbers also rejects NaN.
_Stats = tuple[float, float, float]


def _stats_ok(stats: Sequence[_Stats], logits: bool) -> bool:
    table = np.asarray(stats, dtype=np.float64).reshape(-1, 3)
    if logits:
        return bool(np.isfinite(table).all())
    return bool(
        (table[:, 0].min() >= 0.0)
        & (table[:, 1].min() >= 1.0 - SUM_TOLERANCE)
        & (table[:, 2].max() <= 1.0 + SUM_TOLERANCE)
    )


def _np_entropy(p: np.ndarray, out: np.ndarray, work: np.ndarray) -> None:
    """``out = max(0, -sum_c p_c ln p_c)``; ``p`` float32 ``(C, n, Y, X)``, ``out`` ``(n, Y, X)``.

    Clipped at 0 because channel sums up to ``1 + SUM_TOLERANCE`` can make it slightly
    negative. ``work`` is scratch of ``p``'s shape.
    """
    np.maximum(p, _TINY, out=work)
    np.log(work, out=work)
    np.multiply(work, p, out=work)
    np.sum(work, axis=0, out=out)
    np.negative(out, out=out)
    np.maximum(out, 0.0, out=out)


def _np_softmax(s: np.ndarray, scratch: np.ndarray) -> None:
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


class _NumpySlabs:
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
        def job(z0: int, z1: int) -> _Stats:
            n = z1 - z0
            scratch = self._scratch()
            total = self.sum[:, z0:z1]
            fold = total if first else scratch.fold[:, :n]
            reader.read_into(z0, z1, fold)
            if self.logits:
                low, high = float(fold.min()), float(fold.max())
                stats = (low, high, high)
                _np_softmax(fold, scratch.voxels[:n])
            else:
                sums = np.sum(fold, axis=0, out=scratch.voxels[:n])
                stats = (float(fold.min()), float(sums.min()), float(sums.max()))
            if self.entropy_sum is not None:
                if first:
                    _np_entropy(fold, self.entropy_sum[z0:z1], scratch.work[:, :n])
                else:
                    _np_entropy(fold, scratch.entropy[:n], scratch.work[:, :n])
                    np.add(
                        self.entropy_sum[z0:z1], scratch.entropy[:n], out=self.entropy_sum[z0:z1]
                    )
            if not first:
                np.add(total, fold, out=total)
            return stats

        return _stats_ok(self._map(job), self.logits)

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
            _np_entropy(p, u, scratch.work[:, :n])
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


def _triton_kernels() -> Any | None:
    """The fused Triton kernels, or None when Triton is missing or disabled."""
    if os.environ.get("CLASP_RS_NO_TRITON", "") not in ("", "0"):
        return None
    try:
        from clasp_rs import _triton_kernels
    except ImportError:
        return None
    return _triton_kernels


class _TorchSlabs:
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
        torch.clamp(p, min=_TINY, out=work)
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


# --------------------------------------------------------------------------------------------
# Streaming accumulation
# --------------------------------------------------------------------------------------------


class FoldAccumulator:
    """Streams the folds of one case one at a time and keeps only their running sums.

    Memory: the sum of probabilities, float32 ``(C, Z, Y, X)``, on the compute device (plus
    float32 ``(Z, Y, X)`` for the summed per-fold entropies when ``with_mutual_information``),
    and a few slabs of ``chunk_z`` Z slices per thread. :meth:`finish` turns the sum into the
    score maps in place, so on the CPU the result costs no extra memory.

    Every fold is validated slab by slab before it is added: 4-D, the same shape as the first
    fold, finite, and for probabilities non-negative with channel sums within
    :data:`SUM_TOLERANCE` of 1. A fold that fails raises
    :class:`~clasp_rs.exceptions.InvalidProbabilitiesError` naming the fold, the problem and how
    many values or voxels have it; the accumulator is unusable afterwards (part of the fold may
    already be summed).

    Example:
        >>> acc = FoldAccumulator(device="cpu")
        >>> for path in ["fold_0/case.npz", "fold_1/case.npz"]:  # doctest: +SKIP
        ...     acc.add(path)
        >>> scores = acc.finish().scores  # float32 (C_fg + 1, Z, Y, X)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        logits: bool = False,
        device: str | torch.device = "auto",
        with_mutual_information: bool = False,
        chunk_z: int | None = None,
        num_threads: int | None = None,
        cpu_kernels: CpuKernels = "numpy",
    ) -> None:
        """Create an empty accumulator.

        Args:
            logits: the folds are logits; each is softmaxed over C (float32) before averaging.
            device: where to compute (see :func:`resolve_device`).
            with_mutual_information: also sum the per-fold entropies, for
                :attr:`CaseMaps.mutual_information`.
            chunk_z: Z slices per slab; None picks about 2**18 elements per slab on the CPU
                (cache-sized) and 2**26 on a GPU. Larger slabs use more temporary memory.
            num_threads: CPU threads working on slabs; None uses ``torch.get_num_threads()``.
            cpu_kernels: on the CPU, run the slab kernels with ``"numpy"`` (faster) or
                ``"torch"`` (the CUDA code path, executed on the CPU).
        """
        if chunk_z is not None and (isinstance(chunk_z, bool) or not isinstance(chunk_z, int)):
            raise TypeError(f"chunk_z must be an int or None, got {type(chunk_z).__name__}")
        if chunk_z is not None and chunk_z < 1:
            raise ValueError(f"chunk_z must be >= 1, got {chunk_z}")
        if cpu_kernels not in ("numpy", "torch"):
            raise ValueError(f"cpu_kernels must be 'numpy' or 'torch', got {cpu_kernels!r}")
        self.device = maps_device(device)
        if isinstance(self.device, TorchlessCpu) and cpu_kernels == "torch":
            import_torch()  # raises, naming the extra to install
        self.logits = logits
        self.with_mutual_information = with_mutual_information
        torch = torch_or_none()
        if num_threads is None:
            num_threads = torch.get_num_threads() if torch is not None else os.cpu_count() or 1
        self.num_threads = num_threads
        self._chunk_z_request = chunk_z
        self._cpu_kernels = cpu_kernels
        self.n_folds = 0
        self.shape: tuple[int, int, int, int] | None = None
        self._slabs: _NumpySlabs | _TorchSlabs | None = None
        self._broken: str | None = None
        self._finished = False

    @property
    def chunk_z(self) -> int | None:
        """Z slices per slab (None until the first fold fixes the shape)."""
        return None if self._slabs is None else self._slabs.chunk_z

    def add(self, fold: Any, *, name: str | None = None) -> None:
        """Validate one fold and add it to the running sums.

        Args:
            fold: float16/32/64 ``(C, Z, Y, X)`` numpy array or torch tensor (any device), or
                the path of a ``.npy`` file or of an nnU-Net ``<case>.npz`` export (key
                ``probabilities``).
            name: how error messages call this fold (default ``fold <index>``).

        Raises:
            InvalidProbabilitiesError: not 4-D, fewer than 2 channels, a shape differing from
                the first fold's, non-finite values, negative values or channel sums off by
                more than :data:`SUM_TOLERANCE` (the latter two for probabilities only); a
                ``.npz`` without the ``probabilities`` key.
            FileNotFoundError: a path does not exist.
            NpyFormatError: a file is not a readable ``.npy`` / ``.npz``.
            RuntimeError: the accumulator is finished or a previous fold was rejected.
        """
        self._check_usable()
        label = name or f"fold {self.n_folds}"
        reader = open_fold(fold, label)
        try:
            self._check_shape(reader)
            if self._slabs is None:
                self._allocate(reader.shape)
            assert self._slabs is not None
            if not self._slabs.accumulate(reader, first=self.n_folds == 0):
                raise InvalidProbabilitiesError(self._diagnose(reader))
        except InvalidProbabilitiesError as err:
            if self._slabs is not None:
                self._broken = str(err)
            raise
        finally:
            reader.close()
        self.n_folds += 1

    def mean_probabilities(self) -> np.ndarray:
        """The fold mean so far, float32 ``(C, Z, Y, X)`` (a copy; accumulation may go on)."""
        self._check_usable()
        self._require_folds()
        assert self._slabs is not None
        return self._slabs.mean(self.n_folds)

    def finish(self, *, on_device: bool = False) -> CaseMaps:
        """Compute the score maps (and mutual information) and end the accumulation.

        Args:
            on_device: return float32 torch tensors on the compute device instead of numpy
                arrays on the CPU (no copy back; for further GPU work).

        Returns:
            :class:`CaseMaps` with float32 numpy arrays (torch tensors with ``on_device``).
            On the CPU, and with ``on_device``, the scores reuse the sum's memory.

        Raises:
            InvalidProbabilitiesError: no folds were added, or mutual information was
                requested with fewer than two folds.
        """
        self._check_usable()
        self._require_folds()
        if self.with_mutual_information and self.n_folds < 2:
            raise InvalidProbabilitiesError(
                "mutual information needs the probabilities of at least 2 folds, got "
                f"{self.n_folds}"
            )
        assert self._slabs is not None
        scores, mi = self._slabs.finish(self.n_folds, on_device)
        self._finished = True
        self._slabs = None
        return CaseMaps(scores=scores, mutual_information=mi, n_folds=self.n_folds)

    def _check_usable(self) -> None:
        if self._finished:
            raise RuntimeError("this FoldAccumulator is finished; create a new one")
        if self._broken is not None:
            raise RuntimeError(
                f"this FoldAccumulator is unusable: an earlier fold was rejected ({self._broken})"
            )

    def _require_folds(self) -> None:
        if self.n_folds == 0:
            raise InvalidProbabilitiesError("no folds were added")

    def _check_shape(self, reader: FoldReader) -> None:
        shape = reader.shape
        if len(shape) != 4:
            raise InvalidProbabilitiesError(
                f"{reader.label}: expected a 4-D (C, Z, Y, X) array, got {len(shape)}-D shape "
                f"{shape}"
            )
        if min(shape) < 1:
            raise InvalidProbabilitiesError(
                f"{reader.label}: empty array of shape {shape}; expected (C, Z, Y, X) with every "
                "axis >= 1"
            )
        if shape[0] < 2:
            raise InvalidProbabilitiesError(
                f"{reader.label}: {shape[0]} channel; expected C >= 2 on axis 0 of (C, Z, Y, X) "
                "(background and at least one foreground class)"
            )
        if self.shape is not None and shape != self.shape:
            raise InvalidProbabilitiesError(
                f"{reader.label}: shape {shape} differs from the first fold's shape "
                f"{self.shape}; all folds of a case must have the same (C, Z, Y, X) shape"
            )

    def _allocate(self, shape: tuple[int, ...]) -> None:
        c, z, y, x = shape
        self.shape = (c, z, y, x)
        if self._chunk_z_request is not None:
            chunk_z = self._chunk_z_request
        else:
            target = _CPU_SLAB_ELEMENTS if self.device.type == "cpu" else _GPU_SLAB_ELEMENTS
            chunk_z = target // (c * y * x)
        chunk_z = max(1, min(z, chunk_z))
        if self.device.type == "cpu" and self._cpu_kernels == "numpy":
            self._slabs = _NumpySlabs(
                self.shape, chunk_z, self.num_threads, self.logits, self.with_mutual_information
            )
        else:
            # TorchlessCpu only ever pairs with the numpy kernels (checked in __init__).
            assert not isinstance(self.device, TorchlessCpu)
            self._slabs = _TorchSlabs(
                self.shape,
                chunk_z,
                self.device,
                self.logits,
                self.with_mutual_information,
                fused=_triton_kernels() if self.device.type == "cuda" else None,
            )

    def _diagnose(self, reader: FoldReader) -> str:
        """Describe everything wrong with a rejected fold (re-reads it slab by slab)."""
        assert self.shape is not None and self._slabs is not None
        c, z, y, x = self.shape
        chunk_z = self._slabs.chunk_z
        nonfinite = negative = off = 0
        min_value = np.inf
        worst_deviation, worst_sum, worst_at = -1.0, 1.0, (0, 0, 0)
        buffer = np.empty((c, chunk_z, y, x), dtype=np.float32)
        with np.errstate(all="ignore"):
            for z0 in range(0, z, chunk_z):
                n = min(chunk_z, z - z0)
                slab = buffer[:, :n]
                reader.read_into(z0, z0 + n, slab)
                finite = np.isfinite(slab)
                nonfinite += int(finite.size - np.count_nonzero(finite))
                if self.logits:
                    continue
                negative += int(np.count_nonzero(slab < 0))
                if finite.any():
                    min_value = min(min_value, float(slab[finite].min()))
                sums = slab.sum(axis=0)
                deviation = np.where(np.isfinite(sums), np.abs(sums - 1.0), np.inf)
                off += int(np.count_nonzero(~(deviation <= SUM_TOLERANCE)))
                index = int(np.argmax(deviation))
                if deviation.flat[index] > worst_deviation:
                    worst_deviation = float(deviation.flat[index])
                    worst_sum = float(sums.flat[index])
                    zz, yy, xx = np.unravel_index(index, sums.shape)
                    worst_at = (z0 + int(zz), int(yy), int(xx))
        problems = []
        if nonfinite:
            problems.append(f"{nonfinite} of {c * z * y * x} values are NaN or infinite")
        if negative:
            problems.append(
                f"{negative} of {c * z * y * x} values are negative (smallest {min_value:.6g})"
            )
        if off:
            problems.append(
                f"{off} of {z * y * x} voxels have channel sums outside 1 +/- {SUM_TOLERANCE:g} "
                f"(worst {worst_sum:.6g} at (z, y, x) = {worst_at})"
            )
        if not problems:  # only if the file changed between the two reads
            problems.append("the values changed while being read")
        if self.logits:
            expected = "finite logits"
        else:
            expected = (
                "finite, non-negative probabilities summing to 1 over axis 0 (C) of "
                "(C, Z, Y, X); pass logits=True for logits"
            )
        kind = "logits" if self.logits else "probabilities"
        return f"{reader.label}: invalid {kind}: {'; '.join(problems)}; expected {expected}"


# --------------------------------------------------------------------------------------------
# Functional API
# --------------------------------------------------------------------------------------------


def compute_case_maps(
    fold_sources: Any,
    *,
    logits: bool = False,
    device: str | torch.device = "auto",
    with_mutual_information: bool = False,
    chunk_z: int | None = None,
    num_threads: int | None = None,
) -> CaseMaps:
    """Stream the folds of one case and return its score maps.

    Args:
        fold_sources: a sequence of folds (numpy arrays, torch tensors or paths of ``.npy`` /
            nnU-Net ``.npz`` files, each ``(C, Z, Y, X)``), one ``(M, C, Z, Y, X)`` array or
            tensor, or a single ``(C, Z, Y, X)`` fold mean (array, tensor or path).
        logits: the folds are logits (softmaxed per fold over C).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        with_mutual_information: also compute BALD's mutual information (needs >= 2 folds).
        chunk_z: Z slices per slab (see :class:`FoldAccumulator`).
        num_threads: CPU threads (see :class:`FoldAccumulator`).

    Returns:
        :class:`CaseMaps`: scores float32 ``(C_fg + 1, Z, Y, X)`` and, when requested, the
        mutual information float32 ``(Z, Y, X)``, both on the CPU.
    """
    return _accumulate(
        fold_sources,
        "compute_case_maps",
        logits=logits,
        device=device,
        with_mutual_information=with_mutual_information,
        chunk_z=chunk_z,
        num_threads=num_threads,
    ).finish()


def _accumulate(folds: Any, caller: str, **options: Any) -> FoldAccumulator:
    """Streams every fold of ``folds`` into a new :class:`FoldAccumulator`."""
    sources, _ = split_folds(folds, caller)
    acc = FoldAccumulator(**options)
    for index, source in enumerate(sources):
        acc.add(source, name=f"fold {index}")
    return acc


def mean_probabilities(
    folds: Any,
    *,
    logits: bool = False,
    device: str | torch.device = "auto",
    chunk_z: int | None = None,
) -> np.ndarray:
    """Fold mean of the probabilities.

    Args:
        folds: ``(M, C, Z, Y, X)``, a sequence of ``(C, Z, Y, X)`` folds (arrays, tensors or
            paths), or one ``(C, Z, Y, X)`` mean (validated and returned as float32).
        logits: the folds are logits (softmaxed per fold over C first).
        device: compute device.
        chunk_z: Z slices per slab.

    Returns:
        float32 ``(C, Z, Y, X)`` numpy array.
    """
    return _accumulate(
        folds, "mean_probabilities", logits=logits, device=device, chunk_z=chunk_z
    ).mean_probabilities()


def class_scores(
    probabilities: Any,
    *,
    logits: bool = False,
    device: str | torch.device = "auto",
    chunk_z: int | None = None,
) -> np.ndarray:
    """Score maps of ClaSP PE: ``u_c = p_c u`` for every foreground class, then ``u``.

    Args:
        probabilities: ``(C, Z, Y, X)`` fold mean, ``(M, C, Z, Y, X)`` folds, or a sequence
            of folds / paths (averaged first).
        logits: the input is logits (softmaxed per fold over C).
        device: compute device.
        chunk_z: Z slices per slab.

    Returns:
        float32 ``(C_fg + 1, Z, Y, X)``: index ``k < C_fg`` is ``u_{k+1}`` (foreground labels
        1 .. C-1 in channel order), the last index is ``u`` (stratum -1).
    """
    return compute_case_maps(probabilities, logits=logits, device=device, chunk_z=chunk_z).scores


def predictive_entropy(
    probabilities: Any,
    *,
    logits: bool = False,
    device: str | torch.device = "auto",
    chunk_z: int | None = None,
) -> np.ndarray:
    """Predictive entropy ``u = -sum_c p_c ln p_c`` of the fold mean (natural log, 0 ln 0 = 0).

    Args:
        probabilities: as for :func:`class_scores`.
        logits: the input is logits.
        device: compute device.
        chunk_z: Z slices per slab.

    Returns:
        float32 ``(Z, Y, X)``, in ``[0, ln C]``.
    """
    scores = class_scores(probabilities, logits=logits, device=device, chunk_z=chunk_z)
    return np.ascontiguousarray(scores[-1])


def mutual_information(
    folds: Any,
    *,
    logits: bool = False,
    device: str | torch.device = "auto",
    chunk_z: int | None = None,
) -> np.ndarray:
    """BALD's mutual information ``H[mean_m p_m] - mean_m H[p_m]``, clipped at 0.

    Args:
        folds: ``(M, C, Z, Y, X)`` or a sequence of at least two ``(C, Z, Y, X)`` folds.
        logits: the folds are logits.
        device: compute device.
        chunk_z: Z slices per slab.

    Returns:
        float32 ``(Z, Y, X)``.

    Raises:
        InvalidProbabilitiesError: a single ``(C, Z, Y, X)`` array was given (the per-fold
            probabilities are needed), or fewer than two folds.
    """
    sources, single = split_folds(folds, "mutual_information")
    if single:
        raise InvalidProbabilitiesError(
            "mutual information needs the per-fold probabilities (M, C, Z, Y, X) or a sequence "
            "of folds; got a single (C, Z, Y, X) array"
        )
    maps = compute_case_maps(
        sources, logits=logits, device=device, with_mutual_information=True, chunk_z=chunk_z
    )
    assert maps.mutual_information is not None
    return maps.mutual_information


# --------------------------------------------------------------------------------------------
# Score volumes on disk
# --------------------------------------------------------------------------------------------

ScoreDtype = Literal["float32", "float16"]
_WRITE_CHUNK_ELEMENTS = 1 << 22


def score_volume_names(case: str, n_classes: int) -> list[str]:
    """File names of a case's score volumes, in the order of :attr:`CaseMaps.scores`.

    ``<case>_c1.npy`` … ``<case>_c{C-1}.npy`` for the foreground classes, then
    ``<case>_all.npy`` for the entropy ``u`` (stratum -1).

    Args:
        case: case name (no extension).
        n_classes: C, channels including background.
    """
    return [f"{case}_c{label}.npy" for label in range(1, n_classes)] + [f"{case}_all.npy"]


def write_score_volume(
    volume: np.ndarray, path: str | os.PathLike[str], dtype: str = "float32"
) -> Path:
    """Write one ``(Z, Y, X)`` score map as a C-order ``.npy`` file, atomically.

    The data go to a temporary file in the same folder, which then replaces ``path``; a
    reader never sees a partial file.

    Args:
        volume: ``(Z, Y, X)`` array (numpy or torch), finite and non-negative.
        path: destination ``.npy`` path.
        dtype: ``"float32"`` or ``"float16"``.

    Returns:
        The written path.

    Raises:
        InvalidScoresError: wrong dimensionality, or values that are not finite and
            non-negative in the chosen dtype.
        ValueError: unsupported dtype.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"unsupported score dtype {dtype!r}: expected 'float32' or 'float16'")
    array = volume.detach().cpu().numpy() if hasattr(volume, "detach") else np.asarray(volume)
    path = Path(path)
    if array.ndim != 3:
        raise InvalidScoresError(
            f"{path.name}: a score volume must be 3-D (Z, Y, X), got shape {array.shape}"
        )
    with atomic_path(path, overwrite=True) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(dtype), shape=array.shape)
        try:
            step = max(1, _WRITE_CHUNK_ELEMENTS // max(1, array.shape[1] * array.shape[2]))
            for z0 in range(0, array.shape[0], step):
                block = out[z0 : z0 + step]
                with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                    np.copyto(block, array[z0 : z0 + step], casting="unsafe")
                if not (np.isfinite(block).all() and (block >= 0).all()):
                    bad = int(np.count_nonzero(~(np.isfinite(block) & (block >= 0))))
                    raise InvalidScoresError(
                        f"{path.name}: {bad} values in Z slices {z0}..{z0 + len(block) - 1} are "
                        f"not finite and non-negative in {dtype}; expected scores >= 0"
                    )
            out.flush()
        finally:
            del out
    return path


def write_score_volumes(
    maps: Any,
    folder: str | os.PathLike[str],
    case: str,
    dtype: ScoreDtype = "float32",
) -> list[Path]:
    """Write a case's score maps as one ``(Z, Y, X)`` ``.npy`` per map, for the engine to
    memory-map.

    Args:
        maps: float ``(C_fg + 1, Z, Y, X)`` as returned by :func:`class_scores` /
            :attr:`CaseMaps.scores`.
        folder: destination folder (created when missing).
        case: case name; files are named by :func:`score_volume_names`.
        dtype: ``"float32"`` or ``"float16"`` on disk (entropy is at most ln C, far below
            float16's maximum).

    Returns:
        Paths in the order of ``maps``: ``<case>_c1.npy`` … ``<case>_all.npy``.
    """
    array = maps.detach().cpu().numpy() if hasattr(maps, "detach") else np.asarray(maps)
    if array.ndim != 4 or array.shape[0] < 2:
        raise InvalidScoresError(
            f"score maps of {case!r} must be (C_fg + 1, Z, Y, X) with C_fg >= 1, got shape "
            f"{array.shape}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = score_volume_names(case, array.shape[0])
    return [write_score_volume(array[k], folder / name, dtype) for k, name in enumerate(names)]
