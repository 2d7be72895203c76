"""Uncertainty maps from an ensemble's class probabilities (numpy on the CPU; torch on CUDA).

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

Modules: this one (the functions below), :mod:`.accumulator` (:class:`FoldAccumulator`,
:class:`CaseMaps`), :mod:`.checks` (what a valid fold is), :mod:`.numpy_backend` and
:mod:`.torch_backend` (the slab kernels), :mod:`.triton_kernels` (fused CUDA kernels),
:mod:`.score_volumes` (maps as ``.npy`` files). Devices: :mod:`clasp_rs.devices`.

Array conventions: C-order, axis order ``(C, Z, Y, X)`` for probabilities, ``(Z, Y, X)`` for a
single map, ``(C_fg + 1, Z, Y, X)`` for the stacked score maps where ``C_fg = C - 1``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_rs.devices import TorchlessCpu, resolve_device
from clasp_rs.exceptions import InvalidProbabilitiesError
from clasp_rs.io.folds import split_folds
from clasp_rs.io.probabilities import PROBABILITIES_KEY
from clasp_rs.uncertainty.accumulator import CaseMaps, FoldAccumulator
from clasp_rs.uncertainty.checks import SUM_TOLERANCE
from clasp_rs.uncertainty.score_volumes import (
    score_volume_names,
    write_score_volume,
    write_score_volumes,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "PROBABILITIES_KEY",
    "SUM_TOLERANCE",
    "CaseMaps",
    "FoldAccumulator",
    "TorchlessCpu",
    "class_scores",
    "compute_case_maps",
    "mean_probabilities",
    "mutual_information",
    "predictive_entropy",
    "resolve_device",
    "score_volume_names",
    "write_score_volume",
    "write_score_volumes",
]


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
