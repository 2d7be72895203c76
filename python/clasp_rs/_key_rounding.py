"""Ranking keys compared at float32 precision over float64's range.

Within one map the engine ranks candidates by float32 keys (see ``src/engine/ranking.rs``);
box-mean keys of maps beyond float32's range are scaled by a power of two per map first, so
candidates rank by their means rounded to 24 significant bits whatever the magnitude.
Merging the patches of several volumes must compare the same way, and a plain
``np.float32(key)`` would not: it overflows to inf above 3.4e38 and flushes to zero below
1.4e-45, so such volumes would tie.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["float32_precision"]


def float32_precision(keys: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Round float64 keys to float32's 24-bit significand (half to even), keeping float64's
    exponent.

    Equal to ``keys.astype(np.float32)`` for every key in float32's normal range (and 0,
    +-inf); finite keys beyond it stay finite and ordered instead of becoming inf or 0.

    Args:
        keys: float64 keys, any shape.

    Returns:
        float64 array of the same shape.
    """
    values = np.asarray(keys, dtype=np.float64)
    mantissa, exponent = np.frexp(values)
    # |mantissa| in [0.5, 1): times 2^24 its integer part has exactly 24 bits. A key within
    # half a float32 step of float64's maximum rounds up to inf, as float32 rounding would.
    with np.errstate(over="ignore"):
        return np.ldexp(np.rint(mantissa * 2.0**24), exponent - 24)
