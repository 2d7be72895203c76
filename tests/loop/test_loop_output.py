"""What a person reads from ``clasp-rs run`` (issue 10 fault 11): the waiting message once,
one progress line per step, nnU-Net's output in per-step log files."""

from __future__ import annotations

import json

import pytest

from clasp_rs.cli import main
from clasp_rs.loop.setup import init_experiment
from clasp_rs.patches import Patch, write_loop_file
from testdata import copy_ct_dataset


def _experiment(monkeypatch, tmp_path, *, simulate: bool, patches: int):
    """An experiment whose state says loop 0 is trained, evaluated and queried (the query
    holding ``patches`` patches), without any nnU-Net work done."""
    pytest.importorskip("nnunetv2")
    copy_ct_dataset(monkeypatch, tmp_path)
    exp = init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=8)
    case = exp.pool[0]
    query = [Patch(exp.file_of(case), (0, 0, 0), (4, 16, 16))][:patches]
    write_loop_file(exp.loop_file(1), query)
    done = ["000/plan", "000/train/fold_0", "000/evaluate", "000/query"]
    settings = {
        "strategy": "random",
        "n_loops": 3,
        "trainer": "nnUNetTrainer_clasp_tiny",
        "folds": [0],
        "configuration": "3d_fullres",
        "simulate": simulate,
    }
    steps = [
        {"step": s, "seconds": 1.0, "finished": "2025-01-01T00:00:00Z", "patches": patches}
        for s in done
    ]
    exp.state_file.write_text(
        json.dumps({"version": 1, "settings": settings, "steps": steps, "waiting": None})
    )
    return exp


def test_the_waiting_message_is_printed_once(monkeypatch, tmp_path, capsys):
    exp = _experiment(monkeypatch, tmp_path, simulate=False, patches=1)
    assert main(["run", str(exp.root), "--resume", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("waiting for annotation") == 1
    assert (exp.annotation_folder(1) / exp.file_of(exp.pool[0])).is_file()
    # The hand-out (issue 9): what to open in a viewer, and the command that takes the labels.
    flat = " ".join(text.split())
    assert f"clasp-rs annotate {exp.root} --labels {exp.annotation_folder(1)}" in flat
    assert "itksnap -g" in flat and ".mrk.json" in flat
    # Asked again, it says it again (once), and changes nothing.
    assert main(["run", str(exp.root), "--resume", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert (out.out + out.err).count("waiting for annotation") == 1


def test_a_query_without_candidates_ends_the_run(monkeypatch, tmp_path, capsys):
    """Issue 10 fault 8: no more training on unchanged labels once nothing is left."""
    exp = _experiment(monkeypatch, tmp_path, simulate=True, patches=0)
    assert main(["run", str(exp.root), "--resume", "--device", "cpu"]) == 0
    out = capsys.readouterr()
    assert "no valid candidate left" in out.out
    assert "the run ends after 1 of 3 loop(s)" in out.out
    steps = json.loads(exp.state_file.read_text())["steps"]
    assert [s["step"] for s in steps] == [
        "000/plan",
        "000/train/fold_0",
        "000/evaluate",
        "000/query",
    ]
