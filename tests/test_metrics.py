"""clasp_rs.metrics: AUBC, Final Dice, FG-Eff, confidence intervals and the pairwise penalty
matrix against hand computations and plain references."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clasp_rs.metrics import (
    PenaltyMatrix,
    aubc,
    combine_penalty_matrices,
    fg_efficiency,
    final_dice,
    holm_adjust,
    mean_ci,
    pairwise_penalty_matrix,
    saturating_exponential,
    seed_mean_ci,
)


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


def test_fg_efficiency_reports_standard_errors_and_flags_untrustworthy_fits():
    f = np.array([0.01, 0.03, 0.06, 0.1, 0.2, 0.4])
    rng = np.random.default_rng(1)
    dice = np.clip(saturating_exponential(f, 0.8, 20.0) + rng.normal(0, 0.01, f.size), 0, 1)
    good = fg_efficiency(f, dice)
    assert good is not None and good.reliable and good.flags == ()
    assert good.rate_se is not None and 0 < good.rate_se < good.rate
    assert good.plateau_se is not None and 0 < good.plateau_se < 0.1
    # The residual variance times the inverse Gauss-Newton matrix, computed by hand.
    jac = np.stack([-np.expm1(-good.rate * f), good.plateau * f * np.exp(-good.rate * f)], axis=1)
    residual = saturating_exponential(f, good.plateau, good.rate) - dice
    cov = np.linalg.inv(jac.T @ jac) * (residual @ residual) / (f.size - 2)
    assert good.plateau_se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-3)
    assert good.rate_se == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-3)

    # A curve that learns nothing: Dice 0.007 -> 0.017 (the tiny trainer's) is flagged.
    flat = fg_efficiency([0.02, 0.05, 0.09], [0.007, 0.012, 0.017])
    assert flat is not None and not flat.reliable
    assert any("Dice range 0.010 < 0.05" in flag for flag in flat.flags)
    # Dice still rising linearly: the plateau is pushed to its bound 1.
    linear = fg_efficiency([0.1, 0.2, 0.3, 0.4], [0.2, 0.4, 0.6, 0.8])
    assert linear is not None and linear.plateau == pytest.approx(1.0)
    assert any("plateau at the bound 1" in flag for flag in linear.flags)
    # Two points for two parameters: no standard error.
    two = fg_efficiency([0.05, 0.1], [0.3, 0.5])
    assert two is not None and two.rate_se is None and two.plateau_se is None
    assert any("no standard error" in flag for flag in two.flags)
    assert two.to_json()["flags"] == list(two.flags)


def test_final_dice_is_the_last_loop():
    assert final_dice([0.1, 0.5, 0.7]) == 0.7
    assert final_dice(np.array([0.25])) == 0.25
    with pytest.raises(ValueError):
        final_dice([])
    with pytest.raises(ValueError):
        final_dice([0.5, 1.5])


def test_mean_ci_by_hand():
    # mean (0.6 + 0.8) / 2; half-width 1.96 / 2 * sqrt((0.1/2)^2 + (0.2/2)^2).
    result = mean_ci([0.6, 0.8], [0.1, 0.2], [4, 4])
    assert result.mean == pytest.approx(0.7)
    assert result.half_width == pytest.approx(0.98 * math.sqrt(0.0125))
    assert (result.low, result.high) == pytest.approx((0.7 - 0.109567, 0.7 + 0.109567), abs=1e-6)
    # One setting: 1.96 sigma / sqrt(N).
    assert mean_ci([0.5], [0.3], [9]).half_width == pytest.approx(1.96 * 0.1)
    # Unequal seed counts weigh each setting's standard error.
    assert mean_ci([0.2, 0.4, 0.9], [0.1, 0.0, 0.4], [1, 2, 4]).half_width == pytest.approx(
        1.96 / 3 * math.sqrt(0.01 + 0 + 0.04)
    )
    assert math.isnan(mean_ci([0.5, 0.6], [0.1, math.nan], [3, 1]).half_width)
    for bad in (([], [], []), ([0.5], [0.1, 0.2], [3]), ([0.5], [-0.1], [3]), ([0.5], [0.1], [0])):
        with pytest.raises(ValueError):
            mean_ci(*bad)


def test_seed_mean_ci_by_hand():
    # sample std of (0.5, 0.7, 0.9) is 0.2.
    result = seed_mean_ci([0.5, 0.7, 0.9])
    assert result.mean == pytest.approx(0.7)
    assert result.half_width == pytest.approx(1.96 * 0.2 / math.sqrt(3))
    single = seed_mean_ci([0.4])
    assert single.mean == 0.4 and math.isnan(single.half_width)


def _p_two_sided_df2(z: list[float]) -> float:
    """Two-sided one-sample t-test p-value for three values (2 degrees of freedom), where
    Student's t has the closed form CDF 1/2 + t / (2 sqrt(2 + t^2))."""
    mean = sum(z) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in z) / 2)
    t = abs(mean / (sd / math.sqrt(3)))
    return 1 - t / math.sqrt(2 + t * t)


