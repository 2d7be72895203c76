"""The query pipeline as library calls (clasp_rs.query), as the loop and an executor use it:
an export queried in one run, or in parts merged, gives the strategy's own query; failures
leave no maps behind."""

from __future__ import annotations

import os

import numpy as np
import pytest

from clasp_rs import ClaspPE, identical_patches, read_loop_file, read_loop_meta
from clasp_rs.exceptions import InvalidProbabilitiesError
from clasp_rs.query import (
    Stages,
    merge_parts,
    open_export_query,
    query_meta,
    run_export_part,
    run_export_query,
)
from generators import write_dataset, write_export


@pytest.fixture
def export(tmp_path):
    sources = write_export(tmp_path / "probs", n_cases=4, folds=2, seed=3)
    return tmp_path / "probs", write_dataset(tmp_path), sources


def _open(strategy, probs, dataset, out, **kwargs):
    return open_export_query(
        strategy, probs, dataset, n=7, loop=1, patch_size=(3, 4, 4), out=out, device="cpu", **kwargs
    )


def test_one_run_and_merged_parts_give_the_strategy_s_query(export, tmp_path):
    probs, dataset, sources = export
    strategy = ClaspPE(seed=5)
    stages = Stages()
    query = _open(strategy, probs, dataset, tmp_path / "loop.json")
    result = run_export_query(query, tmp_path / "loop.json", device="cpu", stages=stages)
    assert list(stages.seconds) == ["read + maps", "select", "merge + fill", "write"]
    folds = {
        case: np.stack([np.load(p)["probabilities"] for p in paths])
        for case, paths in sources.items()
    }
    expected = strategy.query(folds, 7, 1, (3, 4, 4), device="cpu")
    assert [(p.file, p.coords, p.stratum) for p in result.patches] == [
        (f"{p.file}.nii.gz", p.coords, p.stratum) for p in expected
    ]
    # Every field a loop file keeps (it does not keep mean and key).
    fields = [(p.file, p.coords, p.size, p.score, p.stratum) for p in result.patches]
    assert [
        (p.file, p.coords, p.size, p.score, p.stratum)
        for p in read_loop_file(tmp_path / "loop.json")
    ] == fields
    assert (
        read_loop_meta(tmp_path / "loop.json")["quotas"]
        == query_meta(strategy, query.request, result)["quotas"]
    )
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".clasp_rs_maps_")]

    parts = []
    for i in range(3):
        out = tmp_path / f"part{i}.json"
        written = run_export_part(
            _open(strategy, probs, dataset, out), out, part_id=i, num_parts=3, device="cpu"
        )
        parts.append(written.path)
    merged = merge_parts(parts)
    assert identical_patches(merged.result.patches, result.patches)
    assert merged.request.files == query.request.files


def test_a_failed_run_removes_the_maps_it_wrote(export, tmp_path):
    probs, dataset, sources = export
    bad = np.load(sources["case_003"][1])["probabilities"] * 2  # channel sums of 2
    np.savez_compressed(sources["case_003"][1], probabilities=bad)
    workdir = tmp_path / "maps"
    workdir.mkdir()
    (workdir / "mine.txt").write_text("kept")
    out = tmp_path / "loop.json"
    query = _open(ClaspPE(), probs, dataset, out)
    with pytest.raises(InvalidProbabilitiesError, match="channel sums"):
        run_export_query(query, out, device="cpu", workdir=workdir)
    assert sorted(os.listdir(workdir)) == ["mine.txt"]
    assert not out.exists()
