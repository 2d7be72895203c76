"""``clasp-rs study init/status/report`` and ``run``'s checks, without training: the loops of
the experiments are filled with given Dice values (the end-to-end test trains)."""

from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pytest

from clasp_rs.cli import main
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import write_json
from clasp_rs.loop.state import load_state, step_key
from clasp_rs.loop.study import experiment_progress, init_study, load_study
from clasp_rs.loop.study_report import build_study_report
from clasp_rs.loop.study_run import StudyRunOptions, run_study
from clasp_rs.loop.tasks import annotated_statistics, simulate_annotation
from clasp_rs.metrics import aubc, pairwise_penalty_matrix, seed_mean_ci
from clasp_rs.nnunet.paths import nnunet_paths
from clasp_rs.patches import Patch, read_loop_file, write_loop_file
from testdata import copy_ct_dataset

pytest.importorskip("SimpleITK")

PNG = b"\x89PNG\r\n\x1a\n"
SIZE = (4, 16, 16)


@pytest.fixture
def env(monkeypatch, tmp_path):
    copy_ct_dataset(monkeypatch, tmp_path)
    return tmp_path


def _fill(exp, dice: list[float], offset: int) -> None:
    """Give an experiment len(dice) evaluated loops: each query takes 8 free 4x16x16 boxes on
    a fixed grid (which ones depends on ``offset``), annotated from the ground truth;
    evaluation.json holds ``dice`` (per class: the same value)."""
    paths = nnunet_paths()
    raw = paths.raw / exp.dataset_name
    grid = [
        Patch(exp.file_of(case), (z, y, x), SIZE)
        for case in exp.pool
        for z in (0, 4)
        for y in (0, 16, 32, 48)
        for x in (0, 16, 32, 48)
    ]
    state = load_state(exp.state_file)
    state.settings = {"strategy": "x", "n_loops": len(dice)}
    for t, value in enumerate(dice):
        folder = exp.loop_folder(t)
        folder.mkdir(parents=True)
        write_json(folder / "annotated.json", annotated_statistics(exp, paths, t))
        per_class = {"liver": value, "spleen": value / 2, "kidney": value}
        write_json(folder / "evaluation.json", {"loop": t, "mean": value, "per_class": per_class})
        state.mark_done(step_key(t, "evaluate"), 0.0)
        if t < len(dice) - 1:
            taken = [p for k in range(t + 1) for p in read_loop_file(exp.loop_file(k))]
            free = [g for g in grid if not any(g.file == p.file and g.overlaps(p) for p in taken)]
            new = free[offset : offset + 8]
            write_loop_file(exp.loop_file(t + 1), new, meta={"strategy": "x", "loop": t})
            simulate_annotation(exp, raw, t)


def test_study_init_pairs_experiments_by_seed(env, capsys):
    root = env / "study"
    assert (
        main(
            [
                "study",
                "init",
                "900",
                str(root),
                "--strategies",
                "clasp-pe",
                "random",
                "--seeds",
                "0",
                "1",
                "--patch-size",
                *map(str, SIZE),
                "--budget",
                "8",
                "--dataset-id",
                "600",
            ]
        )
        == 0
    )
    assert "4 experiment(s)" in capsys.readouterr().err
    study = load_study(root)
    assert [e.name for e in study.by_seed()] == [
        "clasp-pe_seed0",
        "random_seed0",
        "clasp-pe_seed1",
        "random_seed1",
    ]
    exps = {e.name: e.experiment() for e in study.experiments}
    assert sorted(e.dataset_id for e in exps.values()) == [600, 601, 602, 603]
    for seed in (0, 1):
        a, b = exps[f"clasp-pe_seed{seed}"], exps[f"random_seed{seed}"]
        assert (a.pool, a.test) == (b.pool, b.test)
        assert read_loop_file(a.loop_file(0)) == read_loop_file(b.loop_file(0))
    # Different seeds: different starting budgets.
    assert read_loop_file(exps["random_seed0"].loop_file(0)) != read_loop_file(
        exps["random_seed1"].loop_file(0)
    )
    assert study.init["patch_size"] == list(SIZE) and study.init["budget"] == 8
    assert main(["study", "status", str(root)]) == 0
    assert "not started" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategies": ["clasp-pe", "nope"]}, "unknown strategy 'nope'"),
        ({"strategies": ["random", "random"]}, "lists random more than once"),
        ({"seeds": []}, "at least one seed"),
        ({"seeds": [0, -1]}, "--seeds must be >= 0"),
        ({"budget": 3}, "--budget 3 is too small"),
    ],
)
def test_study_init_rejects_bad_options_and_leaves_nothing(env, options, message):
    kwargs = {"strategies": ["clasp-pe", "random"], "seeds": [0, 1], "patch_size": SIZE}
    kwargs.update({"budget": 8, **options})
    with pytest.raises(DatasetError, match=re.escape(message)):
        init_study("900", env / "study", **kwargs)
    assert not (env / "study").exists()
    assert sorted(p.name for p in (env / "nnUNet_raw").iterdir()) == ["Dataset900_clasp_ct"]