def test_pairwise_penalty_matrix_by_hand():
    a = np.array([[0.5, 0.60, 0.70], [0.5, 0.62, 0.72], [0.5, 0.61, 0.69]])
    # z = a - b: budget 1 [0.1, 0.11, 0.09] (t = sqrt(300), p = 0.0033), budget 2 [0.05, -0.05, 0]
    # (mean 0, p = 1); budget 0 is the shared start (z = 0, NaN p).
    b = a - np.array([[0.0, 0.10, 0.05], [0.0, 0.11, -0.05], [0.0, 0.09, 0.0]])
    assert _p_two_sided_df2([0.1, 0.11, 0.09]) == pytest.approx(1 - math.sqrt(300 / 302))
    methods, matrix = pairwise_penalty_matrix({"A": a, "B": b})
    assert methods == ["A", "B"]
    # B is significantly worse than A at one of the two counted budgets.
    np.testing.assert_allclose(matrix, [[0.0, 0.0], [0.5, 0.0]])
    _, all_budgets = pairwise_penalty_matrix({"A": a, "B": b}, skip_first=False)
    np.testing.assert_allclose(all_budgets, [[0.0, 0.0], [1 / 3, 0.0]])
    _, strict = pairwise_penalty_matrix({"A": a, "B": b}, alpha=0.003)
    np.testing.assert_allclose(strict, 0.0)
    # Only the first min(n_seeds) seeds are paired: B's extra seed is left out.
    extra = np.vstack([b, [[0.9, 0.9, 0.9]]])
    np.testing.assert_allclose(pairwise_penalty_matrix({"A": a, "B": extra}).matrix, matrix)


def test_pairwise_penalty_matrix_holm_by_hand():
    # z = [d + e, d - e, d] with d = 0.06, e = 0.02: t = 3 sqrt(3), p = 0.0351 at both counted
    # budgets; Holm over the two tests: 2 * 0.0351 = 0.0702, not significant.
    z = [0.08, 0.04, 0.06]
    p = _p_two_sided_df2(z)
    assert p == pytest.approx(1 - math.sqrt(27) / math.sqrt(29))
    assert 0.025 < p < 0.05
    a = np.full((3, 3), 0.5)
    b = a - np.array([[0.0, *[z[0]] * 2], [0.0, *[z[1]] * 2], [0.0, *[z[2]] * 2]])
    np.testing.assert_allclose(
        pairwise_penalty_matrix({"A": a, "B": b}).matrix, [[0.0, 0.0], [1.0, 0.0]]
    )
    np.testing.assert_allclose(
        pairwise_penalty_matrix({"A": a, "B": b}, correction="holm").matrix, 0.0
    )
    np.testing.assert_allclose(
        pairwise_penalty_matrix({"A": a, "B": b}, correction="holm", alpha=0.08).matrix,
        [[0.0, 0.0], [1.0, 0.0]],
    )


def test_holm_adjust_by_hand():
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm_adjust([0.5, math.nan]), [1.0, 1.0])
    np.testing.assert_allclose(holm_adjust([0.001, 0.2]), [0.002, 0.2])
    assert holm_adjust([]).size == 0


def test_combine_penalty_matrices_sums_and_gives_the_mean_row():
    one = PenaltyMatrix(["A", "B", "C"], np.array([[0, 0.5, 0], [0, 0, 0], [1, 0.5, 0.0]]))
    two = PenaltyMatrix(["A", "B", "C"], np.array([[0, 0, 0], [0.25, 0, 0], [0, 0, 0.0]]))
    summary = combine_penalty_matrices([one, two])
    assert summary.methods == ["A", "B", "C"]
    np.testing.assert_allclose(summary.matrix, [[0, 0.5, 0], [0.25, 0, 0], [1, 0.5, 0]])
    # Column sums (1.25, 1.0, 0) over n_methods - 1 = 2.
    np.testing.assert_allclose(summary.mean, [0.625, 0.5, 0.0])
    with pytest.raises(ValueError, match="different methods"):
        combine_penalty_matrices([one, PenaltyMatrix(["B", "A", "C"], one.matrix)])
    with pytest.raises(ValueError):
        combine_penalty_matrices([])


