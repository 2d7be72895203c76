"""Learning-curve metrics and the statistics that compare active-learning strategies.

The definitions follow the ClaSP PE paper and the nnActive benchmark:

- **Final Dice** (:func:`final_dice`): mean foreground Dice after the last loop.
- **AUBC** (:func:`aubc`, area under the budget curve): the trapezoid rule over the loops of
  mean Dice against the loop index scaled to [0, 1] (loop ``t`` of ``T`` at ``t / (T - 1)``);
  Dice is in [0, 1], so AUBC is too. One loop: AUBC is its Dice.
- **FG-Eff** (:func:`fg_efficiency`, foreground efficiency): Dice modelled as a saturating
  exponential of ``f``, the fraction of the pool's ground-truth foreground voxels inside
  annotated patches::

      Dice(f) ≈ a · (1 − exp(−b · f)),   0 ≤ a ≤ 1,  b ≥ 0,

  fitted by least squares (:func:`scipy.optimize.curve_fit`, trust-region reflective within
  those bounds) to the loops' ``(f, Dice)`` points. FG-Eff is the fitted rate ``b``: the
  fitted curve reaches ``1 − 1/e`` (63 %) of its plateau ``a`` once a fraction ``1/b`` of
  the foreground is annotated, so a strategy whose annotations hold the informative
  foreground sooner has a larger FG-Eff. The fit reports its standard errors and flags
  itself when its rate cannot be trusted (see :class:`ExponentialFit`).
- **mean ± 95 % CI** over settings (:func:`mean_ci`, paper appendix E.7) and over the seeds
  of one setting (:func:`seed_mean_ci`).
- **Pairwise penalty matrix** (:func:`pairwise_penalty_matrix`, Ash et al., BADGE; nnActive)
  and its sum over settings (:func:`combine_penalty_matrices`).

Everything takes numbers or numpy arrays and returns plain Python values (and small numpy
matrices for the PPM). scipy is imported only by the functions that need it (FG-Eff and
the PPM; ``pip install 'clasp-rs[report]'``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "ExponentialFit",
    "MeanCI",
    "PenaltyMatrix",
    "PenaltySummary",
    "aubc",
    "combine_penalty_matrices",
    "fg_efficiency",
    "final_dice",
    "holm_adjust",
    "mean_ci",
    "pairwise_penalty_matrix",
    "saturating_exponential",
    "seed_mean_ci",
]

Z_95 = 1.96
"""The normal quantile of a two-sided 95 % interval, as the paper uses it."""


# -- curves ----------------------------------------------------------------------------------


def _dice_curve(dice: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(dice, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError(f"{what} needs the Dice of at least one loop")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
        raise ValueError(f"Dice values must be numbers in [0, 1], got {values.tolist()}")
    return values


def aubc(dice: Sequence[float] | np.ndarray) -> float:
    """Area under the Dice-per-loop curve, loops evenly spaced on [0, 1].

    Args:
        dice: mean Dice per loop, loop 0 first.

    Raises:
        ValueError: no values, or a value that is not a number in [0, 1].
    """
    values = _dice_curve(dice, "AUBC")
    if values.size == 1:
        return float(values[0])
    x = np.linspace(0.0, 1.0, values.size)
    return float(np.sum((values[1:] + values[:-1]) * np.diff(x)) / 2.0)


def final_dice(dice: Sequence[float] | np.ndarray) -> float:
    """The Dice of the last loop.

    Raises:
        ValueError: no values, or a value that is not a number in [0, 1].
    """
    return float(_dice_curve(dice, "Final Dice")[-1])


# -- FG-Eff ----------------------------------------------------------------------------------


def saturating_exponential(f: np.ndarray, a: float, b: float) -> np.ndarray:
    """``a · (1 − exp(−b · f))``."""
    return a * -np.expm1(-b * np.asarray(f, dtype=np.float64))


MIN_DICE_RANGE = 0.05
"""Below this spread of Dice over the loops an FG-Eff fit is flagged: the curve is then
nearly flat, and the rate swings with noise (e.g. 0.07 or 175 for two identical runs)."""

_BOUND_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ExponentialFit:
    """The FG-Eff fit ``Dice ≈ plateau · (1 − exp(−rate · f))``.

    Attributes:
        plateau: ``a``, the Dice the curve tends to.
        rate: ``b``, the FG-Eff.
        rmse: root-mean-square residual of the fit over the points.
        plateau_se, rate_se: standard errors of ``a`` and ``b`` from the fit's covariance
            (residual variance times the inverse Gauss–Newton matrix); None when they are
            undefined (no more points than parameters, or a singular fit).
        flags: why the rate should not be trusted, empty when nothing is wrong: the plateau
            or the rate at a bound of the fit, a Dice range below ``min_dice_range``, no
            standard error, or a standard error of the rate larger than the rate.
    """

    plateau: float
    rate: float
    rmse: float
    plateau_se: float | None = None
    rate_se: float | None = None
    flags: tuple[str, ...] = ()

    @property
    def fraction_63(self) -> float:
        """``1 / b``: foreground fraction at which the fit reaches 63 % of its plateau."""
        return math.inf if self.rate == 0 else 1.0 / self.rate

    @property
    def reliable(self) -> bool:
        """Whether no flag was raised."""
        return not self.flags

    def to_json(self) -> dict[str, Any]:
        return {
            "plateau": self.plateau,
            "rate": self.rate,
            "rmse": self.rmse,
            "plateau_se": self.plateau_se,
            "rate_se": self.rate_se,
            "flags": list(self.flags),
        }


def fg_efficiency(
    fractions: Sequence[float] | np.ndarray,
    dice: Sequence[float] | np.ndarray,
    *,
    min_dice_range: float = MIN_DICE_RANGE,
) -> ExponentialFit | None:
    """Fit ``Dice ≈ a (1 − exp(−b f))`` (see the module docstring).

    Args:
        fractions: annotated share of the pool's foreground voxels per loop, in (0, 1].
        dice: mean Dice per loop.
        min_dice_range: a fit over Dice values whose max − min is below this is flagged.

    Returns:
        The fit, or None when fewer than two distinct fractions are given or the fit does
        not converge.

    Raises:
        ValueError: different lengths, negative fractions or Dice outside [0, 1].
    """
    from clasp_rs._optional import import_report_dependency

    import_report_dependency("scipy")
    from scipy.optimize import OptimizeWarning, curve_fit

    f = np.asarray(fractions, dtype=np.float64).reshape(-1)
    d = np.asarray(dice, dtype=np.float64).reshape(-1)
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
            # With as many points as parameters the covariance is undefined (reported as
            # no standard error below).
            warnings.simplefilter("ignore", OptimizeWarning)
            params, covariance = curve_fit(
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
    errors = np.sqrt(np.abs(np.diag(covariance))) if f.size > 2 else np.full(2, np.nan)
    plateau_se, rate_se = (float(e) if np.isfinite(e) else None for e in errors)
    flags = []
    if a >= 1.0 - _BOUND_TOLERANCE or a <= _BOUND_TOLERANCE:
        flags.append(f"plateau at the bound {round(a)} of the fit")
    if b <= _BOUND_TOLERANCE:
        flags.append("rate at the bound 0 of the fit")
    spread = float(d.max() - d.min())
    if spread < min_dice_range:
        flags.append(f"Dice range {spread:.3f} < {min_dice_range:g}: curve too flat to fit")
    if rate_se is None:
        flags.append(f"{f.size} points for 2 parameters: no standard error")
    elif rate_se > b:
        flags.append(f"rate standard error {rate_se:.3g} exceeds the rate")
    return ExponentialFit(a, b, rmse, plateau_se, rate_se, tuple(flags))


# -- confidence intervals --------------------------------------------------------------------


class MeanCI(NamedTuple):
    """A mean and the half-width of its 95 % confidence interval (NaN when undefined)."""

    mean: float
    half_width: float

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_ci(
    means: Sequence[float] | np.ndarray,
    stds: Sequence[float] | np.ndarray,
    n_seeds: Sequence[int] | np.ndarray,
) -> MeanCI:
    """Mean over ``S`` settings and its 95 % half-width (paper, appendix E.7)::

        mean = (1/S) Σ_s μ_s,   half = 1.96 · (1/S) · sqrt(Σ_s (σ_s / √N_s)²)

    Args:
        means: ``μ_s``, the mean over seeds of each setting, shape (S,).
        stds: ``σ_s``, the standard deviation over seeds of each setting, shape (S,).
        n_seeds: ``N_s``, the seeds of each setting (>= 1), shape (S,).

    Returns:
        The mean and the half-width (NaN where a ``σ_s`` is NaN, e.g. from a single seed).

    Raises:
        ValueError: no settings, different lengths, a non-finite mean, a negative standard
            deviation or a seed count below 1.
    """
    mu = np.asarray(means, dtype=np.float64).reshape(-1)
    sigma = np.asarray(stds, dtype=np.float64).reshape(-1)
    n = np.asarray(n_seeds, dtype=np.float64).reshape(-1)
    if mu.size == 0:
        raise ValueError("mean_ci needs at least one setting")
    if not mu.size == sigma.size == n.size:
        raise ValueError(f"{mu.size} means, {sigma.size} stds and {n.size} seed counts differ")
    if not np.all(np.isfinite(mu)):
        raise ValueError(f"means must be finite, got {mu.tolist()}")
    if np.any(sigma < 0) or np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError("stds must be >= 0 and seed counts integers >= 1")
    s = mu.size
    half = Z_95 / s * math.sqrt(float(np.sum((sigma / np.sqrt(n)) ** 2)))
    return MeanCI(float(mu.mean()), half)


def seed_mean_ci(values: Sequence[float] | np.ndarray) -> MeanCI:
    """Mean over the seeds of one setting and its 95 % half-width ``1.96 σ / √N`` (σ: sample
    standard deviation, ``ddof=1``); :func:`mean_ci` with ``S = 1``. NaN half-width for one
    seed.

    Raises:
        ValueError: no values or a non-finite value.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"seed_mean_ci needs finite values, got {x.tolist()}")
    sigma = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    if math.isnan(sigma):
        return MeanCI(float(x.mean()), math.nan)
    return mean_ci([float(x.mean())], [sigma], [x.size])


