"""The fixed, seeded pool / test split of an experiment."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from clasp_rs.exceptions import DatasetError

__all__ = ["TEST_FRACTION", "split_cases"]

TEST_FRACTION = 0.25


def split_cases(
    classes: Mapping[str, Iterable[int]],
    *,
    seed: int,
    test_fraction: float = TEST_FRACTION,
) -> tuple[list[str], list[str]]:
    """Split cases into a pool (to annotate and train on) and a test set, keeping every
    foreground class in both.

    The test set has ``round(test_fraction * n)`` cases (at least 1). The cases are put in a
    seeded random order; first, for each class (rarest first, ties by label) not yet in the
    test set, the first case in that order that contains it and whose move leaves every class
    in the pool goes to the test set; then cases in that order fill the test set up to its
    size, skipping any whose move would take a class's last pool case.

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
    order = [cases[i] for i in np.random.Generator(np.random.PCG64(seed)).permutation(len(cases))]
    test: list[str] = []
    pool_count = {c: len(holders[c]) for c in all_classes}

    def movable(case: str) -> bool:
        return case not in test and all(pool_count[c] > 1 for c in present[case])

    def move(case: str) -> None:
        test.append(case)
        for c in present[case]:
            pool_count[c] -= 1

    for c in sorted(all_classes, key=lambda c: (len(holders[c]), c)):
        if any(c in present[case] for case in test):
            continue
        choice = next((case for case in order if c in present[case] and movable(case)), None)
        if choice is None:
            raise DatasetError(
                f"cannot put class {c} in the test set without taking another class's last "
                f"pool case (cases with class {c}: {holders[c]})"
            )
        move(choice)
    if len(test) > n_test:
        raise DatasetError(
            f"keeping every class in the test set needs {len(test)} test cases, more than the "
            f"{n_test} ({test_fraction:.0%} of {len(cases)}) a split allows; add cases that "
            "hold the rare classes"
        )
    for case in order:
        if len(test) == n_test:
            break
        if movable(case):
            move(case)
    if len(test) < n_test:
        raise DatasetError(
            f"only {len(test)} of {n_test} test cases can move out of the pool without taking a "
            "class's last pool case"
        )
    return sorted(set(cases) - set(test)), sorted(test)