@pytest.mark.parametrize(
    "results",
    [
        {},
        {"A": np.zeros(3)},
        {"A": np.zeros((2, 3)), "B": np.zeros((2, 4))},
        {"A": np.array([[0.5, math.nan]])},
    ],
)
def test_pairwise_penalty_matrix_rejects_bad_input(results):
    with pytest.raises(ValueError):
        pairwise_penalty_matrix(results)


def test_pairwise_penalty_matrix_rejects_bad_options():
    with pytest.raises(ValueError, match="alpha"):
        pairwise_penalty_matrix({"A": np.zeros((2, 2))}, alpha=1.5)
    with pytest.raises(ValueError, match="correction"):
        pairwise_penalty_matrix({"A": np.zeros((2, 2))}, correction="bonferroni")


def _reference_ppm(results, alpha, correction, skip_first):
    """A plain loop over scipy.stats.ttest_1samp, one test per budget and pair."""
    from scipy.stats import ttest_1samp

    names = list(results)
    k = len(names)
    n_budgets = results[names[0]].shape[1]
    budgets = list(range(1 if skip_first else 0, n_budgets))
    matrix = np.zeros((k, k))
    tests = []  # (p, i, j, mean z) for i < j
    for b in budgets:
        for i in range(k):
            for j in range(k):
                if i == j:
                    continue
                n = min(results[names[i]].shape[0], results[names[j]].shape[0])
                z = results[names[i]][:n, b] - results[names[j]][:n, b]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    p = float(ttest_1samp(z, 0.0).pvalue) if n >= 2 else math.nan
                if correction is None:
                    if np.mean(z) < 0 and p < alpha:
                        matrix[i, j] += 1 / len(budgets)
                elif i < j:
                    tests.append((1.0 if math.isnan(p) else p, i, j, float(np.mean(z))))
    if correction == "holm":
        # Step-down: reject in ascending p order while p_(r) < alpha / (m - r).
        m = len(tests)
        for rank, (p, i, j, mean) in enumerate(sorted(tests, key=lambda t: t[0])):
            if not p < alpha / (m - rank):
                break
            if mean < 0:
                matrix[i, j] += 1 / len(budgets)
            elif mean > 0:
                matrix[j, i] += 1 / len(budgets)
    return matrix


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    k=st.integers(1, 4),
    n_budgets=st.integers(1, 5),
    alpha=st.sampled_from([0.05, 0.2, 0.5]),
    correction=st.sampled_from([None, "holm"]),
    skip_first=st.booleans(),
)
def test_pairwise_penalty_matrix_matches_a_plain_ttest_loop(
    data, k, n_budgets, alpha, correction, skip_first
):
    results = {}
    for m in range(k):
        n_seeds = data.draw(st.integers(1, 5))
        # Coarse values make ties and zero-variance differences (NaN p-values) common.
        values = data.draw(
            st.lists(
                st.sampled_from([0.1, 0.2, 0.25, 0.5, 0.7, 0.71, 0.9]),
                min_size=n_seeds * n_budgets,
                max_size=n_seeds * n_budgets,
            )
        )
        results[f"m{m}"] = np.array(values).reshape(n_seeds, n_budgets)
    methods, matrix = pairwise_penalty_matrix(
        results, alpha=alpha, correction=correction, skip_first=skip_first
    )
    assert methods == list(results)
    np.testing.assert_allclose(
        matrix, _reference_ppm(results, alpha, correction, skip_first), atol=1e-12
    )
    assert np.all(np.diag(matrix) == 0)
    assert np.all(matrix + matrix.T <= 1 + 1e-12)


def test_random_inputs_against_the_plain_loop():
    rng = np.random.default_rng(3)
    for _ in range(30):
        k = int(rng.integers(2, 5))
        n_budgets = int(rng.integers(2, 7))
        base = rng.random(n_budgets)
        results = {
            f"m{m}": np.clip(
                base + rng.normal(0.05 * m, 0.03, (int(rng.integers(2, 6)), n_budgets)), 0, 1
            )
            for m in range(k)
        }
        for correction in (None, "holm"):
            np.testing.assert_allclose(
                pairwise_penalty_matrix(results, correction=correction).matrix,
                _reference_ppm(results, 0.05, correction, True),
                atol=1e-12,
            )


def test_metrics_import_without_scipy():
    code = (
        "import sys, clasp_rs, clasp_rs.metrics\n"
        "print(sorted(m for m in ('scipy', 'torch', 'nnunetv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
