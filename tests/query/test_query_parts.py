"""Sharded queries: K parts merged give exactly the single run's query (through the
library's own part and merge functions, :func:`clasp_rs.query.select_part` and
:func:`clasp_rs.query.merge_parts`)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clasp_rs import Patch, identical_patches
from clasp_rs.exceptions import ClaspError, LoopFileError
from clasp_rs.io.parts import read_part, write_part
from clasp_rs.query import merge_parts, select_part
from clasp_rs.strategies import QueryRequest, Strategy, get_strategy
from clasp_rs.strategies.base import NotShardableError
from clasp_rs.strategies.scores import compute_score_sets
from generators import gamma_probabilities

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run_parts(strategy, scores, request, num_parts, folder: Path, *, round_trip=True):
    cases = sorted(scores)
    parts = []
    for i in range(num_parts):
        mine = cases[i::num_parts]
        part = select_part(
            strategy,
            {c: scores[c] for c in mine},
            request,
            part_id=i,
            num_parts=num_parts,
            all_cases=cases,
        )
        if round_trip:
            path = folder / f"part{i}.json"
            write_part(path, part)
            part = read_part(path)
        parts.append(part)
    # Parts arrive in any order.
    merged = merge_parts(parts[::-1])
    assert merged.strategy.params() == strategy.params()
    return merged.result, merged.request


@st.composite
def sharded_inputs(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = draw(st.integers(2, 4))
    n_cases = draw(st.integers(2, 6))
    volumes = {
        f"case_{i:02d}": gamma_probabilities(
            rng, tuple(int(v) for v in rng.integers(2, 7, size=3)), c
        )
        for i in range(n_cases)
    }
    annotated = {}
    for name, v in volumes.items():
        if draw(st.booleans()):
            start = [int(rng.integers(0, s)) for s in v.shape[-3:]]
            annotated[name] = [Patch(name, start, (2, 2, 2))]
    request = QueryRequest.build(
        draw(st.integers(0, 14)),
        draw(st.integers(0, 5)),
        tuple(draw(st.integers(1, 4)) for _ in range(3)),
        stride=tuple(draw(st.integers(1, 2)) for _ in range(3)),
        per_volume=draw(st.sampled_from([None, 1, 2, 4])),
        annotated=annotated,
        files={name: name + ".nii.gz" for name in volumes},
    )
    name = draw(
        st.sampled_from(["clasp-pe", "clasp-pe", "cla-pe", "clap-pe", "pe", "power-bald", "random"])
    )
    m = 2 if name in ("power-bald",) else None
    if m:
        volumes = {k: gamma_probabilities(rng, v.shape[-3:], c, m) for k, v in volumes.items()}
    return {
        "volumes": volumes,
        "request": request,
        "strategy": name,
        "seed": draw(st.integers(0, 2**32)),
        "num_parts": draw(st.integers(2, 4)),
    }


@EXAMPLES
@given(sharded_inputs())
def test_parts_merged_equal_one_run(inputs):
    strategy = get_strategy(inputs["strategy"], seed=inputs["seed"])
    request = inputs["request"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scores = compute_score_sets(
            inputs["volumes"], strategy.needs, device="cpu", workdir=folder / "maps"
        )
        single = strategy.query_scores(scores, request)
        merged, merged_request = run_parts(strategy, scores, request, inputs["num_parts"], folder)
    assert identical_patches(merged.patches, single.patches)
    assert (merged.beta, merged.quotas, merged.shortfall, merged.unfilled) == (
        single.beta,
        single.quotas,
        single.shortfall,
        single.unfilled,
    )
    assert merged_request.files == request.files


def crowded():
    """Four 4³ volumes, one candidate each (patch 4³), F = 3, n = 2, per_volume 1: class-1
    patches are cut in the merge (released) and the fill takes their place."""
    rng = np.random.default_rng(0)
    volumes = {f"v{i}": gamma_probabilities(rng, (4, 4, 4), 4) for i in range(4)}
    request = QueryRequest.build(2, 0, (4, 4, 4), per_volume=1)
    return volumes, request


def test_released_patches_are_recomputed_from_the_recorded_maps(tmp_path):
    volumes, request = crowded()
    strategy = get_strategy("cla-pe", shuffle_strata=False)
    scores = compute_score_sets(volumes, strategy.needs, device="cpu", workdir=tmp_path / "m")
    single = strategy.query_scores(scores, request)
    assert single.shortfall == 1
    assert [p.stratum for p in single.patches] == [1, -1]
    merged, _ = run_parts(strategy, scores, request, 2, tmp_path)
    assert identical_patches(merged.patches, single.patches)


def test_merge_explains_when_the_maps_it_needs_are_gone(tmp_path):
    volumes, request = crowded()
    strategy = get_strategy("cla-pe", shuffle_strata=False)
    in_memory = compute_score_sets(volumes, strategy.needs, device="cpu")
    with pytest.raises(ClaspError, match="re-run its part with --workdir"):
        run_parts(strategy, in_memory, request, 2, tmp_path)


def test_part_that_meets_every_quota_records_no_fill(tmp_path):
    rng = np.random.default_rng(1)
    volumes = {f"v{i}": gamma_probabilities(rng, (10, 10, 10), 3) for i in range(4)}
    request = QueryRequest.build(6, 0, (3, 3, 3))
    strategy = get_strategy("clasp-pe")
    scores = compute_score_sets(volumes, strategy.needs, device="cpu", workdir=tmp_path / "m")
    local = strategy.select_local({"v0": scores["v0"], "v2": scores["v2"]}, request, partial=True)
    assert all(sel.fill is None and sel.fill_map is None for sel in local.values())


def test_merge_rejects_inconsistent_parts(tmp_path):
    rng = np.random.default_rng(2)
    volumes = {f"v{i}": gamma_probabilities(rng, (6, 6, 6), 3) for i in range(3)}
    request = QueryRequest.build(4, 0, (3, 3, 3))
    strategy = get_strategy("clasp-pe", seed=1)
    scores = compute_score_sets(volumes, strategy.needs, device="cpu")
    cases = sorted(scores)

    def part(i, *, seed=1, n=4, num_parts=2):
        mine = cases[i::2]
        return select_part(
            get_strategy("clasp-pe", seed=seed),
            {c: scores[c] for c in mine},
            QueryRequest.build(n, 0, (3, 3, 3)),
            part_id=i,
            num_parts=num_parts,
            all_cases=cases,
        )

    with pytest.raises(LoopFileError, match="strategy differ"):
        merge_parts([part(0), part(1, seed=2)])
    with pytest.raises(LoopFileError, match="request differ"):
        merge_parts([part(0), part(1, n=5)])
    with pytest.raises(LoopFileError, match=r"missing \[1\]"):
        merge_parts([part(0)])
    with pytest.raises(LoopFileError, match=r"repeated \[0\]"):
        merge_parts([part(0), part(0)])
    with pytest.raises(LoopFileError, match="no part files"):
        merge_parts([])
    assert identical_patches(
        merge_parts([part(1), part(0)]).result.patches,
        strategy.query_scores(scores, request).patches,
    )


def test_part_files_are_never_overwritten_and_are_checked_on_read(tmp_path):
    volumes, request = crowded()
    strategy = get_strategy("pe")
    scores = compute_score_sets(volumes, strategy.needs, device="cpu")
    part = select_part(strategy, scores, request, part_id=0, num_parts=1, all_cases=sorted(scores))
    path = write_part(tmp_path / "p.json", part)
    with pytest.raises(FileExistsError):
        write_part(path, part)
    (tmp_path / "loop.json").write_text(json.dumps({"patches": []}))
    with pytest.raises(LoopFileError, match="not a clasp-rs part file"):
        read_part(tmp_path / "loop.json")
    (tmp_path / "bad.json").write_text('{"clasp_rs_partial": 1}')
    with pytest.raises(LoopFileError, match="malformed"):
        read_part(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        read_part(tmp_path / "missing.json")


def test_unshardable_strategies_say_so():
    volumes, request = crowded()
    with pytest.raises(NotShardableError, match="softrank-bald"):
        get_strategy("softrank-bald").select_local({}, request, partial=True)
    # Random FG ranks no maps: it has no phases to shard (it is not a map Strategy at all).
    random_fg = get_strategy("random-fg33")
    assert not isinstance(random_fg, Strategy)
    assert random_fg.needs_labels and not random_fg.shardable