def test_study_init_failing_half_way_removes_what_it_made(env):
    # The third experiment's dataset id is taken: the first two are rolled back.
    (env / "nnUNet_raw" / "Dataset602_other").mkdir()
    with pytest.raises(DatasetError, match="602 is already used"):
        init_study(
            "900",
            env / "study",
            strategies=["clasp-pe", "random"],
            seeds=[0, 1],
            patch_size=SIZE,
            budget=8,
            dataset_id=600,
        )
    assert not (env / "study").exists()
    assert sorted(p.name for p in (env / "nnUNet_raw").iterdir()) == [
        "Dataset602_other",
        "Dataset900_clasp_ct",
    ]
    (env / "occupied").mkdir()
    (env / "occupied" / "x").write_text("")
    with pytest.raises(DatasetError, match="not empty"):
        init_study("900", env / "occupied", strategies=["random"], seeds=[0])


def test_study_run_checks_before_running(env):
    study = init_study(
        "900", env / "study", strategies=["random"], seeds=[0], patch_size=SIZE, budget=8
    )
    with pytest.raises(DatasetError, match="--executor must be one of local, ray, got 'dask'"):
        run_study(study.root, StudyRunOptions(executor="dask"))
    with pytest.raises(DatasetError, match="--max-concurrent must be >= 1"):
        run_study(study.root, StudyRunOptions(max_concurrent=0))
    # The first run's settings are the study's; a later run cannot change them.
    reloaded = load_study(study.root)
    reloaded.run = {"n_loops": 3, "trainer": "t", "folds": [0], "configuration": "3d_fullres"}
    reloaded.save()
    with pytest.raises(DatasetError, match="first run with --loops 3, not 4"):
        run_study(study.root, StudyRunOptions(loops=4))
    with pytest.raises(DatasetError, match="first run with --folds"):
        run_study(study.root, StudyRunOptions(folds=[0, 1]))


def test_study_run_passes_the_executor_to_every_experiment():
    from clasp_rs.loop.study_run import _run_options

    settings = {"n_loops": 3, "trainer": "t", "folds": [0, 1], "configuration": "3d_fullres"}
    options = StudyRunOptions(executor="ray", ray_address="10.0.0.1:6379", device="cpu")
    run = _run_options(settings, "clasp-pe", True, options)
    assert (run.executor, run.ray_address, run.strategy, run.loops) == (
        "ray",
        "10.0.0.1:6379",
        "clasp-pe",
        3,
    )
    assert run.simulate and run.resume and run.folds == [0, 1] and run.device == "cpu"


