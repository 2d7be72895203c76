"""Learning-curve metrics of an active-learning run.

- **Final Dice**: mean Dice over the foreground classes of the fold ensemble on the test
  split after the last loop.
- **AUBC** (area under the budget curve): the trapezoid rule over the loops of mean Dice
  against the loop index scaled to [0, 1] (loop ``t`` of ``T`` at ``t / (T - 1)``); Dice is
  in [0, 1], so AUBC is too. One loop: AUBC is its Dice.
- **FG-Eff** (foreground efficiency): Dice modelled as a saturating exponential of ``f``,
  the fraction of the pool's ground-truth foreground voxels inside annotated patches::

      Dice(f) ≈ a · (1 − exp(−b · f)),   0 ≤ a ≤ 1,  b ≥ 0,

  fitted by least squares (:func:`scipy.optimize.curve_fit`, trust-region reflective within
  those bounds) to the loops' ``(f, Dice)`` points. FG-Eff is the fitted rate ``b``: the
  fitted curve reaches ``1 − 1/e`` (63 %) of its plateau ``a`` once a fraction ``1/b`` of
  the foreground is annotated, so a strategy whose annotations hold the informative
  foreground sooner has a larger FG-Eff. Needs at least two loops with distinct ``f``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ExponentialFit", "aubc", "fg_efficiency", "saturating_exponential"]


def aubc(dice: Sequence[float]) -> float:
    """Area under the Dice-per-loop curve, loops evenly spaced on [0, 1].

    Raises:
        ValueError: no values, or a value that is not a number in [0, 1].
    """
    values = np.asarray([float(d) for d in dice], dtype=np.float64)
    if values.size == 0:
        raise ValueError("AUBC needs the Dice of at least one loop")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"Dice values must be numbers in [0, 1], got {values.tolist()}")
    if values.size == 1:
        return float(values[0])
    x = np.linspace(0.0, 1.0, values.size)
    return float(np.sum((values[1:] + values[:-1]) * np.diff(x)) / 2.0)


def saturating_exponential(f: np.ndarray, a: float, b: float) -> np.ndarray:
    """``a · (1 − exp(−b · f))``."""
    return a * -np.expm1(-b * np.asarray(f, dtype=np.float64))


@dataclass(frozen=True)
class ExponentialFit:
    """The FG-Eff fit ``Dice ≈ plateau · (1 − exp(−rate · f))``.

    Attributes:
        plateau: ``a``, the Dice the curve tends to.
        rate: ``b``, the FG-Eff.
        rmse: root-mean-square residual of the fit over the points.
    """

    plateau: float
    rate: float
    rmse: float

    @property
    def fraction_63(self) -> float:
        """``1 / b``: foreground fraction at which the fit reaches 63 % of its plateau."""
        return math.inf if self.rate == 0 else 1.0 / self.rate


def fg_efficiency(fractions: Sequence[float], dice: Sequence[float]) -> ExponentialFit | None:
    """Fit ``Dice ≈ a (1 − exp(−b f))`` (see the module docstring).

    Args:
        fractions: annotated share of the pool's foreground voxels per loop, in (0, 1].
        dice: mean Dice per loop.

    Returns:
        The fit, or None when fewer than two distinct fractions are given or the fit does
        not converge.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    f = np.asarray([float(v) for v in fractions], dtype=np.float64)
    d = np.asarray([float(v) for v in dice], dtype=np.float64)
    if f.shape != d.shape:
        raise ValueError(f"{f.size} fractions but {d.size} Dice values")
    keep = np.isfinite(f) & np.isfinite(d)
    f, d = f[keep], d[keep]
    if np.unique(f).size < 2:
        return None
    if f.min() < 0 or d.min() < 0 or d.max() > 1:
        raise ValueError("fractions must be >= 0 and Dice values in [0, 1]")
    plateau0 = min(max(float(d.max()), 1e-3), 1.0)
    rate0 = 1.0 / max(float(np.median(f[f > 0])) if np.any(f > 0) else 1.0, 1e-6)
    try:
        with warnings.catch_warnings():
            # With as many points as parameters the covariance is undefined; only the
            # parameters are used.
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(
                saturating_exponential,
                f,
                d,
                p0=(plateau0, rate0),
                bounds=([0.0, 0.0], [1.0, np.inf]),
                maxfev=20000,
                ftol=1e-12,
                xtol=1e-12,
                gtol=1e-12,
            )
    except (RuntimeError, ValueError):
        return None
    a, b = float(params[0]), float(params[1])
    rmse = float(np.sqrt(np.mean((saturating_exponential(f, a, b) - d) ** 2)))
    return ExponentialFit(a, b, rmse)
