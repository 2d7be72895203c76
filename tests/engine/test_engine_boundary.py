"""The one adapter of the native engine (clasp_rs._engine) and the binding under it: typed
records with the engine's own candidate index, map names in error messages, every argument
error a ClaspError, and one merge order."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from clasp_rs import _clasp_rs, _engine
from clasp_rs._engine import MapJob, Taken, VolumeJob, candidate_index, merge_best_first
from clasp_rs.exceptions import ClaspError, InvalidPatchError, InvalidScoresError


def test_records_carry_the_candidate_index_of_their_start():
    rng = np.random.default_rng(0)
    for shape, patch, stride in [
        ((9, 10, 11), (3, 4, 5), (1, 1, 1)),
        ((8, 7, 9), (9, 2, 3), (2, 3, 1)),
    ]:
        vol = rng.random(shape).astype(np.float32)
        (taken,) = _engine.select([VolumeJob([MapJob(vol, 6)])], patch, stride)[0]
        assert taken
        for t in taken:
            assert isinstance(t, Taken)
            assert t.index == candidate_index(t.start, shape, patch, stride)
            assert t.box == (*t.start, *t.size)
            box = vol[tuple(slice(s, s + d) for s, d in zip(t.start, t.size, strict=True))]
            assert t.mean == pytest.approx(float(box.astype(np.float64).mean()), rel=1e-9)
            assert t.key == t.mean  # no noise: ranked by the mean


def test_errors_name_the_map_as_asked():
    bad = np.ones((4, 4, 4), dtype=np.float32)
    bad[1, 2, 3] = np.nan
    with pytest.raises(InvalidScoresError, match=r"^volumes\[0\]\[0\] contains NaN"):
        _engine.select([VolumeJob([MapJob(bad, 1)])], (2, 2, 2), (1, 1, 1))
    with pytest.raises(InvalidScoresError, match=r"^volume 'a' contains NaN"):
        _engine.select([VolumeJob([MapJob(bad, 1)], name="volume 'a'")], (2, 2, 2), (1, 1, 1))
    with pytest.raises(InvalidScoresError, match=r"^the u map contains NaN"):
        _clasp_rs.select_strata(
            [[bad]], (2, 2, 2), (1, 1, 1), [[1]], [[None]], [[]], [["the u map"]]
        )


def test_binding_argument_errors_are_clasp_errors():
    vol = np.ones((4, 4, 4), dtype=np.float32)
    cases = [
        ((([[vol]], (2, 2, 2), (1, 1, 1), [[1], [1]], [[None]], [[]])), "quotas has 2 entries"),
        ((([[vol]], (2, 2, 2), (1, 1, 1), [[1]], [[None, None]], [[]])), r"noise\[0\] has 2"),
        ((([[vol]], (2, 2, 2), (1, 1, 1), [[1]], [[None]], [[]], [["a", "b"]])), r"names\[0\]"),
        ((([[vol]], (2, 2, 2), (1, 1, 1), [[1]], [[(-1.0, 0, 0)]], [[]])), "beta must be"),
        ((([[vol]], (0, 2, 2), (1, 1, 1), [[1]], [[None]], [[]])), "patch"),
    ]
    for args, message in cases:
        with pytest.raises(InvalidPatchError, match=message) as info:
            _clasp_rs.select_strata(*args)
        assert isinstance(info.value, ClaspError) and isinstance(info.value, ValueError)
    with pytest.raises(InvalidScoresError):
        _clasp_rs.select_strata([[vol[0]]], (2, 2, 2), (1, 1, 1), [[1]], [[None]], [[]])


def _taken(start, index, key):
    return Taken(start, (1, 1, 1), index, 1.0, key)


def test_merge_best_first_is_key_then_case_then_index():
    rng = np.random.default_rng(1)
    keys = [0.5, 0.25, -np.inf, 1e300, np.float32(0.1).item(), 0.1]
    lists = {
        case: [
            _taken((i, 0, 0), int(rng.integers(0, 50)), float(rng.choice(keys))) for i in range(6)
        ]
        for case in ("b", "a", "c")
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a float64 key beyond float32 must not warn
        merged = merge_best_first(lists)
    rank = {"a": 0, "b": 1, "c": 2}

    def order(entry):
        case, t = entry
        key32 = float(np.float32(t.key)) if abs(t.key) < 3.4e38 else np.sign(t.key) * np.inf
        return (-key32, rank[case], t.index)

    everything = [(case, t) for case in lists for t in lists[case]]
    assert [order(e) for e in merged] == sorted(order(e) for e in everything)
    assert sorted(map(id, (t for _, t in merged))) == sorted(map(id, (t for _, t in everything)))
    assert merge_best_first({}) == []
    assert list(itertools.chain(*merge_best_first({"x": []}))) == []
