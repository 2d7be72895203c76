"""The numbers of a ClaSP PE query: the beta schedule, the budget split and per-volume caps.

Fractions such as ``alpha = 0.66`` are used as the decimals they are written as: ``alpha``
enters through ``Fraction(repr(alpha))``, so ``floor(50 * (1 - 0.66))`` is 17, as the
formula says, and not the 16 that binary floating point gives.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any

from clasp_rs._messages import shown
from clasp_rs.exceptions import InvalidArgumentError
from clasp_rs.strategies.streams import CODE_REMAINDER, order_by_draws

__all__ = [
    "as_fraction",
    "beta_schedule",
    "finite_positive",
    "floor_share",
    "split_quotas",
    "volume_caps",
]


def as_fraction(value: float, what: str) -> Fraction:
    """``value`` in [0, 1] as the exact decimal it is written as."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise InvalidArgumentError(f"{what} must be a number in [0, 1], got {shown(value)}")
    return Fraction(repr(float(value)))


def finite_positive(value: Any, what: str) -> float:
    """``value`` as a float, checked to be a finite number > 0 (an exponent beta).

    Raises:
        InvalidArgumentError: not a number, not finite (or beyond float64), or <= 0.
    """
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float64's range
            number = math.inf
        if math.isfinite(number) and number > 0:
            return number
    raise InvalidArgumentError(f"{what} must be a finite number > 0, got {shown(value)}")


def floor_share(share: Fraction, n: int) -> int:
    """``floor(share * n)`` in exact arithmetic."""
    return math.floor(share * n)


def beta_schedule(loop: int, n_loops: int, beta0: float = 1.0, beta_max: float = 100.0) -> float:
    """The power-sampling exponent of the query made after training loop ``loop``.

    ``beta(t) = beta0 * (beta_max / beta0) ** (t / (n_loops - 1))`` for
    ``t = 0 .. n_loops - 2``; queries past the schedule keep ``beta_max``. With the defaults
    and ``n_loops = 5`` the queries use 1, 3.162, 10, 31.62, then 100.

    Raises:
        InvalidArgumentError: ``loop`` outside [0, 2**63), ``n_loops`` outside [1, 2**63) or
            a beta that is not finite and > 0.
    """
    # The engine keys its noise by a 64-bit loop index.
    for name, value, low in (("loop", loop, 0), ("n_loops", n_loops, 1)):
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not low <= value < 2**63
        ):
            raise InvalidArgumentError(
                f"{name} must be an integer in [{low}, 2**63), got {shown(value)}"
            )
    beta0 = finite_positive(beta0, "beta0")
    beta_max = finite_positive(beta_max, "beta_max")
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
