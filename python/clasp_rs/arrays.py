"""Arrays as callers hand them in: numpy or torch, any float dtype, any device and layout.

* Score volumes ``(Z, Y, X)`` (:func:`score_array`): a torch tensor becomes a numpy array
  the engine can read — detached, moved to the CPU, and without a copy when it already is a
  CPU float16/float32/float64 tensor (bfloat16 is upcast to float32, exactly).
* Probabilities ``(C, Z, Y, X)`` / ``(M, C, Z, Y, X)`` of one volume
  (:func:`probabilities_for_maps`): float16 and bfloat16 are upcast to float32, checked to
  sum to 1 over C within ``C`` times their machine epsilon, and divided by their channel
  sum, so that softmax outputs computed in low precision pass the maps' sum check
  (:data:`clasp_rs.uncertainty.SUM_TOLERANCE`, meant for float32). float32 and float64 are
  passed on unchanged (the maps read them slab by slab).
* Layout problems (:func:`layout_hint`, :func:`score_layout_hint`) are explained by axis:
  "axis 0 has 48 entries, expected C first" for a channels-last array, "drop the channel
  axis" for a ``(1, Z, Y, X)`` score volume.

torch is never imported here for numpy inputs; tensors are recognised by their type's module.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from clasp_rs.exceptions import InvalidProbabilitiesError

__all__ = [
    "is_tensor",
    "layout_hint",
    "low_precision_tolerance",
    "probabilities_for_maps",
    "score_array",
    "score_layout_hint",
]

# Largest |sum_c p_c - 1| of float32 and float64 probabilities (the maps' own check).
_SUM_TOLERANCE = 1e-3
# Voxels looked at when guessing a layout: the guess runs only to explain an error.
_SAMPLE_VOXELS = 4096


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (checked by type, so torch is never imported)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def score_array(scores: Any) -> Any:
    """``scores`` as the engine reads it: numpy arrays and paths unchanged, a torch tensor
    as a numpy array.

    A CPU tensor of float16, float32 or float64 is shared, not copied (any strides); a
    bfloat16 tensor is upcast to float32 (exact); a tensor on another device is copied to
    the CPU. Other dtypes are passed on as numpy arrays for the engine's dtype check.
    """
    if not is_tensor(scores):
        return scores
    import torch

    tensor = scores.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.resolve_conj().resolve_neg().numpy()


def score_layout_hint(shape: tuple[int, ...]) -> str:
    """What to do about a score volume that is not 3-D (``""`` when nothing to suggest)."""
    if len(shape) == 4 and shape[0] == 1:
        return (
            "; axis 0 has 1 entry, a channel axis: pass scores[0] (Z, Y, X) (a MONAI/torch "
            "(1, Z, Y, X) map)"
        )
    if len(shape) == 5 and shape[0] >= 1 and shape[1] == 1:
        return (
            f"; this looks like a batch (B, 1, Z, Y, X) of {shape[0]} maps: pass each volume "
            "scores[b, 0] (Z, Y, X), or a dict name -> map to select_across_volumes"
        )
    if len(shape) == 4:
        return (
            f"; a 4-D array of {shape[0]} maps? pass one map (Z, Y, X) per call (or a dict "
            "name -> map to select_across_volumes); probabilities (C, Z, Y, X) go to "
            "clasp_rs.query_patches"
        )
    return ""


def _sample(array: Any, axis: int) -> np.ndarray:
    """float64 numpy ``(len(axis), k)``: ``array`` along ``axis`` (kept whole) at about
    ``_SAMPLE_VOXELS`` positions of a regular grid over the other axes. Only the sample is
    copied (and, for a tensor, moved to the CPU)."""
    shape = tuple(int(s) for s in array.shape)
    others = [a for a in range(len(shape)) if a != axis]
    per_axis = max(1, math.ceil(_SAMPLE_VOXELS ** (1 / max(1, len(others)))))
    index = tuple(
        slice(None) if a == axis else slice(None, None, max(1, shape[a] // per_axis))
        for a in range(len(shape))
    )
    if is_tensor(array):
        thinned = array.detach()[index].movedim(axis, 0).reshape(shape[axis], -1)
        return np.asarray(score_array(thinned.double()))
    return np.asarray(
        np.moveaxis(np.asarray(array)[index], axis, 0).reshape(shape[axis], -1), dtype=np.float64
    )


def _sums_to_one(array: Any, axis: int, tolerance: float) -> bool:
    sample = _sample(array, axis)
    if sample.shape[0] < 2 or not np.isfinite(sample).all() or (sample < 0).any():
        return False
    return bool(np.abs(sample.sum(axis=0) - 1.0).max() <= tolerance)


def layout_hint(probabilities: Any, *, offset: int = 0, tolerance: float = _SUM_TOLERANCE) -> str:
    """Explain a probability array whose classes are not on the expected axis.

    Args:
        probabilities: one volume, ``(C, Z, Y, X)`` or ``(M, C, Z, Y, X)`` expected.
        offset: axes before the volume's in the caller's array (1 for a batch), so that the
            message numbers axes as the caller sees them.
        tolerance: the accepted deviation of channel sums from 1.

    Returns:
        ``""`` when the class axis sums to 1 or no other axis does; otherwise a sentence
        naming the axis that looks wrong and what was expected.
    """
    shape = tuple(int(s) for s in getattr(probabilities, "shape", ()))
    if len(shape) not in (4, 5) or min(shape, default=0) < 1:
        return ""
    class_axis = len(shape) - 4
    if _sums_to_one(probabilities, class_axis, tolerance):
        return ""
    for axis in range(len(shape) - 1, class_axis, -1):
        if _sums_to_one(probabilities, axis, tolerance):
            layout = "(C, Z, Y, X)" if class_axis == 0 else "(M, C, Z, Y, X)"
            if offset:
                layout = layout.replace("(", "(B, ")
            return (
                f"axis {class_axis + offset} has {shape[class_axis]} entries, expected C "
                f"(classes) first in {layout}; the values sum to 1 over axis {axis + offset} "
                f"({shape[axis]} entries) instead, so the classes look to be there "
                f"(channels-last?): move that axis first, e.g. np.moveaxis(p, {axis + offset}, "
                f"{class_axis + offset}) or p.movedim({axis + offset}, {class_axis + offset})"
            )
    return ""


def low_precision_tolerance(n_classes: int, eps: float) -> float:
    """Accepted ``|sum_c p_c - 1|`` for probabilities rounded to a format of machine epsilon
    ``eps``: each of the ``C`` values may be off by ``eps`` relative (rounding, and a softmax
    computed in that format), never less than the float32 check."""
    return max(_SUM_TOLERANCE, n_classes * eps)


def _low_precision_name(value: Any) -> tuple[str, float] | None:
    """``(dtype name, eps)`` of a float16/bfloat16 array or tensor, else None."""
    if is_tensor(value):
        import torch

        if value.dtype in (torch.float16, torch.bfloat16):
            return str(value.dtype).removeprefix("torch."), float(torch.finfo(value.dtype).eps)
        return None
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return "float16", float(np.finfo(np.float16).eps)
    return None


def probabilities_for_maps(value: Any, label: str, *, logits: bool, offset: int = 0) -> Any:
    """One volume's probabilities as the maps take them (see the module docstring).

    Args:
        value: ``(C, Z, Y, X)`` or ``(M, C, Z, Y, X)`` numpy array or torch tensor (any
            device), or a list of ``(C, Z, Y, X)`` folds (each converted), or anything else
            the maps accept (paths), returned as it is.
        label: how messages name the volume (``volume 'case_000'``).
        logits: the values are logits (softmax is applied by the maps; no sum check here).
        offset: axes before this volume's in the caller's array (for messages).

    Returns:
        ``value`` itself (float32/float64, or logits), or a new float32 array (for numpy and
        CPU tensor inputs) or tensor (on the input's GPU), renormalised over C.

    Raises:
        InvalidProbabilitiesError: low-precision probabilities that are negative, not finite,
            or whose channel sums are off by more than :func:`low_precision_tolerance`
            (with the axis that looks wrong when another axis sums to 1).
    """
    if isinstance(value, (list, tuple)):
        return [
            probabilities_for_maps(v, f"{label} fold {i}", logits=logits)
            for i, v in enumerate(value)
        ]
    if is_tensor(value):
        value = value.detach()
    low = _low_precision_name(value)
    if low is None or logits or value.ndim not in (4, 5):
        return value
    name, eps = low
    class_axis = value.ndim - 4
    n_classes = int(value.shape[class_axis])
    tolerance = low_precision_tolerance(n_classes, eps)
    # NaN and infinities reach the channel sums, so checking the sums finds them. On the CPU
    # numpy's reductions beat torch's (as for the maps); a GPU tensor stays where it is.
    if is_tensor(value) and value.device.type == "cpu":
        value = value.float().numpy()
    if is_tensor(value):
        p = value.float()
        sums = p.sum(dim=class_axis, keepdim=True)
        finite = bool(sums.isfinite().all())
        negative = finite and float(p.min()) < 0
        deviation = float((sums - 1).abs().max()) if finite else float("inf")
    else:
        p = value.astype(np.float32)
        sums = p.sum(axis=class_axis, keepdims=True)
        finite = bool(np.isfinite(sums).all())
        negative = finite and float(p.min()) < 0
        deviation = float(np.abs(sums - 1).max()) if finite else float("inf")
    if not finite or negative or deviation > tolerance:
        problem = (
            "NaN or infinite values"
            if not finite
            else "negative values"
            if negative
            else f"channel sums off by up to {deviation:.3g}"
        )
        hint = layout_hint(value, offset=offset, tolerance=tolerance)
        raise InvalidProbabilitiesError(
            f"{label}: invalid {name} probabilities: {problem}; expected finite, non-negative "
            f"values summing to 1 over C within {tolerance:.3g} (C x eps of {name})"
            + (f"; {hint}" if hint else "; pass logits=True for logits")
        )
    p /= sums  # p is a new float32 copy
    return p