def test_study_run_without_nnunet_folders_is_one_error_up_front(env, monkeypatch):
    study = init_study(
        "900",
        env / "study",
        strategies=["random", "clasp-pe"],
        seeds=[0],
        patch_size=SIZE,
        budget=8,
    )
    monkeypatch.delenv("nnUNet_results")
    with pytest.raises(DatasetError, match="^nnU-Net environment variable\\(s\\) not set"):
        run_study(study.root, StudyRunOptions(loops=2))
    assert not any((e.root / "state.json").exists() for e in load_study(study.root).experiments)


def test_study_json_cannot_point_outside_the_study(env):
    study = init_study(
        "900", env / "study", strategies=["random"], seeds=[0], patch_size=SIZE, budget=8
    )
    doc = json.loads(study.file.read_text())
    doc["experiments"][0]["folder"] = "../elsewhere"
    study.file.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="not inside the study"):
        load_study(study.root)


# Dice per loop of each (strategy, seed): "good" beats "bad" at every budget after the start.
CURVES = {
    ("good", 0): [0.30, 0.55, 0.70],
    ("good", 1): [0.32, 0.58, 0.72],
    ("good", 2): [0.28, 0.52, 0.69],
    ("bad", 0): [0.30, 0.40, 0.50],
    ("bad", 1): [0.32, 0.41, 0.53],
    ("bad", 2): [0.28, 0.37, 0.51],
}


def _filled_study(env):
    # Strategy names in a study are query strategies; two real ones stand for good and bad.
    names = {"good": "clasp-pe", "bad": "random"}
    study = init_study(
        "900",
        env / "study",
        strategies=["clasp-pe", "random"],
        seeds=[0, 1, 2],
        patch_size=SIZE,
        budget=8,
    )
    for (label, seed), dice in CURVES.items():
        name = f"{names[label]}_seed{seed}"
        exp = next(e for e in study.experiments if e.name == name).experiment()
        _fill(exp, dice, offset=0 if label == "good" else 3)
    study.run = {"n_loops": 3, "trainer": "t", "folds": [0], "configuration": "3d_fullres"}
    study.save()
    return study


