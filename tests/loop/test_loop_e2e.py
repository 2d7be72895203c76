"""End to end on the bundled real CT scans: ``clasp-rs init`` -> two loops of ClaSP PE with
stock nnU-Net v2 (tiny trainer, two folds, CPU, simulated annotation) -> ``clasp-rs report``.

The run stops before the pool prediction (``--stop-before-prediction``), which two sharded
runs (``--num-parts 2``) then do, and is killed after the merged query was written but before
it was recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clasp_rs.cli import main
from clasp_rs.loop.driver import RunOptions, run_experiment
from clasp_rs.loop.experiment import load_experiment
from clasp_rs.loop.state import StepHooks, load_state
from clasp_rs.nnunet.labels import partial_labels
from clasp_rs.patches import identical_patches, read_loop_file, read_loop_meta
from testdata import copy_ct_dataset

STEPS_0 = [
    "000/plan",
    "000/train/fold_0",
    "000/train/fold_1",
    "000/evaluate",
    "000/query",
    "000/annotate",
]
STEPS_1 = ["001/preprocess", "001/train/fold_0", "001/train/fold_1", "001/evaluate"]


class Killed(Exception):
    """Stands in for a kill after the query was written but before it was recorded."""


@pytest.mark.nnunet
@pytest.mark.slow
def test_init_two_loops_resume_and_report(monkeypatch, tmp_path, capsys):
    pytest.importorskip("nnunetv2")
    sitk = pytest.importorskip("SimpleITK")
    import torch

    copy_ct_dataset(monkeypatch, tmp_path)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # augmentation in-process: small CI machines
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    monkeypatch.setenv("nnUNet_compile", "false")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    root = tmp_path / "exp"
    try:
        assert (
            main(["init", "900", str(root), "--patch-size", "4", "16", "16", "--budget", "8"]) == 0
        )
        exp = load_experiment(root)

        def kill_at(step: str):
            def kill(key: str) -> None:
                if key == step:
                    raise Killed(key)

            return kill

        # The user's way to shard the pool prediction: stop once loop 0 is trained.
        assert (
            main(
                [
                    "run",
                    str(root),
                    "--loops",
                    "2",
                    "--strategy",
                    "clasp-pe",
                    "--trainer",
                    "nnUNetTrainer_clasp_tiny",
                    "--folds",
                    "0",
                    "1",
                    "--simulate",
                    "--device",
                    "cpu",
                    "--stop-before-prediction",
                ]
            )
            == 0
        )
        assert load_state(exp.state_file).done_keys() == STEPS_0[:4]

        # Without --resume an experiment that has run is not started again.
        assert main(["run", str(root), "--device", "cpu"]) == 2
        assert "--resume" in capsys.readouterr().err

        # Two shards predict and query half of the pool each ...
        for part in (0, 1):
            assert (
                main(
                    [
                        "run",
                        str(root),
                        "--num-parts",
                        "2",
                        "--part-id",
                        str(part),
                        "--device",
                        "cpu",
                    ]
                )
                == 0
            )
        parts = exp.loop_folder(0) / "parts"
        assert sorted(p.name for p in parts.iterdir()) == ["part_0_of_2", "part_1_of_2"]
        # ... and the same query over all their probabilities is the reference of the merge.
        union = tmp_path / "all_probabilities"
        for fold in (0, 1):
            (union / f"fold_{fold}").mkdir(parents=True)
            for part in parts.iterdir():
                for npz in (part / "probabilities" / f"fold_{fold}").glob("*.npz"):
                    (union / f"fold_{fold}" / npz.name).symlink_to(npz)
        reference = tmp_path / "reference.json"
        raw = tmp_path / "nnUNet_raw" / exp.dataset_name
        assert (
            main(
                [
                    "query",
                    str(union),
                    "--dataset-json",
                    str(raw / "dataset.json"),
                    "--n",
                    "8",
                    "--loop",
                    "0",
                    "--n-loops",
                    "2",
                    "--patch-size",
                    "4",
                    "16",
                    "16",
                    "--seed",
                    str(exp.seed),
                    "--annotated",
                    str(exp.loop_file(0)),
                    "--out",
                    str(reference),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        expected = read_loop_file(reference)

        with pytest.raises(Killed):
            run_experiment(
                root,
                RunOptions(device="cpu", resume=True),
                hooks=StepHooks(after=kill_at("000/query")),
            )
        assert load_state(exp.state_file).done_keys() == STEPS_0[:4]
        assert exp.loop_file(1).is_file()  # written (merged from the parts), not recorded
        assert identical_patches(read_loop_file(exp.loop_file(1)), expected)

        ran: list[str] = []
        outcome = run_experiment(
            root, RunOptions(device="cpu", resume=True), hooks=StepHooks(before=ran.append)
        )
    finally:
        torch.set_num_threads(threads)
    assert outcome.status == "finished"
    assert ran == STEPS_0[4:] + STEPS_1  # nothing finished before the kill ran again
    state = json.loads(exp.state_file.read_text())
    assert [s["step"] for s in state["steps"]] == STEPS_0 + STEPS_1
    query_step = next(s for s in state["steps"] if s["step"] == "000/query")
    assert query_step["reused"] is True
    assert state["settings"]["strategy"] == "clasp-pe" and state["settings"]["n_loops"] == 2

    # The query: 8 ClaSP PE patches, none overlapping the starting budget.
    start, query = read_loop_file(exp.loop_file(0)), read_loop_file(exp.loop_file(1))
    assert len(query) == 8
    assert read_loop_meta(exp.loop_file(1))["strategy"] == "clasp-pe"
    assert not any(p.file == q.file and p.overlaps(q) for p in start for q in query)
    assert {p.stratum for p in query} <= {1, 2, 3, -1}

    # Training labels: the ground truth inside both loops' patches, ignore elsewhere,
    # each annotation exactly once.
    for case in exp.pool:
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(exp.ground_truth(case))))
        mine = [p for p in start + query if p.file == exp.file_of(case)]
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / exp.file_of(case))))
        assert np.array_equal(written, partial_labels(truth, mine, exp.ignore_label, np.uint8))

    # Each loop kept its own models and evaluation.
    for t in (0, 1):
        folder = exp.loop_folder(t)
        for fold in (0, 1):
            assert (folder / "model" / f"fold_{fold}" / "checkpoint_final.pth").is_file()
        evaluation = json.loads((folder / "evaluation.json").read_text())
        assert set(evaluation["per_class"]) == {"liver", "spleen", "kidney"}
        assert set(evaluation["per_case"]) == set(exp.test)
        assert evaluation["mean"] is None or 0.0 <= evaluation["mean"] <= 1.0
        annotated = json.loads((folder / "annotated.json").read_text())
        assert annotated["patches"] == 8 * (t + 1)
        assert annotated["voxels"] == 8 * (t + 1) * 4 * 16 * 16

    # Resuming a finished experiment does nothing more.
    again: list[str] = []
    run_experiment(
        root, RunOptions(device="cpu", resume=True), hooks=StepHooks(before=again.append)
    )
    assert again == []

    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())["experiments"][0]
    assert [r["loop"] for r in summary["loops"]] == [0, 1]
    assert summary["aubc"] is None or 0.0 <= summary["aubc"] <= 1.0
    for name in ("report.html", "summary.csv", "dice_vs_budget.png", "patches_exp.png"):
        assert (out / name).stat().st_size > 0
    with capsys.disabled():
        print(
            f"\ne2e report: final Dice {summary['final_dice']}, AUBC {summary['aubc']}, "
            f"FG-Eff {summary['fg_eff']}, voxels {[r['voxels'] for r in summary['loops']]}, "
            f"Dice per loop {[r['dice'] for r in summary['loops']]}"
        )
