"""Streaming accumulation of one case's folds (:class:`FoldAccumulator`) into its score maps
(:class:`CaseMaps`), validating every fold slab by slab.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from clasp_rs._optional import import_torch, torch_or_none
from clasp_rs.devices import TorchlessCpu, maps_device
from clasp_rs.exceptions import InvalidArgumentError, InvalidProbabilitiesError, InvalidTypeError
from clasp_rs.io.folds import FoldReader, open_fold
from clasp_rs.uncertainty.checks import SUM_TOLERANCE
from clasp_rs.uncertainty.numpy_backend import NumpySlabs
from clasp_rs.uncertainty.torch_backend import TorchSlabs, triton_kernels

if TYPE_CHECKING:
    import torch

__all__ = ["CaseMaps", "CpuKernels", "FoldAccumulator"]

# Elements (C * chunk_z * Y * X) of one slab when chunk_z is not given. On the CPU a slab and
# its few temporaries should stay in the caches; on a GPU slabs are large enough to amortise
# kernel launches while the temporaries stay at a few hundred MiB.
_CPU_SLAB_ELEMENTS = 1 << 18
_GPU_SLAB_ELEMENTS = 1 << 26

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
            raise InvalidTypeError(f"chunk_z must be an int or None, got {type(chunk_z).__name__}")
        if chunk_z is not None and chunk_z < 1:
            raise InvalidArgumentError(f"chunk_z must be >= 1, got {chunk_z}")
        if cpu_kernels not in ("numpy", "torch"):
            raise InvalidArgumentError(
                f"cpu_kernels must be 'numpy' or 'torch', got {cpu_kernels!r}"
            )
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
        self._slabs: NumpySlabs | TorchSlabs | None = None
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
            self._slabs = NumpySlabs(
                self.shape, chunk_z, self.num_threads, self.logits, self.with_mutual_information
            )
        else:
            # TorchlessCpu only ever pairs with the numpy kernels (checked in __init__).
            assert not isinstance(self.device, TorchlessCpu)
            self._slabs = TorchSlabs(
                self.shape,
                chunk_z,
                self.device,
                self.logits,
                self.with_mutual_information,
                fused=triton_kernels() if self.device.type == "cuda" else None,
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
