"""The numbers of a ClaSP PE query: the beta schedule, the budget split and per-volume caps.

Fractions such as ``alpha = 0.66`` are used as the decimals they are written as: ``alpha``
enters through ``Fraction(repr(alpha))``, so ``floor(50 * (1 - 0.66))`` is 17, as the
formula says, and not the 16 that binary floating point gives.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from clasp_rs.strategies.streams import CODE_REMAINDER, order_by_draws

__all__ = ["as_fraction", "beta_schedule", "floor_share", "split_quotas", "volume_caps"]


def as_fraction(value: float, what: str) -> Fraction:
    """``value`` in [0, 1] as the exact decimal it is written as."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")
    return Fraction(repr(float(value)))


def floor_share(share: Fraction, n: int) -> int:
    """``floor(share * n)`` in exact arithmetic."""
    return math.floor(share * n)


def beta_schedule(loop: int, n_loops: int, beta0: float = 1.0, beta_max: float = 100.0) -> float:
    """The power-sampling exponent of the query made after training loop ``loop``.

    ``beta(t) = beta0 * (beta_max / beta0) ** (t / (n_loops - 1))`` for
    ``t = 0 .. n_loops - 2``; queries past the schedule keep ``beta_max``. With the defaults
    and ``n_loops = 5`` the queries use 1, 3.162, 10, 31.62, then 100.

    Raises:
        ValueError: ``loop < 0``, ``n_loops < 1`` or a beta that is not finite and > 0.
    """
    if isinstance(loop, bool) or not isinstance(loop, numbers.Integral) or loop < 0:
        raise ValueError(f"loop must be an integer >= 0, got {loop!r}")
    if isinstance(n_loops, bool) or not isinstance(n_loops, numbers.Integral) or n_loops < 1:
        raise ValueError(f"n_loops must be an integer >= 1, got {n_loops!r}")
    for name, beta in (("beta0", beta0), ("beta_max", beta_max)):
        if not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {beta!r}")
    if loop <= n_loops - 2:
        return float(beta0 * (beta_max / beta0) ** (loop / (n_loops - 1)))
    return float(beta_max)


def split_quotas(
    n: int, alpha: Fraction, n_fg: int, *, seed: int, loop: int, shuffle: bool
) -> dict[int, int]:
    """How many of ``n`` patches each stratum contributes to the query.

    ``n_fg = floor(alpha n)`` patches are shared equally by the ``n_fg`` foreground classes
    1..F (``floor(alpha n) // F`` each); the remainder goes one each to classes drawn by the
    seeded generator (stream code -3), or to the lowest labels when ``shuffle`` is False.
    Stratum -1 gets ``n - floor(alpha n)``.

    Returns:
        ``{1: q_1, .., F: q_F, -1: q_u}``, summing to ``n``.
    """
    fg_total = floor_share(alpha, n)
    base, remainder = divmod(fg_total, n_fg)
    quotas = {c: base for c in range(1, n_fg + 1)}
    classes = list(range(1, n_fg + 1))
    if shuffle:
        classes = order_by_draws(classes, seed, "", loop, CODE_REMAINDER)
    for c in classes[:remainder]:
        quotas[c] += 1
    quotas[-1] = n - fg_total
    return quotas


def volume_caps(m: int, alpha: Fraction, n_fg: int) -> dict[int, int]:
    """Per-volume caps (nnActive): a foreground class takes at most
    ``max(floor(m alpha / (F + 1)), 1)`` patches of one volume, stratum -1 at most
    ``max(floor(m (1 - alpha)), 1)``."""
    fg = max(math.floor(m * alpha / (n_fg + 1)), 1)
    caps = dict.fromkeys(range(1, n_fg + 1), fg)
    caps[-1] = max(math.floor(m * (1 - alpha)), 1)
    return caps
