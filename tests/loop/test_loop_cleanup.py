"""Issue 10 fault 7: what a killed run leaves (empty ``.clasp_rs_maps_*`` folders, temporary
files of atomic writes, nnU-Net's per-case scratch folders) is removed by the next run;
results, shards' parts and anything outside the experiment stay."""

from __future__ import annotations

from pathlib import Path

import pytest

from clasp_rs.loop.cleanup import remove_leftovers
from clasp_rs.loop.setup import init_experiment


@pytest.fixture
def experiment(ct_dataset, tmp_path):
    pytest.importorskip("SimpleITK")
    return init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=8)


def _plant(exp, preprocessed: Path, outside: Path) -> tuple[list[Path], list[Path]]:
    """Leftovers of a killed run, and files that must survive the cleanup."""
    loop = exp.loop_folder(0)
    (loop / "model" / "fold_0").mkdir(parents=True)
    (preprocessed / "nnUNetPlans_3d_fullres").mkdir(parents=True)
    leftovers = [
        exp.root / ".clasp_rs_maps_k2j4x9a1",  # the query's map folder, empty
        exp.root / ".loop_001.json.3f9a1c2b7d6e.tmp",
        loop / ".evaluation.json.0a1b2c3d4e5f.tmp",
        loop / "pool_probabilities" / "fold_0" / ".case_003.ab12cd34",  # nnU-Net prediction
        exp.scratch / ".case_001.nii.gz.9e8d7c6b5a4f.tmp.nii.gz",
        preprocessed / "nnUNetPlans_3d_fullres" / ".case_007.x1y2z3w4",  # preprocessing
        exp.root / ".link.tmp",  # a symlink: removed as a link
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == ".link.tmp":
            path.symlink_to(outside)
        elif path.suffix in (".tmp", ".gz"):
            path.write_bytes(b"")
        else:
            path.mkdir()
            (path / "case_003.npz").write_bytes(b"partial")
    keep = [
        exp.root / "loop_000.json",
        exp.root / "state.json",
        loop / "model" / "fold_0" / "checkpoint_latest.pth",  # training continues from it
        loop / "parts" / "part_1_of_2" / "maps" / ".case_002_c1.npy.1a2b3c4d5e6f.tmp",  # a shard
        preprocessed / "nnUNetPlans_3d_fullres" / "case_007.b2nd",
        outside,
    ]
    for path in keep:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"keep")
    return leftovers, keep


def test_leftovers_of_a_killed_run_are_removed_and_nothing_else(experiment, tmp_path):
    preprocessed = tmp_path / "nnUNet_preprocessed" / experiment.dataset_name
    outside = tmp_path / "outside.tmp"
    leftovers, keep = _plant(experiment, preprocessed, outside)
    removed = remove_leftovers(experiment, preprocessed)
    assert sorted(removed) == sorted(leftovers)
    assert not any(p.exists() or p.is_symlink() for p in leftovers)
    assert all(p.exists() for p in keep)
    assert outside.read_bytes() == b"keep"
    assert remove_leftovers(experiment, preprocessed) == []


def test_the_next_run_removes_them_before_its_first_step(experiment, tmp_path):
    pytest.importorskip("nnunetv2")
    from clasp_rs.loop.driver import RunOptions, run_experiment
    from clasp_rs.loop.state import StepHooks

    class Stop(Exception):
        pass

    def stop(key: str) -> None:
        raise Stop(key)

    preprocessed = tmp_path / "nnUNet_preprocessed" / experiment.dataset_name
    leftovers, keep = _plant(experiment, preprocessed, tmp_path / "outside.tmp")
    (experiment.root / "state.json").unlink()  # planted as a file to keep; a fresh run here
    options = RunOptions(simulate=True, trainer="nnUNetTrainer_clasp_tiny", device="cpu")
    with pytest.raises(Stop, match="000/plan"):
        run_experiment(experiment.root, options, hooks=StepHooks(before=stop))
    assert not any(p.exists() or p.is_symlink() for p in leftovers)
    assert all(p.exists() for p in keep if p.name != "state.json")