# -- pairwise penalty matrix -----------------------------------------------------------------


class PenaltyMatrix(NamedTuple):
    """A pairwise penalty matrix.

    Attributes:
        methods: the method names, in the order of the rows and columns.
        matrix: float64 (n_methods, n_methods); ``matrix[i, j]`` is the share of the counted
            budgets at which method ``i`` was significantly worse than method ``j`` (rows:
            the penalised method). The diagonal is 0.
    """

    methods: list[str]
    matrix: np.ndarray


class PenaltySummary(NamedTuple):
    """Penalty matrices summed over settings (the paper's Figure 4).

    Attributes:
        methods: the method names (row and column order).
        matrix: float64 (n_methods, n_methods), the sum of the settings' matrices.
        mean: float64 (n_methods,), the "mean" row: column sums / (n_methods − 1).
    """

    methods: list[str]
    matrix: np.ndarray
    mean: np.ndarray


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values: with ``p_(1) <= ... <= p_(m)``,
    ``p̃_(k) = max_{j <= k} min(1, (m − j + 1) p_(j))``. NaN p-values count as 1 (tests that
    cannot reject, kept in ``m``).

    Returns:
        float64 array of the input's shape.
    """
    p = np.asarray(p_values, dtype=np.float64)
    flat = np.where(np.isnan(p.reshape(-1)), 1.0, p.reshape(-1))
    m = flat.size
    if m == 0:
        return p.copy()
    order = np.argsort(flat, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * flat[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.reshape(p.shape)


def _as_results(results: Mapping[str, Any]) -> tuple[list[str], list[np.ndarray]]:
    if len(results) == 0:
        raise ValueError("pairwise_penalty_matrix needs at least one method")
    methods = [str(k) for k in results]
    arrays = []
    for name, value in results.items():
        array = np.asarray(value, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise ValueError(
                f"results[{name!r}] must be a (n_seeds, n_budgets) array, got shape {array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"results[{name!r}] holds values that are not finite")
        arrays.append(array)
    budgets = {a.shape[1] for a in arrays}
    if len(budgets) != 1:
        shapes = {m: a.shape for m, a in zip(methods, arrays, strict=True)}
        raise ValueError(f"every method needs the same number of budgets, got {shapes}")
    return methods, arrays


def pairwise_penalty_matrix(
    results: Mapping[str, Any],
    *,
    alpha: float = 0.05,
    correction: str | None = None,
    skip_first: bool = True,
) -> PenaltyMatrix:
    """Pairwise penalty matrix of one setting (dataset, budget regime).

    For every counted budget ``b`` and pair of methods ``(i, j)``: take the first
    ``n = min(n_seeds_i, n_seeds_j)`` seeds, ``z = y_i[:n, b] − y_j[:n, b]``, and a two-sided
    one-sample t-test of ``z`` against 0 (:func:`scipy.stats.ttest_1samp`). Where
    ``mean(z) < 0`` and ``p < alpha``, ``1 / n_budgets_counted`` is added to ``M[i, j]``
    (``i`` significantly worse than ``j``). NaN p-values (zero variance, one seed) are not
    significant.

    Args:
        results: method name -> array ``(n_seeds, n_budgets)`` of mean Dice; seed ``k`` of
            every method shares its split and starting budget (rows are paired by index).
        alpha: significance level.
        correction: None, or ``"holm"``: the p-values of all tests of the matrix (every
            counted budget and unordered pair; the test of ``(j, i)`` is the test of
            ``(i, j)`` with ``z`` negated, the same p-value, and counts once) are
            Holm–Bonferroni corrected together (:func:`holm_adjust`) before thresholding.
        skip_first: leave the first budget (the shared starting budget) out of both the
            tests and ``n_budgets_counted``.

    Returns:
        The method order (that of ``results``) and the matrix.

    Raises:
        ValueError: no methods, arrays that are not 2-D or not finite, different numbers of
            budgets, ``alpha`` outside (0, 1), an unknown correction.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if correction not in (None, "holm"):
        raise ValueError(f"correction must be None or 'holm', got {correction!r}")
    methods, arrays = _as_results(results)
    k = len(methods)
    n_budgets = arrays[0].shape[1]
    first = 1 if skip_first else 0
    counted = n_budgets - first
    matrix = np.zeros((k, k), dtype=np.float64)
    if counted <= 0:
        return PenaltyMatrix(methods, matrix)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    p = np.full((len(pairs), counted), np.nan)
    sign = np.zeros((len(pairs), counted))
    for row, (i, j) in enumerate(pairs):
        n = min(arrays[i].shape[0], arrays[j].shape[0])
        z = arrays[i][:n, first:] - arrays[j][:n, first:]
        sign[row] = np.sign(z.mean(axis=0))
        if n >= 2:
            p[row] = _ttest_zero(z)
    if correction == "holm":
        p = holm_adjust(p)
    significant = np.nan_to_num(p, nan=1.0) < alpha
    for row, (i, j) in enumerate(pairs):
        matrix[i, j] = np.count_nonzero(significant[row] & (sign[row] < 0)) / counted
        matrix[j, i] = np.count_nonzero(significant[row] & (sign[row] > 0)) / counted
    return PenaltyMatrix(methods, matrix)


