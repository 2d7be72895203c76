"""``clasp-rs report``: numbers from the loop files, PNG figures and a self-contained HTML
page, for experiments whose evaluations are given (no training here; the end-to-end test
reports a trained run)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from clasp_rs.cli import main
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import write_json
from clasp_rs.loop.report import build_report
from clasp_rs.loop.setup import init_experiment
from clasp_rs.loop.state import load_state
from clasp_rs.loop.tasks import annotated_statistics, simulate_annotation
from clasp_rs.metrics import aubc, fg_efficiency
from clasp_rs.nnunet.paths import nnunet_paths
from clasp_rs.patches import patches_by_case, read_loop_file, write_loop_file

pytest.importorskip("SimpleITK")
pytest.importorskip("matplotlib")

PNG = b"\x89PNG\r\n\x1a\n"


def _make(root: Path, name: str, strategy: str, dice: list[float], seed: int):
    """An experiment with len(dice) loops: Random queries annotated from the ground truth,
    annotated.json computed from the label files, evaluation.json holding ``dice``."""
    import SimpleITK as sitk

    from clasp_rs.strategies import get_strategy
    from clasp_rs.strategies.types import QueryRequest, ScoreSet

    exp = init_experiment("900", root / name, patch_size=(4, 16, 16), budget=8, seed=seed)
    paths = nnunet_paths()
    raw = paths.raw / exp.dataset_name
    shapes = {
        c: sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / exp.file_of(c)))).shape
        for c in exp.pool
    }
    for t, value in enumerate(dice):
        folder = exp.loop_folder(t)
        folder.mkdir(parents=True)
        write_json(folder / "annotated.json", annotated_statistics(exp, paths, t))
        write_json(
            folder / "evaluation.json",
            {
                "loop": t,
                "mean": value,
                "per_class": {"liver": value, "spleen": value, "kidney": value},
            },
        )
        if t < len(dice) - 1:
            annotated = patches_by_case(
                p for k in range(t + 1) for p in read_loop_file(exp.loop_file(k))
            )
            request = QueryRequest.build(
                8,
                t,
                exp.patch_size,
                annotated=annotated,
                files={c: exp.file_of(c) for c in exp.pool},
            )
            result = get_strategy("random", seed=seed).query_scores(
                {c: ScoreSet(s) for c, s in shapes.items()}, request
            )
            write_loop_file(
                exp.loop_file(t + 1), result.patches, meta={"strategy": "random", "loop": t}
            )
            simulate_annotation(exp, raw, t)
    state = load_state(exp.state_file)
    state.settings = {"strategy": strategy, "n_loops": len(dice)}
    state.save()
    return exp


@pytest.fixture
def env(ct_dataset, tmp_path):
    return tmp_path


def test_report_numbers_files_and_page(env, capsys):
    a = _make(env, "exp_a", "clasp-pe", [0.2, 0.45, 0.6], seed=0)
    b = _make(env, "exp_b", "random", [0.15, 0.3, 0.5], seed=1)
    out = env / "report"
    assert main(["report", str(a.root), str(b.root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exp_a" in printed and "Final Dice" in printed

    summary = json.loads((out / "summary.json").read_text())["experiments"]
    assert [s["strategy"] for s in summary] == ["clasp-pe", "random"]
    for s, dice in zip(summary, ([0.2, 0.45, 0.6], [0.15, 0.3, 0.5]), strict=True):
        assert s["final_dice"] == dice[-1]
        assert s["aubc"] == pytest.approx(aubc(dice))
        loops = s["loops"]
        assert [r["patches"] for r in loops] == [8, 16, 24]
        # annotated voxels grow by whole 4 x 16 x 16 patches (no overlaps)
        assert [r["voxels"] for r in loops] == [8 * 1024, 16 * 1024, 24 * 1024]
        fractions = [r["foreground_fraction"] for r in loops]
        assert all(0 < f <= 1 for f in fractions) and fractions == sorted(fractions)
        fit = fg_efficiency(fractions, dice)
        assert fit is not None
        assert s["fg_eff"] == pytest.approx(fit.rate)
        assert s["fg_fit"]["plateau"] == pytest.approx(fit.plateau)

    csv_rows = (out / "summary.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 6 and csv_rows[0].startswith("experiment,strategy,loop")

    names = ["dice_vs_budget.png", "patches_exp_a.png", "patches_exp_b.png"]
    names += ["query_exp_a.png", "query_exp_b.png"]  # the newest query as a viewer shows it
    for name in names:
        assert (out / name).read_bytes().startswith(PNG)
    page = (out / "report.html").read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(names)
    assert all(base64.b64decode(e).startswith(PNG) for e in embedded)
    assert 'src="http' not in page and "<script" not in page  # self-contained
    assert "0.6000" in page and "clasp-pe" in page


def test_report_never_overwrites_an_earlier_report_unless_asked(env, capsys):
    a = _make(env, "exp_a", "random", [0.2, 0.4], seed=0)
    out = env / "report"
    assert main(["report", str(a.root), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["report", str(a.root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds summary.json" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert main(["report", str(a.root), "--out", str(out), "--overwrite"]) == 0


# Hides matplotlib and scipy from the report's process, as on a machine without the extra.
_WITHOUT_REPORT_EXTRA = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("matplotlib", "scipy"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from clasp_rs.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_report_without_the_report_extra_says_what_to_install(env):
    """Issue 10, fault 9: was a ModuleNotFoundError traceback."""
    import os
    import subprocess
    import sys

    a = _make(env, "exp_a", "random", [0.2, 0.4], seed=0)
    out = env / "report"
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_REPORT_EXTRA, "report", str(a.root), "--out", str(out)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clasp-rs: error:"), done.stderr
    assert "install clasp-rs[report]" in lines[0] and "Traceback" not in done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_report_of_an_experiment_without_evaluated_loops_is_an_error(env):
    exp = init_experiment("900", env / "fresh", patch_size=(4, 16, 16), budget=8)
    with pytest.raises(DatasetError, match="no evaluated loop yet"):
        build_report([exp.root], env / "report")
    assert not (env / "report").exists()
