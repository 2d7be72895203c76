"""End to end on the bundled CT scans: ``clasp-rs study init`` (two strategies, two seeds) ->
``study run`` (two loops, tiny trainer, one fold, CPU), killed in the second experiment and
resumed two experiments at a time -> ``study status`` -> ``study report``."""

from __future__ import annotations

import json

import pytest

from clasp_rs.cli import main
from clasp_rs.loop.state import StepHooks, load_state
from clasp_rs.loop.study import load_study
from clasp_rs.loop.study_run import StudyRunOptions, run_study
from clasp_rs.patches import read_loop_file

STEPS = [
    "000/plan",
    "000/train/fold_0",
    "000/evaluate",
    "000/query",
    "000/annotate",
    "001/preprocess",
    "001/train/fold_0",
    "001/evaluate",
]
# ClaSP PE predicts the pool and queries it in one shard (fused maps, then the part).
PREDICT = ["000/maps/part_0_of_1", "000/query/part_0_of_1"]


class Killed(BaseException):
    """Stands in for a kill of the whole study run (not one experiment's failure)."""


@pytest.mark.nnunet
@pytest.mark.slow
def test_study_init_run_kill_resume_concurrently_and_report(nnunet_env, capsys):
    root = nnunet_env / "study"
    init = ["study", "init", "900", str(root), "--strategies", "clasp-pe", "random"]
    assert main([*init, "--seeds", "0", "1", "--patch-size", "4", "16", "16", "--budget", "8"]) == 0
    study = load_study(root)

    annotated: list[str] = []

    def kill_in_second_experiment(key: str) -> None:
        if key == "000/annotate":
            annotated.append(key)
            if len(annotated) == 2:
                raise Killed(key)

    options = StudyRunOptions(loops=2, trainer="nnUNetTrainer_clasp_tiny", folds=[0], device="cpu")
    with pytest.raises(Killed):
        run_study(root, options, hooks=StepHooks(after=kill_in_second_experiment))
    states = {e.name: load_state(e.root / "state.json") for e in study.experiments}
    assert states["clasp-pe_seed0"].done_keys() == STEPS[:3] + PREDICT + STEPS[3:]
    assert states["random_seed0"].done_keys() == STEPS[:4]  # annotated, not recorded
    assert not states["clasp-pe_seed1"].started and not states["random_seed1"].started

    # The rest, two experiments at a time (each in its own process); settings come from
    # the first run.
    assert main(["study", "run", str(root), "--device", "cpu", "--max-concurrent", "2"]) == 0
    for e in study.experiments:
        steps = load_state(e.root / "state.json").done_keys()
        expected = STEPS[:3] + PREDICT + STEPS[3:] if e.strategy == "clasp-pe" else STEPS
        assert steps == expected, e.name  # nothing recorded twice
        if e.name in ("clasp-pe_seed1", "random_seed1"):
            assert (e.root / "study_run.log").stat().st_size > 0
    assert json.loads(study.file.read_text())["run"] == {
        "n_loops": 2,
        "trainer": "nnUNetTrainer_clasp_tiny",
        "folds": [0],
        "configuration": "3d_fullres",
    }
    # Same seed: same starting budget, different queries.
    exps = {e.name: e.experiment() for e in study.experiments}
    for seed in (0, 1):
        a, b = exps[f"clasp-pe_seed{seed}"], exps[f"random_seed{seed}"]
        assert read_loop_file(a.loop_file(0)) == read_loop_file(b.loop_file(0))
        assert read_loop_file(a.loop_file(1)) != read_loop_file(b.loop_file(1))
    capsys.readouterr()

    # A finished study runs nothing more.
    assert main(["study", "run", str(root), "--device", "cpu"]) == 0
    assert "4 of 4 experiment(s) finished, 0 to run" in capsys.readouterr().err
    assert main(["study", "status", str(root)]) == 0
    assert capsys.readouterr().out.count("finished") == 4

    out = nnunet_env / "report"
    assert main(["study", "report", str(root), "--out", str(out)]) == 0
    summary = json.loads((out / "study_summary.json").read_text())
    assert [r["strategy"] for r in summary["rows"]] == ["clasp-pe", "random"]
    assert all(r["seeds"] == [0, 1] for r in summary["rows"])
    assert summary["complete_seeds"] == [0, 1] and summary["ppm"]["methods"] == [
        "clasp-pe",
        "random",
    ]
    for name in ("report.html", "study_curves.png", "study_ppm.png", "study_summary.csv"):
        assert (out / name).stat().st_size > 0


@pytest.mark.nnunet
@pytest.mark.slow
def test_study_on_ray_runs_its_experiments_at_once_on_one_local_instance(nnunet_env):
    """``study run --executor ray``: both experiments at once, each driver in its own process,
    their tasks in the workers of one Ray instance the study started (and stopped)."""
    ray = pytest.importorskip("ray")
    import re

    root = nnunet_env / "study"
    init = ["study", "init", "900", str(root), "--strategies", "random", "random-fg66"]
    assert main([*init, "--seeds", "0", "--patch-size", "4", "16", "16", "--budget", "8"]) == 0
    options = StudyRunOptions(
        loops=2, trainer="nnUNetTrainer_clasp_tiny", folds=[0], device="cpu", executor="ray"
    )
    outcomes = run_study(root, options)
    assert [o.status for o in outcomes] == ["finished", "finished"]
    assert not ray.is_initialized()  # the study's own instance is shut down
    for e in load_study(root).experiments:
        assert load_state(e.root / "state.json").done_keys() == STEPS, e.name
        log = (e.root / "study_run.log").read_text()
        driver = int(re.search(r"driven by pid (\d+)", log).group(1))
        steps = load_state(e.root / "state.json").steps
        # Run by Ray workers, not by the experiment's driver process.
        assert all(s["pid"] != driver for s in steps), e.name
