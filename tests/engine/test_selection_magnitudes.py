"""Score maps beyond float32's range (huge, tiny, subnormal float64) rank by their values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_selection import assert_matches, problems, stride3

from clasp_rs import select_across_volumes, select_top_patches
from clasp_rs._key_rounding import float32_precision as library_float32_precision
from reference import float32_precision, select_reference

PAIRS = [
    (1e300, 3e300),
    (1e39, 2e39),
    (np.finfo(np.float64).max / 3, np.finfo(np.float64).max),
    (1e-300, 3e-300),
    (1e-50, 2e-50),
    (1e-310, 3e-310),  # subnormal float64
    (5e-324, 1e-323),
]


@pytest.mark.parametrize(("small", "large"), PAIRS)
@pytest.mark.parametrize("beta", [None, 1e12])
def test_values_beyond_float32_range_rank_by_value(
    small: float, large: float, beta: float | None
) -> None:
    for values, best in (([small, large], 1), ([large, small], 0)):
        got = select_top_patches(np.array([[values]]), (1, 1, 1), 2, beta=beta)
        assert [p.coords for p in got] == [(0, 0, best), (0, 0, 1 - best)], values


@pytest.mark.parametrize(("small", "large"), PAIRS)
def test_volumes_beyond_float32_range_merge_by_value(small: float, large: float) -> None:
    got = select_across_volumes(
        {"a": np.full((1, 1, 1), small), "b": np.full((1, 1, 1), large)}, (1, 1, 1), 2
    )
    assert [(p.file, p.score) for p in got] == [("b", large), ("a", small)]


def test_rounding_equals_float32_inside_its_range_and_keeps_order_outside() -> None:
    rng = np.random.default_rng(0)
    keys = rng.standard_normal(20_000) * 10.0 ** rng.integers(-37, 38, 20_000)
    keys = keys[np.abs(keys) >= np.finfo(np.float32).tiny]
    keys = np.concatenate([keys, [0.0, np.inf, -np.inf, 1 + 2**-24, 1 + 3 * 2**-24]])
    as_float32 = keys.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(library_float32_precision(keys), as_float32)
    np.testing.assert_array_equal(float32_precision(keys), as_float32)
    # Outside float32's range the rounding is the same, scaled by a power of two.
    finite = keys[np.isfinite(keys)]
    for shift in (800, -800):
        wide = np.ldexp(finite, shift)
        np.testing.assert_array_equal(library_float32_precision(wide), float32_precision(wide))
        np.testing.assert_array_equal(
            library_float32_precision(wide), np.ldexp(as_float32[np.isfinite(keys)], shift)
        )


# Scales 2^e at which the problems' integer maps stay exact and their box means normal
# float64 (float32: normal float32), from tiny to huge.
EXPONENTS = {
    np.float64: st.one_of(st.integers(-1000, -900), st.integers(-150, 150), st.integers(900, 1000)),
    np.float32: st.integers(-110, 100),
    np.float16: st.integers(-8, 4),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.data(), st.sampled_from([None, 0.5, 3.0]), st.integers(0, 2**64 - 1))
def test_any_magnitude_matches_float64_reference(
    problem: dict, data: st.DataObject, beta: float | None, seed: int
) -> None:
    volume = problem["volume"]
    exponent = data.draw(EXPONENTS[volume.dtype.type])
    scaled = np.ldexp(volume, exponent).astype(volume.dtype)
    np.testing.assert_array_equal(np.ldexp(scaled.astype(np.float64), -exponent), volume)
    got = select_top_patches(
        scaled,
        problem["patch"],
        problem["n"],
        stride=problem["stride"],
        annotated=problem["annotated"],
        beta=beta,
        seed=seed,
    )
    want = select_reference(
        scaled.astype(np.float64),
        problem["patch"],
        problem["n"],
        stride=stride3(problem["stride"]),
        annotated=problem["boxes"],
        beta=beta,
        seed=seed,
    )
    assert_matches(got, want, noised=beta is not None)
    if beta is None:
        # Box-mean ranking does not depend on the scale at all.
        unscaled = select_top_patches(
            volume,
            problem["patch"],
            problem["n"],
            stride=problem["stride"],
            annotated=problem["annotated"],
        )
        assert [p.coords for p in got] == [p.coords for p in unscaled]
