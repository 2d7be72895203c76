"""AUBC and FG-Eff (clasp_rs.loop.metrics) on curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clasp_rs.loop.metrics import aubc, fg_efficiency, saturating_exponential


def _trapezoid_reference(values: list[float]) -> float:
    """Plain trapezoid rule with loops at 0, 1/(T-1), ..., 1."""
    n = len(values)
    if n == 1:
        return values[0]
    h = 1.0 / (n - 1)
    return sum((values[i] + values[i + 1]) * h / 2 for i in range(n - 1))


def test_aubc_of_known_curves():
    assert aubc([0.7]) == 0.7
    assert aubc([0.4, 0.4, 0.4, 0.4]) == pytest.approx(0.4)
    assert aubc([0.0, 1.0]) == pytest.approx(0.5)
    assert aubc([0.2, 0.4, 0.6]) == pytest.approx(0.4)
    # A step up after the first loop: (0 + 1)/2 * 1/2 + 1 * 1/2 = 0.75.
    assert aubc([0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert aubc([1.0] * 7) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(20))
def test_aubc_matches_the_trapezoid_reference_and_stays_in_unit_range(seed):
    rng = np.random.default_rng(seed)
    values = rng.random(int(rng.integers(1, 12))).tolist()
    result = aubc(values)
    assert result == pytest.approx(_trapezoid_reference(values), abs=1e-12)
    assert 0.0 <= result <= 1.0


@pytest.mark.parametrize("bad", [[], [1.2], [0.5, -0.1], [math.nan]])
def test_aubc_rejects_values_outside_unit_range(bad):
    with pytest.raises(ValueError):
        aubc(bad)


@pytest.mark.parametrize(("a", "b"), [(0.8, 20.0), (0.95, 3.0), (0.5, 100.0), (1.0, 8.0)])
def test_fg_efficiency_recovers_an_exact_saturating_curve(a, b):
    f = np.array([0.01, 0.03, 0.06, 0.1, 0.2, 0.4])
    dice = saturating_exponential(f, a, b)
    fit = fg_efficiency(f.tolist(), dice.tolist())
    assert fit is not None
    assert fit.plateau == pytest.approx(a, rel=1e-4)
    assert fit.rate == pytest.approx(b, rel=1e-4)
    assert fit.rmse < 1e-6
    assert fit.fraction_63 == pytest.approx(1.0 / b, rel=1e-4)


def test_fg_efficiency_with_two_loops_fits_exactly_without_warnings():
    f = [0.05, 0.1]
    dice = saturating_exponential(np.array(f), 0.9, 12.0).tolist()
    fit = fg_efficiency(f, dice)
    assert fit is not None
    assert saturating_exponential(np.array(f), fit.plateau, fit.rate) == pytest.approx(dice)


def test_fg_efficiency_prefers_the_strategy_that_saturates_sooner():
    f = np.linspace(0.02, 0.2, 5)
    fast = fg_efficiency(f.tolist(), saturating_exponential(f, 0.8, 40.0).tolist())
    slow = fg_efficiency(f.tolist(), saturating_exponential(f, 0.8, 5.0).tolist())
    assert fast is not None and slow is not None
    assert fast.rate > slow.rate


def test_fg_efficiency_on_noisy_points_stays_close():
    rng = np.random.default_rng(0)
    f = np.linspace(0.01, 0.3, 12)
    dice = np.clip(saturating_exponential(f, 0.85, 15.0) + rng.normal(0, 0.005, f.size), 0, 1)
    fit = fg_efficiency(f.tolist(), dice.tolist())
    assert fit is not None
    assert fit.plateau == pytest.approx(0.85, abs=0.02)
    assert fit.rate == pytest.approx(15.0, rel=0.1)


def test_fg_efficiency_needs_two_distinct_fractions():
    assert fg_efficiency([0.1], [0.5]) is None
    assert fg_efficiency([0.1, 0.1], [0.5, 0.6]) is None
    with pytest.raises(ValueError, match="2 fractions but 1"):
        fg_efficiency([0.1, 0.2], [0.5])
