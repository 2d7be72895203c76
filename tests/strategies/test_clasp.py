"""ClaSP PE against the brute-force reference of DESIGN.md (tests/reference_clasp.py)."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clasp_rs
import reference_clasp as ref
from clasp_rs import Patch, identical_patches, uncertainty
from clasp_rs.exceptions import InvalidPatchError
from clasp_rs.strategies import (
    STRATEGIES,
    ClaPE,
    ClapPE,
    ClaspPE,
    QueryRequest,
    beta_schedule,
    get_strategy,
)
from clasp_rs.strategies.budget import as_fraction, split_quotas, volume_caps
from generators import gamma_probabilities

# These tests compare every query with a reference, short ones included (crowded volumes);
# the ShortQueryWarning that Strategy.query gives then has its own test (test_drop_in_traps).
pytestmark = pytest.mark.filterwarnings("ignore::clasp_rs.ShortQueryWarning")

EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def clasp_inputs(draw, small_volumes: bool = False):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.integers(2, 4))
    m = draw(st.sampled_from([None, None, 2]))
    quantized = draw(st.booleans())
    n_cases = draw(st.integers(1, 3))
    names = draw(
        st.lists(
            st.sampled_from(["a", "b", "case_1", "case_10", "case_2", "z"]),
            min_size=n_cases,
            max_size=n_cases,
            unique=True,
        )
    )
    high = 5 if small_volumes else 8
    volumes = {}
    for name in names:
        shape = tuple(int(v) for v in rng.integers(2, high, size=3))
        volumes[name] = gamma_probabilities(
            rng, shape, c, m, quantized=quantized, floor_background_only=True
        )
    patch = tuple(draw(st.integers(1, 5)) for _ in range(3))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(3))
    annotated = {}
    for name in names:
        shape = volumes[name].shape[-3:]
        boxes = []
        for _ in range(draw(st.integers(0, 2))):
            start = [int(rng.integers(0, s)) for s in shape]
            size = [int(rng.integers(1, 4)) for _ in shape]
            boxes.append(Patch(name, start, size))
        if boxes:
            annotated[name] = boxes
    return {
        "volumes": volumes,
        "n": draw(st.integers(0, 12)),
        "loop": draw(st.integers(0, 6)),
        "patch_size": patch,
        "stride": stride,
        "per_volume": draw(st.sampled_from([None, None, 1, 2, 3])),
        "annotated": annotated,
        "alpha": draw(st.sampled_from([0.66, 0.66, 0.5, 0.33, 0.0, 1.0])),
        "n_loops": draw(st.integers(1, 6)),
        "seed": draw(st.integers(0, 2**64 - 1)),
    }


def as_tuples(patches):
    return [(p.file, p.coords, p.size, p.stratum) for p in patches]


def assert_same_scores(got, expected):
    for p, q in zip(got, expected, strict=True):
        if math.isinf(q.score):
            assert p.score == q.score
        else:
            assert p.score == pytest.approx(q.score, rel=1e-9, abs=1e-12)


def run_both(inputs, *, noise: bool, shuffle: bool):
    kw = {k: inputs[k] for k in ("alpha", "n_loops", "seed")}
    strategy = ClaspPE(noise=noise, shuffle_strata=shuffle, **kw)
    got = strategy.query(
        inputs["volumes"],
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        stride=inputs["stride"],
        per_volume=inputs["per_volume"],
        annotated=inputs["annotated"],
        device="cpu",
    )
    maps = {k: uncertainty.class_scores(v, device="cpu") for k, v in inputs["volumes"].items()}
    expected = ref.reference_clasp(
        maps,
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        stride=inputs["stride"],
        per_volume=inputs["per_volume"],
        annotated=inputs["annotated"],
        noise=noise,
        shuffle_strata=shuffle,
        **kw,
    )
    return got, expected


# -- against the reference ---------------------------------------------------------------------


@EXAMPLES
@given(clasp_inputs())
def test_deterministic_claspe_matches_reference(inputs):
    got, expected = run_both(inputs, noise=False, shuffle=False)
    assert as_tuples(got) == as_tuples(expected.patches)
    assert_same_scores(got, expected.patches)


@EXAMPLES
@given(clasp_inputs(small_volumes=True))
def test_deterministic_claspe_matches_reference_when_volumes_are_crowded(inputs):
    # Small volumes and large patches: strata run out of room, patches get cut in the
    # merge and released, and the stratum -1 fill has to make up the shortfall.
    got, expected = run_both(inputs, noise=False, shuffle=False)
    assert as_tuples(got) == as_tuples(expected.patches)
    assert len(got) == inputs["n"] - expected.unfilled


@EXAMPLES
@given(clasp_inputs(small_volumes=True))
def test_noisy_claspe_matches_reference(inputs):
    got, expected = run_both(inputs, noise=True, shuffle=True)
    assert as_tuples(got) == as_tuples(expected.patches)
    assert_same_scores(got, expected.patches)


def test_crowded_inputs_exercise_shortfall_and_release():
    """The crowded examples really reach the shortfall fill, also with released patches."""
    rng = np.random.default_rng(7)
    seen_shortfall = seen_release_fill = 0
    for trial in range(60):
        c = int(rng.integers(2, 5))
        volumes = {
            f"case_{v}": gamma_probabilities(
                rng, tuple(rng.integers(2, 6, size=3)), c, floor_background_only=True
            )
            for v in range(int(rng.integers(2, 4)))
        }
        n = int(rng.integers(2, 10))
        patch = tuple(int(v) for v in rng.integers(2, 5, size=3))
        inputs = {
            "volumes": volumes,
            "n": n,
            "loop": 0,
            "patch_size": patch,
            "stride": 1,
            "per_volume": int(rng.integers(1, 3)),
            "annotated": {},
            "alpha": 0.66,
            "n_loops": 5,
            "seed": trial,
        }
        got, expected = run_both(inputs, noise=True, shuffle=True)
        assert as_tuples(got) == as_tuples(expected.patches)
        if expected.shortfall:
            seen_shortfall += 1
        # A fill patch placed where a patch of the same volume was cut in the merge.
        if any(
            case == other and ref.overlaps(box, cut)
            for case, box in expected.filled
            for other, cut in expected.released
        ):
            seen_release_fill += 1
    assert seen_shortfall >= 10
    assert seen_release_fill >= 5


def test_fill_takes_the_place_of_a_released_patch():
    """Two 4³ volumes with one candidate each, F = 3, n = 2: both volumes' class-1 stratum
    takes its only candidate; the merge keeps the better one and releases the other, which
    the stratum -1 fill then takes."""
    hi = np.empty((4, 4, 4, 4), np.float32)
    hi[0], hi[1:] = 0.4, 0.2
    lo = np.empty((4, 4, 4, 4), np.float32)
    lo[0], lo[1:] = 0.7, 0.1
    volumes = {"hi": hi, "lo": lo}
    strategy = ClaspPE(noise=False, shuffle_strata=False)
    got = strategy.query(volumes, 2, 0, (4, 4, 4), device="cpu")
    maps = {k: uncertainty.class_scores(v, device="cpu") for k, v in volumes.items()}
    expected = ref.reference_clasp(maps, 2, 0, (4, 4, 4), noise=False, shuffle_strata=False)
    assert expected.quotas == {1: 1, 2: 0, 3: 0, -1: 1}
    assert expected.shortfall == 1
    assert as_tuples(got) == as_tuples(expected.patches)
    assert as_tuples(got) == [
        ("hi", (0, 0, 0), (4, 4, 4), 1),
        ("lo", (0, 0, 0), (4, 4, 4), -1),
    ]


# -- quotas, caps and the schedule -------------------------------------------------------------


def big_volumes(seed: int, n_cases: int = 3, c: int = 4):
    rng = np.random.default_rng(seed)
    return {
        f"case_{i:03d}": gamma_probabilities(rng, (12, 14, 16), c, floor_background_only=True)
        for i in range(n_cases)
    }


@pytest.mark.parametrize("n", [1, 2, 7, 20, 33])
@pytest.mark.parametrize("shuffle", [False, True])
def test_exact_quota_counts_when_volumes_have_room(n, shuffle):
    volumes = big_volumes(n)
    strategy = ClaspPE(seed=3, shuffle_strata=shuffle)
    patches = strategy.query(volumes, n, 1, (3, 3, 3), device="cpu")
    quotas = strategy.quotas(n, 3, 1)
    assert len(patches) == n
    counts = {s: sum(p.stratum == s for p in patches) for s in quotas}
    assert counts == quotas
    fg = math.floor(0.66 * n + 1e-9)
    assert quotas[-1] == n - fg
    assert sorted(quotas[c] for c in (1, 2, 3)) in (
        [fg // 3] * 3,
        [fg // 3] * (3 - fg % 3) + [fg // 3 + 1] * (fg % 3),
    )
    # Output order: strata ascending, -1 last, best first within each.
    order = [(p.stratum == -1, p.stratum) for p in patches]
    assert order == sorted(order)
    for s in quotas:
        scores = [np.float32(p.score) for p in patches if p.stratum == s]
        assert scores == sorted(scores, reverse=True)


def test_quota_remainder_goes_to_lowest_labels_without_shuffle_and_to_drawn_ones_with():
    alpha = as_fraction(0.66, "alpha")
    # floor(0.66 * 10) = 6 over F = 4: 1 each, remainder 2.
    assert split_quotas(10, alpha, 4, seed=0, loop=0, shuffle=False) == {
        1: 2,
        2: 2,
        3: 1,
        4: 1,
        -1: 4,
    }
    drawn = {
        tuple(
            c
            for c in range(1, 5)
            if split_quotas(10, alpha, 4, seed=s, loop=0, shuffle=True)[c] == 2
        )
        for s in range(40)
    }
    assert len(drawn) > 1 and all(len(d) == 2 for d in drawn)


def test_alpha_is_used_as_the_decimal_it_is_written_as():
    alpha = as_fraction(0.66, "alpha")
    # Binary floating point gives floor(50 * (1 - 0.66)) = 16.
    assert volume_caps(50, alpha, 3)[-1] == 17
    assert volume_caps(50, alpha, 3)[1] == math.floor(50 * 66 / 100 / 4)
    assert volume_caps(1, alpha, 3) == {1: 1, 2: 1, 3: 1, -1: 1}
    assert split_quotas(50, alpha, 3, seed=0, loop=0, shuffle=False)[-1] == 17


def test_beta_schedule():
    assert [beta_schedule(t, 5) for t in range(4)] == pytest.approx(
        [1.0, 3.16227766, 10.0, 31.6227766]
    )
    assert [beta_schedule(t, 5) for t in (4, 5, 50)] == [100.0, 100.0, 100.0]
    assert beta_schedule(0, 1) == 100.0
    assert beta_schedule(0, 2) == 1.0 and beta_schedule(1, 2) == 100.0
    strategy = ClaspPE(beta0=2.0, beta_max=8.0, n_loops=3)
    assert strategy.beta(0) == 2.0 and strategy.beta(1) == pytest.approx(4.0)
    assert strategy.beta(2) == 8.0
    assert ClaPE().beta(0) is None
    assert [ClapPE().beta(t) for t in range(7)] == [1.0] * 7
    with pytest.raises(ValueError, match="loop"):
        beta_schedule(-1, 5)
    with pytest.raises(ValueError, match="n_loops"):
        ClaspPE(n_loops=0)


def test_query_scores_are_noised_log_means_with_the_schedules_beta():
    volumes = big_volumes(1, n_cases=1)
    maps = {k: uncertainty.class_scores(v, device="cpu") for k, v in volumes.items()}
    for loop in (0, 2, 7):
        got = ClaspPE(seed=5).query(volumes, 6, loop, (4, 4, 4), stride=2, device="cpu")
        expected = ref.reference_clasp(maps, 6, loop, (4, 4, 4), stride=2, seed=5)
        assert expected.beta == beta_schedule(loop, 5)
        assert as_tuples(got) == as_tuples(expected.patches)
        assert_same_scores(got, expected.patches)


# -- invariants --------------------------------------------------------------------------------


def _overlap(a: Patch, b: Patch) -> bool:
    return a.file == b.file and a.overlaps(b)


@EXAMPLES
@given(clasp_inputs(small_volumes=True), st.booleans())
def test_no_overlaps_with_annotated_or_each_other(inputs, noise):
    patches = ClaspPE(noise=noise, seed=inputs["seed"]).query(
        inputs["volumes"],
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        stride=inputs["stride"],
        per_volume=inputs["per_volume"],
        annotated=inputs["annotated"],
        device="cpu",
    )
    assert len(patches) <= inputs["n"]
    for a, b in itertools.combinations(patches, 2):
        assert not _overlap(a, b)
    for p in patches:
        assert not any(_overlap(p, q) for q in inputs["annotated"].get(p.file, []))
        shape = inputs["volumes"][p.file].shape[-3:]
        assert all(0 <= c and c + s <= d for c, s, d in zip(p.coords, p.size, shape, strict=True))
        assert all(c % st == 0 for c, st in zip(p.coords, inputs["stride"], strict=True))


def test_never_fewer_than_n_while_candidates_remain():
    # One 6x6x6 volume, 3x3x3 patches: exactly 8 disjoint candidates at stride 3.
    volumes = big_volumes(2, n_cases=1)
    volumes = {"v": volumes["case_000"][:, :6, :6, :6].copy()}
    volumes["v"] /= volumes["v"].sum(0)
    for n in range(0, 11):
        patches = ClaspPE(seed=n).query(volumes, n, 0, (3, 3, 3), stride=3, device="cpu")
        assert len(patches) == min(n, 8)


def test_same_seed_same_query_other_seed_other_query():
    volumes = big_volumes(4)
    a = ClaspPE(seed=1).query(volumes, 12, 0, (3, 4, 4), device="cpu")
    b = ClaspPE(seed=1).query(volumes, 12, 0, (3, 4, 4), device="cpu")
    c = ClaspPE(seed=2).query(volumes, 12, 0, (3, 4, 4), device="cpu")
    assert identical_patches(a, b)
    assert as_tuples(a) != as_tuples(c)
    # Another loop draws other noise too.
    d = ClaspPE(seed=1).query(volumes, 12, 1, (3, 4, 4), device="cpu")
    assert as_tuples(a) != as_tuples(d)


def test_independent_of_dict_order_and_of_other_cases_names():
    volumes = big_volumes(5)
    forward = ClaspPE(seed=9).query(volumes, 10, 0, (3, 3, 3), device="cpu")
    backward = ClaspPE(seed=9).query(dict(reversed(volumes.items())), 10, 0, (3, 3, 3))
    assert identical_patches(forward, backward)


def test_independent_of_thread_count(tmp_path):
    volumes = big_volumes(6)
    for name, v in volumes.items():
        np.save(tmp_path / f"{name}.npy", v)
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        import clasp_rs
        names = {sorted(volumes)!r}
        vols = {{n: np.load(r"{tmp_path}/" + n + ".npy") for n in names}}
        ps = clasp_rs.ClaspPE(seed=11).query(vols, 15, 1, (3, 3, 3), device="cpu")
        print(json.dumps([[p.file, p.coords, p.size, p.score, p.stratum] for p in ps]))
        """
    )
    outputs = []
    for threads in ("1", "2"):
        env = {**os.environ, "CLASP_RS_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 100


def test_arrays_tensors_paths_and_fold_lists_give_the_same_query(tmp_path):
    import torch

    rng = np.random.default_rng(8)
    folds = gamma_probabilities(rng, (9, 10, 11), 3, 2, floor_background_only=True)
    mean = folds.mean(axis=0)
    np.savez_compressed(tmp_path / "f0.npz", probabilities=folds[0])
    np.savez_compressed(tmp_path / "f1.npz", probabilities=folds[1])
    strategy = ClaspPE(seed=4)
    args = (6, 0, (3, 3, 3))
    results = [
        strategy.query({"x": folds}, *args, device="cpu"),
        strategy.query({"x": torch.from_numpy(folds)}, *args, device="cpu"),
        strategy.query({"x": [tmp_path / "f0.npz", tmp_path / "f1.npz"]}, *args, device="cpu"),
        strategy.query({"x": folds}, *args, device="cpu", workdir=tmp_path / "work"),
    ]
    assert all(identical_patches(r, results[0]) for r in results[1:])
    # The mean of the folds as input: same maps up to float32 rounding of the mean.
    assert as_tuples(strategy.query({"x": mean}, *args, device="cpu")) == as_tuples(results[0])
    assert sorted(os.listdir(tmp_path / "work")) == ["x_all.npy", "x_c1.npy", "x_c2.npy"]


def test_reference_maps_agree_with_the_uncertainty_module():
    rng = np.random.default_rng(3)
    for m in (None, 3):
        p = gamma_probabilities(rng, (4, 5, 6), 4, m, floor_background_only=True)
        p[..., 1, 0, 0, 0] = 0.0  # an exact zero: 0 ln 0 = 0
        p /= p.sum(axis=-4, keepdims=True)
        np.testing.assert_allclose(
            uncertainty.class_scores(p, device="cpu"), ref.reference_maps(p), atol=2e-6
        )


# -- API and bad input -------------------------------------------------------------------------


def test_registry_names_and_lazy_export():
    assert list(STRATEGIES) == [
        "clasp-pe",
        "cla-pe",
        "clap-pe",
        "pe",
        "power-pe",
        "bald",
        "power-bald",
        "softrank-bald",
        "random",
        "random-fg33",
        "random-fg66",
    ]
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        assert get_strategy(name, seed=3).seed == 3
    assert clasp_rs.ClaspPE is ClaspPE
    assert isinstance(get_strategy("clasp-pe", alpha=0.5), ClaspPE)
    with pytest.raises(ValueError, match="unknown strategy 'nope'.*clasp-pe"):
        get_strategy("nope")
    with pytest.raises(ValueError, match="strategy 'pe'"):
        get_strategy("pe", alpha=0.5)


def test_bad_arguments_raise_clear_errors():
    volumes = big_volumes(0, n_cases=1)
    strategy = ClaspPE()
    with pytest.raises(InvalidPatchError, match="patch size must be 3"):
        strategy.query(volumes, 3, 0, (4, 4))
    with pytest.raises(InvalidPatchError, match="n"):
        strategy.query(volumes, -1, 0, (4, 4, 4))
    with pytest.raises(ValueError, match="loop"):
        strategy.query(volumes, 3, -2, (4, 4, 4))
    with pytest.raises(ValueError, match="per_volume"):
        strategy.query(volumes, 3, 0, (4, 4, 4), per_volume=0)
    with pytest.raises(ValueError, match="alpha"):
        ClaspPE(alpha=1.5)
    with pytest.raises(ValueError, match="beta_max"):
        ClaspPE(beta_max=0.0)
    with pytest.raises(ValueError, match="'x' names no volume"):
        strategy.query(volumes, 3, 0, (4, 4, 4), annotated=[Patch("x", (0, 0, 0), (1, 1, 1))])
    with pytest.raises(clasp_rs.InvalidProbabilitiesError):
        strategy.query({"x": np.full((3, 4, 4, 4), 0.5, np.float32)}, 3, 0, (2, 2, 2))
    with pytest.raises(ValueError, match="case names"):
        strategy.query({"a/b": volumes["case_000"]}, 3, 0, (2, 2, 2))


def test_n_zero_and_no_volumes():
    volumes = big_volumes(0, n_cases=2)
    assert ClaspPE().query(volumes, 0, 0, (3, 3, 3), device="cpu") == []
    assert ClaspPE().query({}, 5, 0, (3, 3, 3), device="cpu") == []


def test_request_build_accepts_tuples_for_annotated():
    request = QueryRequest.build(3, 0, (2, 2, 2), annotated={"a": [(0, 0, 0, 1, 1, 1)]})
    assert request.boxes("a") == [(0, 0, 0, 1, 1, 1)]
    assert request.boxes("b") == []
