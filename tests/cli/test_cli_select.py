"""`clasp-rs select` in process (main([...])) and once as the installed console script."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clasp_rs
from clasp_rs import (
    Patch,
    identical_patches,
    read_loop_file,
    read_loop_meta,
    select_across_volumes,
    write_loop_file,
)
from clasp_rs.cli import main


@pytest.fixture
def scores(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(42)
    paths = []
    for name, shape in (("case_001", (10, 12, 14)), ("case_002", (9, 16, 8))):
        path = tmp_path / f"{name}.npy"
        np.save(path, rng.integers(0, 1000, size=shape).astype(np.float32))
        paths.append(path)
    return paths


def _as_written(patches: list[Patch]) -> list[Patch]:
    return [Patch(f"{p.file}.npy", p.coords, p.size, p.score) for p in patches]


def test_select_prints_table_and_writes_loop_file(scores, tmp_path, capsys) -> None:
    out = tmp_path / "loop_001.json"
    argv = [*map(str, scores), "--patch-size", "4", "5", "6", "--n", "7", "--out", str(out)]
    assert main(["select", *argv]) == 0
    stdout = capsys.readouterr().out
    expected = select_across_volumes({"case_001": scores[0], "case_002": scores[1]}, (4, 5, 6), 7)
    assert len(expected) == 7
    assert identical_patches(read_loop_file(out), _as_written(expected))
    assert read_loop_meta(out) == {
        "strategy": "select",
        "seed": 0,
        "beta": None,
        "patch_size": [4, 5, 6],
        "stride": [1, 1, 1],
        "n": 7,
        "version": clasp_rs.__version__,
    }
    assert "case_001.npy" in stdout and "case_002.npy" in stdout
    first = expected[0]
    assert "({}, {}, {})".format(*first.coords) in stdout
    assert f"{first.score:.6g}" in stdout
    assert "selected 7 of 7 patches from 2 volume(s)" in stdout
    assert f"wrote {out}" in " ".join(stdout.split())


def test_select_with_annotated_stride_and_power_sampling(scores, tmp_path, capsys) -> None:
    earlier = tmp_path / "loop_000.json"
    # nnActive-style names: they apply to the score volume of the same case.
    done = [
        Patch("case_001.nii.gz", (0, 0, 0), (10, 6, 14)),
        Patch("other.nii.gz", (0, 0, 0), (1, 1, 1)),
    ]
    write_loop_file(earlier, done)
    out = tmp_path / "loop_001.json"
    argv = ["select", *map(str, scores), "--patch-size", "3", "3", "3", "--n", "6"]
    argv += ["--stride", "1", "2", "2", "--annotated", str(earlier), "--beta", "3", "--seed", "9"]
    assert main([*argv, "--out", str(out)]) == 0
    expected = select_across_volumes(
        {"case_001": scores[0], "case_002": scores[1]},
        (3, 3, 3),
        6,
        stride=(1, 2, 2),
        annotated={"case_001": done[:1]},
        beta=3.0,
        seed=9,
    )
    assert identical_patches(read_loop_file(out), _as_written(expected))
    assert not any(p.overlaps(done[0]) for p in expected if p.file == "case_001")
    meta = read_loop_meta(out)
    assert (meta["beta"], meta["seed"], meta["stride"]) == (3.0, 9, [1, 2, 2])
    stdout = " ".join(capsys.readouterr().out.split())
    assert "avoiding 1 annotated patch(es)" in stdout
    assert "ignored annotated patches of 1 case(s) without a score file: other" in stdout


def test_select_without_out_and_short_result(scores, capsys) -> None:
    assert main(["select", str(scores[1]), "--patch-size", "9", "16", "8", "--n", "3"]) == 0
    stdout = capsys.readouterr().out
    assert "selected 1 of 3 patches" in stdout
    assert "only 1 non-overlapping patches fit" in stdout


def test_select_refuses_to_overwrite(scores, tmp_path, capsys) -> None:
    out = tmp_path / "loop_001.json"
    out.write_text("precious")
    argv = ["select", str(scores[0]), "--patch-size", "2", "2", "2", "--n", "1", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("clasp-rs: error: ") and "already exists" in err and str(out) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out.read_text() == "precious"


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--patch-size", "0", "2", "2", "--n", "1"], "patch size"),
        (["--patch-size", "2", "2", "2", "--n", "-1"], "n (number of patches)"),
        (["--patch-size", "2", "2", "2", "--n", "1", "--stride", "1", "2"], "--stride"),
        (["--patch-size", "2", "2", "2", "--n", "1", "--stride", "0"], "stride"),
        (["--patch-size", "2", "2", "2", "--n", "1", "--beta", "0"], "beta"),
        (["--patch-size", "2", "2", "2", "--n", "1", "--annotated", "nope.json"], "not found"),
    ],
)
def test_select_bad_input_is_one_line(scores, capsys, extra: list[str], words: str) -> None:
    assert main(["select", str(scores[0]), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clasp-rs: error: ") and words in err
    assert err.count("\n") == 1


def test_select_errors_from_the_engine_and_files(tmp_path, capsys) -> None:
    missing = tmp_path / "case_009.npy"
    assert main(["select", str(missing), "--patch-size", "1", "1", "1", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and str(missing) in err
    bad = tmp_path / "case_003.npy"
    np.save(bad, np.full((3, 3, 3), np.nan, dtype=np.float32))
    assert main(["select", str(bad), "--patch-size", "1", "1", "1", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clasp-rs: error: ") and "NaN" in err and err.count("\n") == 1
    same = tmp_path / "sub"
    same.mkdir()
    np.save(same / "case_003.npy", np.ones((3, 3, 3), dtype=np.float32))
    argv = ["select", str(bad), str(same / "case_003.npy"), "--patch-size", "1", "1", "1"]
    assert main([*argv, "--n", "1"]) == 2
    assert "two score files name case 'case_003'" in capsys.readouterr().err


def test_usage_errors_and_version(capsys) -> None:
    assert main(["select", "x.npy", "--patch-size", "1", "1", "1"]) == 2
    assert "--n" in capsys.readouterr().err
    assert main([]) == 2
    capsys.readouterr()
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"clasp-rs {clasp_rs.__version__}"
    assert main(["select", "--help"]) == 0
    assert "--patch-size" in capsys.readouterr().out


def test_console_script_runs(scores, tmp_path) -> None:
    script = shutil.which("clasp-rs", path=str(Path(sys.executable).parent)) or shutil.which(
        "clasp-rs"
    )
    assert script is not None, "the clasp-rs console script is not installed (pip install -e .)"
    out = tmp_path / "loop.json"
    argv = [script, "select", *map(str, scores), "--patch-size", "4", "4", "4", "--n", "3"]
    done = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "selected 3 of 3 patches" in done.stdout
    assert len(read_loop_file(out)) == 3
    again = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2
    assert again.stderr.startswith("clasp-rs: error: ") and "already exists" in again.stderr


ROOT = Path(__file__).resolve().parents[2]


def test_readme_select_command_on_bundled_examples(capsys) -> None:
    examples = sorted(str(p) for p in (ROOT / "examples" / "scores").glob("*.npy"))
    assert [Path(p).name for p in examples] == ["case_001.npy", "case_002.npy"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "clasp-rs select examples/scores/*.npy --patch-size 16 16 16 --n 5" in readme
    assert main(["select", *examples, "--patch-size", "16", "16", "16", "--n", "5"]) == 0
    assert "selected 5 of 5 patches from 2 volume(s)" in capsys.readouterr().out


def test_readme_python_example_runs(monkeypatch, capsys) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    assert "case_001 (" in capsys.readouterr().out


def test_bundled_example_scores_are_what_the_script_makes(tmp_path, capsys) -> None:
    script = runpy.run_path(str(ROOT / "examples" / "make_example_scores.py"), run_name="examples")
    script["main"](tmp_path)
    capsys.readouterr()
    for name in ("case_001.npy", "case_002.npy"):
        made = np.load(tmp_path / name, allow_pickle=False)
        bundled = np.load(ROOT / "examples" / "scores" / name, allow_pickle=False)
        assert made.dtype == bundled.dtype == np.float32 and made.shape == (48, 64, 64)
        np.testing.assert_allclose(made, bundled, rtol=1e-6, atol=1e-7)
