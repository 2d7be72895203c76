"""The starting budget (clasp_rs.loop.starting_budget): two patches centred on every label in
different cases, then Random 33 % FG."""

from __future__ import annotations

import itertools
import math

import pytest

from clasp_rs.exceptions import InvalidPatchError
from clasp_rs.loop.starting_budget import starting_budget
from generators import is_centred_on, label_volumes


def as_tuples(patches):
    return [(p.file, p.coords, p.size, p.stratum) for p in patches]


def test_starting_budget_rules():
    labels = label_volumes(7, n_cases=4, classes=4)
    labels["case_3"][:] = 0  # background only: never holds a foreground label patch
    patches = starting_budget(
        labels, 20, (4, 4, 4), seed=1, files={c: c + ".nii.gz" for c in labels}
    )
    assert len(patches) == 20
    files = {c + ".nii.gz": c for c in labels}
    head = patches[:8]
    assert [p.stratum for p in head] == [0, 0, 1, 1, 2, 2, 3, 3]
    for value in range(4):
        pair = [p for p in head if p.stratum == value]
        assert pair[0].file != pair[1].file
        for p in pair:
            assert is_centred_on(p, labels[files[p.file]], value, (4, 4, 4))
    rest = patches[8:]
    fg = [p for p in rest if p.stratum is not None]
    assert len(fg) == math.floor(0.33 * 12)
    for p in fg:
        assert p.stratum > 0 and is_centred_on(p, labels[files[p.file]], p.stratum, (4, 4, 4))
    for a, b in itertools.combinations(patches, 2):
        assert not (a.file == b.file and a.overlaps(b))
    assert (
        starting_budget(labels, 20, (4, 4, 4), seed=1, files={c: c + ".nii.gz" for c in labels})
        == patches
    )
    assert as_tuples(starting_budget(labels, 20, (4, 4, 4), seed=2)) != as_tuples(patches)


def test_starting_budget_label_in_one_case_and_ignore_value():
    labels = label_volumes(3, n_cases=3, classes=2)
    for case in ("case_1", "case_2"):
        labels[case][labels[case] == 1] = 0
    labels["case_0"][0, 0, 0] = 9  # an ignore voxel: never a class
    patches = starting_budget(labels, 6, (3, 3, 3), ignore_label=9)
    strata = [p.stratum for p in patches[:3]]
    assert strata == [0, 0, 1]
    assert patches[2].file == "case_0"
    assert len(patches) == 6


def test_starting_budget_too_small():
    labels = label_volumes(1, classes=3)
    with pytest.raises(InvalidPatchError, match="smaller than the 6 patches"):
        starting_budget(labels, 5, (3, 3, 3))
