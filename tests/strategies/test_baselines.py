"""The baselines (PE, PowerPE, BALD, PowerBALD, SoftrankBALD, Random), Random FG and the
starting budget, against the brute-force reference and DESIGN.md's rules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference_clasp as ref
from clasp_rs import Patch, uncertainty
from clasp_rs.exceptions import InvalidProbabilitiesError
from clasp_rs.strategies import (
    BALD,
    PE,
    PowerBALD,
    PowerPE,
    Random,
    RandomFG33,
    RandomFG66,
    SoftrankBALD,
    get_strategy,
)
from generators import gamma_probabilities, is_centred_on, label_volumes

# These tests compare every query with a reference, short ones included (crowded volumes);
# the ShortQueryWarning that Strategy.query gives then has its own test (test_drop_in_traps).
pytestmark = pytest.mark.filterwarnings("ignore::clasp_rs.ShortQueryWarning")

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def single_map_inputs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = draw(
        st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3, unique=True)
    )
    c = draw(st.integers(2, 4))
    volumes = {
        name: gamma_probabilities(rng, tuple(int(v) for v in rng.integers(2, 8, size=3)), c, 2)
        for name in names
    }
    annotated = {}
    for name in names:
        shape = volumes[name].shape[-3:]
        if draw(st.booleans()):
            start = [int(rng.integers(0, s)) for s in shape]
            annotated[name] = [Patch(name, start, [int(rng.integers(1, 4))] * 3)]
    return {
        "volumes": volumes,
        "n": draw(st.integers(0, 10)),
        "loop": draw(st.integers(0, 4)),
        "patch_size": tuple(draw(st.integers(1, 4)) for _ in range(3)),
        "stride": tuple(draw(st.integers(1, 3)) for _ in range(3)),
        "per_volume": draw(st.sampled_from([None, 1, 3])),
        "annotated": annotated,
        "seed": draw(st.integers(0, 2**32)),
    }


def as_tuples(patches):
    return [(p.file, p.coords, p.size, p.stratum) for p in patches]


def query(strategy, inputs):
    return strategy.query(
        inputs["volumes"],
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        stride=inputs["stride"],
        per_volume=inputs["per_volume"],
        annotated=inputs["annotated"],
        device="cpu",
    )


def common(inputs):
    return {
        "stride": inputs["stride"],
        "per_volume": inputs["per_volume"],
        "annotated": inputs["annotated"],
    }


def check_scores(got, expected):
    for p, q in zip(got, expected, strict=True):
        assert p.score == pytest.approx(q.score, rel=1e-9, abs=1e-12) or p.score == q.score


@EXAMPLES
@given(single_map_inputs(), st.booleans())
def test_pe_and_power_pe_match_top_k_on_entropy(inputs, power):
    strategy = (PowerPE if power else PE)(seed=inputs["seed"])
    got = query(strategy, inputs)
    entropy = {
        k: uncertainty.predictive_entropy(v, device="cpu") for k, v in inputs["volumes"].items()
    }
    expected = ref.reference_top_k(
        entropy,
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        beta=1.0 if power else None,
        seed=inputs["seed"],
        code=ref.CODE_ENTROPY,
        **common(inputs),
    )
    assert as_tuples(got) == as_tuples(expected)
    check_scores(got, expected)


@EXAMPLES
@given(single_map_inputs(), st.booleans())
def test_bald_and_power_bald_match_top_k_on_mutual_information(inputs, power):
    strategy = (PowerBALD if power else BALD)(seed=inputs["seed"])
    got = query(strategy, inputs)
    mi = {k: uncertainty.mutual_information(v, device="cpu") for k, v in inputs["volumes"].items()}
    expected = ref.reference_top_k(
        mi,
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        beta=1.0 if power else None,
        seed=inputs["seed"],
        code=ref.CODE_MUTUAL_INFORMATION,
        **common(inputs),
    )
    assert as_tuples(got) == as_tuples(expected)
    check_scores(got, expected)


@EXAMPLES
@given(single_map_inputs())
def test_random_matches_reference(inputs):
    got = query(Random(seed=inputs["seed"]), inputs)
    shapes = {k: v.shape[-3:] for k, v in inputs["volumes"].items()}
    expected = ref.reference_random(
        shapes,
        inputs["n"],
        inputs["loop"],
        inputs["patch_size"],
        seed=inputs["seed"],
        **common(inputs),
    )
    assert as_tuples(got) == as_tuples(expected)
    check_scores(got, expected)


@EXAMPLES
@given(single_map_inputs())
def test_softrank_bald_matches_reference(inputs):
    got = query(SoftrankBALD(seed=inputs["seed"]), inputs)
    mi = {k: uncertainty.mutual_information(v, device="cpu") for k, v in inputs["volumes"].items()}
    expected = ref.reference_softrank(
        mi, inputs["n"], inputs["loop"], inputs["patch_size"], seed=inputs["seed"], **common(inputs)
    )
    assert as_tuples(got) == as_tuples(expected)
    check_scores(got, expected)


def test_softrank_bald_with_more_candidates_than_one_block():
    rng = np.random.default_rng(2)
    volumes = {
        "a": gamma_probabilities(rng, (9, 10, 11), 3, 2),
        "b": gamma_probabilities(rng, (8, 9, 7), 3, 2),
    }
    got = SoftrankBALD(seed=1).query(volumes, 40, 0, (2, 2, 2), device="cpu")
    mi = {k: uncertainty.mutual_information(v, device="cpu") for k, v in volumes.items()}
    expected = ref.reference_softrank(mi, 40, 0, (2, 2, 2), seed=1)
    assert len(got) == 40
    assert as_tuples(got) == as_tuples(expected)


def test_bald_ranks_by_mutual_information_pe_by_entropy():
    # Region A (z < 4): both folds say 1/3 each: highest entropy, no disagreement.
    # Region B (z >= 4): the folds disagree confidently: lower entropy, high MI.
    folds = np.empty((2, 3, 8, 4, 4), np.float32)
    folds[:, :, :4] = 1 / 3
    folds[0, :, 4:] = np.array([0.9, 0.05, 0.05])[:, None, None, None]
    folds[1, :, 4:] = np.array([0.05, 0.9, 0.05])[:, None, None, None]
    volumes = {"v": folds}
    assert PE().query(volumes, 1, 0, (4, 4, 4), device="cpu")[0].coords == (0, 0, 0)
    assert BALD().query(volumes, 1, 0, (4, 4, 4), device="cpu")[0].coords == (4, 0, 0)


def test_bald_needs_folds():
    mean = gamma_probabilities(np.random.default_rng(0), (4, 4, 4), 3, 2).mean(axis=0)
    with pytest.raises(InvalidProbabilitiesError, match="at least 2 folds"):
        BALD().query({"v": mean}, 2, 0, (2, 2, 2), device="cpu")


def test_baselines_do_not_depend_on_dict_order():
    rng = np.random.default_rng(5)
    volumes = {name: gamma_probabilities(rng, (6, 7, 8), 3, 2) for name in ("x", "a", "m")}
    backward = dict(reversed(volumes.items()))
    for name in ("pe", "power-pe", "bald", "power-bald", "softrank-bald", "random"):
        strategy = get_strategy(name, seed=4)
        a = strategy.query(volumes, 9, 1, (2, 3, 3), device="cpu")
        b = strategy.query(backward, 9, 1, (2, 3, 3), device="cpu")
        assert a == b, name
        assert len(a) == 9
        assert all(p.stratum is None for p in a)


# -- Random FG ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, share", [(RandomFG33, 0.33), (RandomFG66, 0.66)])
def test_random_fg_centres_its_share_on_foreground(cls, share):
    labels = label_volumes(1)
    annotated = {"case_0": [Patch("case_0", (0, 0, 0), (4, 4, 4))]}
    patches = cls(seed=3).query(
        None, 12, 2, (4, 5, 5), stride=2, annotated=annotated, labels=labels
    )
    assert len(patches) == 12
    fg = [p for p in patches if p.stratum is not None]
    assert len(fg) == math.floor(share * 12 + 1e-9)
    for p in fg:
        assert p.stratum in (1, 2)
        assert is_centred_on(p, labels[p.file], p.stratum, (4, 5, 5))
    for p in patches:
        if p.stratum is None:
            assert all(c % 2 == 0 for c in p.coords)
    for a, b in itertools.combinations(patches, 2):
        assert not (a.file == b.file and a.overlaps(b))
    assert not any(p.file == "case_0" and p.overlaps(annotated["case_0"][0]) for p in patches)
    again = cls(seed=3).query(None, 12, 2, (4, 5, 5), stride=2, annotated=annotated, labels=labels)
    assert again == patches
    reordered = dict(reversed(labels.items()))
    assert (
        cls(seed=3).query(None, 12, 2, (4, 5, 5), stride=2, annotated=annotated, labels=reordered)
        == patches
    )
    other = cls(seed=4).query(None, 12, 2, (4, 5, 5), stride=2, annotated=annotated, labels=labels)
    assert as_tuples(other) != as_tuples(patches)


def test_random_fg_draws_classes_uniformly():
    labels = label_volumes(2, n_cases=4, shape=(20, 20, 20), classes=3)
    counts = {1: 0, 2: 0}
    for seed in range(30):
        for p in RandomFG66(seed=seed).query(None, 6, 0, (2, 2, 2), labels=labels):
            if p.stratum is not None:
                counts[p.stratum] += 1
    assert counts[1] + counts[2] == 30 * 3
    assert 0.3 < counts[1] / 90 < 0.7


def test_random_fg_needs_labels_and_the_same_cases():
    labels = label_volumes(1)
    with pytest.raises(TypeError):
        RandomFG33().query(None, 3, 0, (2, 2, 2))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="same cases"):
        RandomFG33().query({"other": None}, 3, 0, (2, 2, 2), labels=labels)