def _ttest_zero(z: np.ndarray) -> np.ndarray:
    """Two-sided p-values of one-sample t-tests of each column of ``z`` (n, B) against 0."""
    from clasp_rs._optional import import_report_dependency

    import_report_dependency("scipy")
    from scipy.stats import ttest_1samp

    with warnings.catch_warnings():
        # Zero variance gives NaN (not significant); scipy warns about it.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(ttest_1samp(z, 0.0, axis=0).pvalue, dtype=np.float64)


def combine_penalty_matrices(matrices: Sequence[PenaltyMatrix]) -> PenaltySummary:
    """Sum penalty matrices over settings and add the "mean" row (column sums divided by
    ``n_methods − 1``), as the paper's Figure 4.

    Raises:
        ValueError: no matrices, matrices over different methods (or in another order), or
            fewer than two methods.
    """
    if not matrices:
        raise ValueError("combine_penalty_matrices needs at least one matrix")
    methods = list(matrices[0].methods)
    if len(methods) < 2:
        raise ValueError("a penalty matrix summary needs at least two methods")
    total = np.zeros((len(methods), len(methods)), dtype=np.float64)
    for m in matrices:
        if list(m.methods) != methods:
            raise ValueError(f"matrices over different methods: {methods} and {list(m.methods)}")
        total += np.asarray(m.matrix, dtype=np.float64)
    return PenaltySummary(methods, total, total.sum(axis=0) / (len(methods) - 1))
