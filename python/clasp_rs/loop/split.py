"""The fixed, seeded pool / test split of an experiment."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from clasp_rs.exceptions import DatasetError

__all__ = ["TEST_FRACTION", "split_cases"]

TEST_FRACTION = 0.25
# Seeded case orders tried before a split is declared impossible.
_ORDERS = 200


def split_cases(
    classes: Mapping[str, Iterable[int]],
    *,
    seed: int,
    test_fraction: float = TEST_FRACTION,
) -> tuple[list[str], list[str]]:
    """Split cases into a pool (to annotate and train on) and a test set, keeping every
    foreground class in both.

    The test set has ``round(test_fraction * n)`` cases (at least 1). The cases are put in a
    seeded random order; greedily, the first case in that order that brings the most classes
    still missing from the test set, and whose move leaves every class in the pool, goes to
    the test set; then cases in that order fill the test set up to its size, skipping any
    whose move would take a class's last pool case. When an order gives no valid split, the
    next seeded order is tried (up to 200).

    Args:
        classes: case name -> the foreground labels present in its ground truth.
        seed: seed of the order (numpy PCG64).
        test_fraction: share of the cases in the test set.

    Returns:
        ``(pool, test)``, each sorted by case name.

    Raises:
        DatasetError: fewer than two cases, a class present in fewer than two cases, or no
            test set of the wanted size that holds every class while the pool keeps them all.
    """
    present = {str(case): {int(c) for c in labels} for case, labels in classes.items()}
    cases = sorted(present)
    if len(cases) < 2:
        raise DatasetError(f"need at least 2 cases to split into pool and test, got {len(cases)}")
    n_test = max(1, math.floor(test_fraction * len(cases) + 0.5))
    if n_test >= len(cases):
        raise DatasetError(f"a test set of {n_test} leaves no pool case out of {len(cases)}")
    all_classes = sorted(set().union(*present.values()))
    holders = {c: [case for case in cases if c in present[case]] for c in all_classes}
    rare = [c for c, with_c in holders.items() if len(with_c) < 2]
    if rare:
        raise DatasetError(
            "cannot keep every class in both pool and test: class(es) "
            + ", ".join(f"{c} (only in {holders[c]})" for c in rare)
            + " occur in fewer than two cases"
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    for _ in range(_ORDERS):
        order = [cases[i] for i in rng.permutation(len(cases))]
        test = _attempt(order, present, holders, n_test)
        if test is not None:
            return sorted(set(cases) - set(test)), sorted(test)
    raise DatasetError(
        f"found no test set of {n_test} case(s) ({test_fraction:.0%} of {len(cases)}) that holds "
        f"every class while the pool keeps them all (tried {_ORDERS} seeded orders); add cases "
        "that hold the rare classes "
        + ", ".join(f"{c} (in {len(h)} case(s))" for c, h in sorted(holders.items()))
    )


def _attempt(
    order: list[str], present: dict[str, set[int]], holders: dict[int, list[str]], n_test: int
) -> list[str] | None:
    """Greedy cover in ``order``: repeatedly move the first case that brings the most
    classes still missing from the test set (and takes no class's last pool case), then fill
    up in ``order``. None when this order gives no valid split."""
    test: list[str] = []
    pool_count = {c: len(h) for c, h in holders.items()}

    def movable(case: str) -> bool:
        return case not in test and all(pool_count[c] > 1 for c in present[case])

    def move(case: str) -> None:
        test.append(case)
        for c in present[case]:
            pool_count[c] -= 1

    missing = set(holders)
    while missing:
        gains = [
            (len(present[case] & missing), -i, case)
            for i, case in enumerate(order)
            if movable(case)
        ]
        best = max(gains, default=(0, 0, ""))
        if best[0] == 0 or len(test) == n_test:
            return None
        move(best[2])
        missing -= present[best[2]]
    for case in order:
        if len(test) == n_test:
            break
        if movable(case):
            move(case)
    return test if len(test) == n_test else None
