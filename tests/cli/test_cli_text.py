"""Text a person reads (issue 10, fault 11, the CLI half): help without argparse's escapes,
one name for stratum -1 in the query tables and the report's legends (it was "(u)" in one
and "(entropy)" in the other)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clasp_rs.cli import COMMANDS, main
from clasp_rs.loop.plots import legend_label

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "probabilities"


@pytest.mark.parametrize("command", [c.__name__.rsplit(".", 1)[-1] for c in COMMANDS])
def test_help_shows_no_argparse_escapes(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "%%" not in text and "%(" not in text, text


def test_init_help_says_75_percent(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--help"]) == 0
    assert "(75 %)" in " ".join(capsys.readouterr().out.split())


def test_stratum_minus_one_has_one_name_in_tables_and_legends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    argv = ["query", str(EXAMPLE), "--dataset-json", str(EXAMPLE / "dataset.json")]
    argv += ["--n", "12", "--loop", "0", "--patch-size", "8", "16", "16", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "loop_001.json")]) == 0
    err = capsys.readouterr().err
    names = {1: "liver", 2: "spleen", 3: "kidney"}
    table_header = next(line for line in err.splitlines() if "case" in line and "total" in line)
    quotas = next(line for line in err.splitlines() if line.startswith("quotas: "))
    for s in (*names, -1):
        assert legend_label(s, names) in table_header and legend_label(s, names) in quotas
    assert legend_label(-1, names) == "-1 (entropy)"
    assert not re.search(r"\(u\)", err)
    assert legend_label(None, names) == "random" and legend_label(7, names) == "7 (class 7)"
