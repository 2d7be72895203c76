"""Pool / test split (clasp_rs.loop.split) and the auto patch size and budget
(clasp_rs.loop.autosize), against plain references."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np
import pytest

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.autosize import (
    auto_budget,
    auto_patch_size,
    largest_component_box,
)
from clasp_rs.loop.split import split_cases

# --- split ------------------------------------------------------------------------------------


def _random_dataset(rng: np.random.Generator, n_cases: int, n_classes: int) -> dict[str, set]:
    while True:
        classes = {
            f"case_{i:03d}": {c for c in range(1, n_classes + 1) if rng.random() < 0.6}
            for i in range(n_cases)
        }
        holders = [sum(c in s for s in classes.values()) for c in range(1, n_classes + 1)]
        if min(holders) >= 2:
            return classes


def _feasible(classes: dict[str, set], n_test: int) -> bool:
    """Brute force: is there any test set of n_test cases keeping every class in both?"""
    cases = sorted(classes)
    everything = set().union(*classes.values())
    for test in itertools.combinations(cases, n_test):
        pool = [c for c in cases if c not in test]
        if (
            set().union(*(classes[c] for c in test)) == everything
            and set().union(*(classes[c] for c in pool)) == everything
        ):
            return True
    return False


@pytest.mark.parametrize("seed", range(60))
def test_split_keeps_every_class_in_pool_and_test(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 13))
    classes = _random_dataset(rng, n, int(rng.integers(1, 5)))
    n_test = max(1, int(np.floor(0.25 * n + 0.5)))
    if not _feasible(classes, n_test):
        with pytest.raises(DatasetError, match="found no test set"):
            split_cases(classes, seed=seed)
        return
    pool, test = split_cases(classes, seed=seed)
    assert len(test) == n_test
    assert sorted(pool + test) == sorted(classes)
    assert not set(pool) & set(test)
    everything = set().union(*classes.values())
    assert set().union(*(classes[c] for c in test)) == everything
    assert set().union(*(classes[c] for c in pool)) == everything


def test_split_is_seeded_and_depends_on_the_seed():
    classes = {f"case_{i:02d}": {1, 2} for i in range(20)}
    first = split_cases(classes, seed=3)
    assert split_cases(classes, seed=3) == first
    others = {tuple(split_cases(classes, seed=s)[1]) for s in range(10)}
    assert len(others) > 1
    assert len(first[1]) == 5 and len(first[0]) == 15


def test_split_of_the_bundled_layout_when_a_class_is_rare():
    # kidney (3) only in case_a and case_b: one goes to the test set, the other stays.
    classes = {"case_a": {1, 3}, "case_b": {1, 3}, **{f"case_{i}": {1, 2} for i in range(6)}}
    pool, test = split_cases(classes, seed=0)
    assert len(test) == 2
    assert ("case_a" in test) != ("case_b" in test)


def test_class_in_one_case_only_is_an_error():
    classes = {"a": {1, 2}, "b": {1}, "c": {1}, "d": {1}}
    with pytest.raises(DatasetError, match=r"class\(es\) 2 \(only in \['a'\]\)"):
        split_cases(classes, seed=0)


def test_too_many_rare_classes_for_a_quarter_is_an_error():
    # Four classes, each in exactly two cases with no overlap: the test set needs 4 cases of 8.
    classes = {f"c{i}{j}": {i} for i in range(1, 5) for j in range(2)}
    with pytest.raises(DatasetError, match="found no test set of 2 case"):
        split_cases(classes, seed=0)


# --- auto patch size --------------------------------------------------------------------------


def _components_bfs(mask: np.ndarray) -> list[list[tuple[int, int, int]]]:
    """Face-connected components by breadth-first search (the plain reference)."""
    seen = np.zeros(mask.shape, dtype=bool)
    out = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, component = deque([start]), []
        while queue:
            v = queue.popleft()
            component.append(v)
            for axis in range(3):
                for step in (-1, 1):
                    w = list(v)
                    w[axis] += step
                    w = tuple(w)
                    if 0 <= w[axis] < mask.shape[axis] and mask[w] and not seen[w]:
                        seen[w] = True
                        queue.append(w)
        out.append(component)
    return out


@pytest.mark.parametrize("seed", range(25))
def test_largest_component_box_matches_breadth_first_search(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(2, 9, size=3))
    mask = rng.random(shape) < rng.uniform(0.1, 0.6)
    components = _components_bfs(mask)
    box = largest_component_box(mask)
    if not components:
        assert box is None
        return
    size = max(len(c) for c in components)
    # Ties: the component found first in C order, which BFS from C-order seeds also finds first.
    largest = next(c for c in components if len(c) == size)
    points = np.asarray(largest)
    expected = tuple(int(v) for v in points.max(axis=0) - points.min(axis=0) + 1)
    assert box == expected


def test_auto_patch_size_is_the_median_of_class_medians():
    boxes = {
        1: [(10, 40, 30), (12, 44, 34), (20, 50, 20)],  # median (12, 44, 30)
        2: [(4, 8, 8), (6, 10, 10)],  # median (5, 9, 9)
        3: [(30, 20, 25)],  # median (30, 20, 25)
    }
    assert auto_patch_size(boxes) == (12, 20, 25)
    # An even number of classes: the mean of the two middle medians, rounded half up.
    assert auto_patch_size({1: [(3, 3, 3)], 2: [(4, 6, 8)]}) == (4, 5, 6)


def test_auto_patch_size_without_foreground_is_an_error():
    with pytest.raises(DatasetError, match="no foreground"):
        auto_patch_size({1: [], 2: []})


def test_auto_budget_is_fifty_per_class_and_a_hundred_per_hard_class():
    assert auto_budget([1, 2, 3]) == 150
    assert auto_budget([1, 2, 3], hard=[2]) == 200
    assert auto_budget([1, 2, 3], hard=[1, 2, 3]) == 300
    with pytest.raises(DatasetError, match=r"\[7\] are not foreground classes"):
        auto_budget([1, 2], hard=[7])
