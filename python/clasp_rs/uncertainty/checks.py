"""What both kernel back ends check per slab: finite values, and for probabilities
non-negative values whose channel sums are within :data:`SUM_TOLERANCE` of 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SUM_TOLERANCE", "TINY", "Stats", "stats_ok"]

#: Largest accepted ``|sum_c p_c - 1|`` at any voxel of one fold.
SUM_TOLERANCE = 1e-3

#: ln() argument floor: a zero probability contributes 0 * ln(tiny) = 0, never 0 * -inf = NaN.
TINY = float(np.finfo(np.float32).tiny)

# Per-slab statistics: (min value, min channel sum, max channel sum) for probabilities,
# (min value, max value, max value) for logits. NaN propagates through min/max, so the check
# of these three numbers also rejects NaN.
Stats = tuple[float, float, float]


def stats_ok(stats: Sequence[Stats], logits: bool) -> bool:
    """Whether a fold's per-slab statistics show valid probabilities (or finite logits)."""
    table = np.asarray(stats, dtype=np.float64).reshape(-1, 3)
    if logits:
        return bool(np.isfinite(table).all())
    return bool(
        (table[:, 0].min() >= 0.0)
        & (table[:, 1].min() >= 1.0 - SUM_TOLERANCE)
        & (table[:, 2].max() <= 1.0 + SUM_TOLERANCE)
    )