def test_study_report_aggregates_over_seeds(env, capsys):
    study = _filled_study(env)
    # One more, unfinished experiment of a third seed does not enter the aggregates.
    out = env / "report"
    assert main(["study", "report", str(study.root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clasp-pe" in printed and "Final Dice" in printed

    summary = json.loads((out / "study_summary.json").read_text())
    rows = {r["strategy"]: r for r in summary["rows"]}
    for strategy, label in (("clasp-pe", "good"), ("random", "bad")):
        curves = [CURVES[(label, s)] for s in (0, 1, 2)]
        finals = [c[-1] for c in curves]
        # Hand computation: mean and 1.96 * sample std / sqrt(3).
        mean = sum(finals) / 3
        std = (sum((f - mean) ** 2 for f in finals) / 2) ** 0.5
        assert rows[strategy]["final_dice"]["mean"] == pytest.approx(mean)
        assert rows[strategy]["final_dice"]["ci95"] == pytest.approx(1.96 * std / 3**0.5)
        aubcs = [aubc(c) for c in curves]
        assert rows[strategy]["aubc"]["mean"] == pytest.approx(np.mean(aubcs))
        assert rows[strategy]["aubc"]["ci95"] == pytest.approx(seed_mean_ci(aubcs).half_width)
        assert rows[strategy]["seeds"] == [0, 1, 2]
        spleen = rows[strategy]["final_dice_per_class"]["spleen"]
        assert spleen["mean"] == pytest.approx(mean / 2)
        assert rows[strategy]["fg_eff_fits"] == 3
        # FG-Eff: reliable fits only; each flagged one is counted.
        fits = [summary["experiments"][f"{strategy}_seed{s}"]["fg_fit"] for s in (0, 1, 2)]
        reliable = [f["rate"] for f in fits if not f["flags"]]
        assert rows[strategy]["fg_eff_flagged"] == 3 - len(reliable)
        if reliable:
            assert rows[strategy]["fg_eff"]["mean"] == pytest.approx(np.mean(reliable))
        else:
            assert rows[strategy]["fg_eff"] is None
        curve = summary["curves"][strategy]
        assert curve["patches"] == [8, 16, 24]
        assert [d["mean"] for d in curve["dice"]] == pytest.approx(np.mean(curves, axis=0))

    # The PPM: the library's on the seed-paired curves; random is worse at both budgets.
    expected = pairwise_penalty_matrix(
        {
            "clasp-pe": np.array([CURVES[("good", s)] for s in (0, 1, 2)]),
            "random": np.array([CURVES[("bad", s)] for s in (0, 1, 2)]),
        }
    )
    ppm = summary["ppm"]
    assert ppm["methods"] == ["clasp-pe", "random"]
    np.testing.assert_allclose(ppm["matrix"], expected.matrix)
    np.testing.assert_allclose(ppm["matrix"], [[0, 0], [1, 0]])
    np.testing.assert_allclose(ppm["mean"], [1, 0])
    assert rows["random"]["ppm_beaten"] == 1.0 and rows["clasp-pe"]["ppm_beaten"] == 0.0

    with open(out / "study_summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["strategy"] for r in table] == ["clasp-pe", "random"]
    assert float(table[0]["final_dice"]) == pytest.approx(rows["clasp-pe"]["final_dice"]["mean"])
    assert len((out / "study_curves.csv").read_text().splitlines()) == 1 + 2 * 3
    assert len((out / "study_experiments.csv").read_text().splitlines()) == 1 + 6 * 3
    assert (out / "study_ppm.csv").read_text().splitlines()[-1].startswith("mean,1.0,0.0")
    for name in ("study_curves.png", "study_per_class.png", "study_ppm.png"):
        assert (out / name).read_bytes().startswith(PNG)
    page = (out / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == 3 and all(base64.b64decode(e).startswith(PNG) for e in embedded)
    assert 'src="http' not in page and "<script" not in page

    # An earlier report is never overwritten without --overwrite.
    assert main(["study", "report", str(study.root), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["study", "report", str(study.root), "--out", str(out), "--overwrite"]) == 0


def test_study_report_of_a_partial_study(env):
    study = init_study(
        "900",
        env / "study",
        strategies=["clasp-pe", "random"],
        seeds=[0, 1],
        patch_size=SIZE,
        budget=8,
    )
    with pytest.raises(DatasetError, match="no experiment of study .* has finished"):
        build_study_report(study.root, env / "report")
    exps = {e.name: e.experiment() for e in study.experiments}
    _fill(exps["clasp-pe_seed0"], [0.3, 0.5], 0)
    _fill(exps["random_seed0"], [0.3, 0.4], 3)
    _fill(exps["clasp-pe_seed1"], [0.3, 0.6], 0)
    # random_seed1 has run one of its two loops.
    _fill(exps["random_seed1"], [0.3], 3)
    state = load_state(exps["random_seed1"].state_file)
    state.settings["n_loops"] = 2
    state.save()
    progress = {p.experiment.name: p for p in experiment_progress(load_study(study.root))}
    assert not progress["random_seed1"].finished and progress["random_seed1"].loops_done == 1
    report = build_study_report(study.root, env / "report")
    rows = {r.strategy: r for r in report.rows}
    assert rows["clasp-pe"].seeds == [0, 1] and rows["random"].seeds == [0]
    assert report.complete_seeds == [0]
    # One seed: means without intervals, a PPM without significance.
    assert rows["random"].final_dice is not None and np.isnan(rows["random"].final_dice.half_width)
    assert rows["random"].final_dice_text == "0.400"
    assert report.ppm is not None and not report.ppm.matrix.any()
    page = (env / "report" / "report.html").read_text()
    assert "running / not started (1 loop(s))" in page


@pytest.mark.parametrize("sub", [[], ["init"], ["run"], ["status"], ["report"]])
def test_study_help(sub, capsys):
    assert main(["study", *sub, "--help"]) == 0
    assert "usage: clasp-rs study" in capsys.readouterr().out
