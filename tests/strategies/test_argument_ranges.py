"""Integer and number arguments out of the engine's range are refused by name, with their
range (issue 10, fault 5: ``ClaspPE().query(..., loop=2**63, ...)`` raised
``OverflowError ... 'r#loop'``, a Rust identifier in a user's message)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from clasp_rs import ClaspError, ClaspPE, Patch, select_across_volumes, select_top_patches
from clasp_rs.strategies import get_strategy
from clasp_rs.strategies.clasp import ClapPE


def _volumes() -> dict[str, np.ndarray]:
    p = np.random.default_rng(0).random((3, 6, 8, 8))
    return {"case_a": p / p.sum(0)}


def _query(**kw: Any) -> Callable[[], object]:
    strategy_kw = {k: kw.pop(k) for k in list(kw) if k in ("seed", "n_loops", "alpha", "beta0")}
    args = {"n": 4, "loop": 1, "patch_size": (2, 2, 2), **kw}
    return lambda: ClaspPE(**strategy_kw).query(_volumes(), device="cpu", **args)


SCORES = np.random.default_rng(1).random((6, 8, 8))

CASES: dict[str, tuple[Callable[[], object], str]] = {
    "loop 2**63": (_query(loop=2**63), "loop must be an integer in [0, 2**63)"),
    "loop 10**400": (_query(loop=10**400), "loop must be an integer in [0, 2**63)"),
    "n_loops 2**63": (_query(n_loops=2**63), "n_loops must be an integer in [1, 2**63)"),
    "seed 2**64": (_query(seed=2**64), "seed must be an integer in [0, 2**64)"),
    "n 2**63": (_query(n=2**63), "n (number of patches) must be an integer in [0, 2**63)"),
    "stride 2**63": (_query(stride=2**63), "stride must be a positive integer of at most 2**62"),
    "per_volume 2**64": (
        _query(per_volume=2**64),
        "per_volume must be an integer in [1, 2**63)",
    ),
    "patch size 2**64": (_query(patch_size=(2**64, 2, 2)), "each at most 2**62"),
    "alpha 10**400": (_query(alpha=10**400), "alpha must be a number in [0, 1]"),
    "beta0 10**400": (_query(beta0=10**400), "beta0 must be a finite number > 0"),
    "clap-pe beta 10**400": (
        lambda: ClapPE(beta=10**400).query(_volumes(), 2, 0, (2, 2, 2)),
        "beta must be a finite number > 0",
    ),
    "strategy seed 2**70": (
        lambda: get_strategy("random", seed=2**70),
        "seed must be an integer in [0, 2**64)",
    ),
    "select_top_patches beta 10**400": (
        lambda: select_top_patches(SCORES, (2, 2, 2), 2, beta=10**400),
        "beta must be a finite number > 0",
    ),
    "select_top_patches seed 2**64": (
        lambda: select_top_patches(SCORES, (2, 2, 2), 2, beta=1.0, seed=2**64),
        "seed must be an integer in [0, 2**64)",
    ),
    "select_across_volumes n 2**64": (
        lambda: select_across_volumes({"a": SCORES}, (2, 2, 2), 2**64),
        "n (number of patches) must be an integer in [0, 2**63)",
    ),
    "annotated box beyond int64": (
        lambda: select_top_patches(SCORES, (2, 2, 2), 2, annotated=[(0, 0, 0, 2**70, 1, 1)]),
        "each at most 2**62",
    ),
    "annotated Patch of size 2**62": (
        _query(annotated={"case_a": [Patch("case_a", (0, 0, 0), (2**62, 1, 1))]}),
        "",  # works: a Patch beyond 2**62 cannot be made (tests/io/test_loop_file_limits.py)
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_out_of_range_arguments_are_named_with_their_range(name: str) -> None:
    call, match = CASES[name]
    if not match:
        call()
        return
    with pytest.raises(ClaspError) as info:
        call()
    message = str(info.value)
    assert match in message, message
    assert "r#" not in message and len(message.splitlines()) == 1 and len(message) < 300


def test_the_largest_loop_still_queries() -> None:
    patches = ClaspPE().query(_volumes(), 4, 2**63 - 1, (2, 2, 2), device="cpu")
    assert len(patches) == 4
