"""A file where a folder goes (and a folder where a file goes) is named as such (issue 10,
fault 10: a ``.npz`` file passed as the probability folder said "folder not found" for a
file that exists)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clasp_rs.cli import build_parser, main
from clasp_rs.devices import DEVICE_CHOICES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "probabilities"


def _query(probabilities: Path, dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "query",
        str(probabilities),
        "--dataset-json",
        str(dataset),
        "--n",
        "4",
        "--loop",
        "0",
        "--patch-size",
        "8",
        "16",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("clasp-rs: error: "), err
    return err.strip()


def test_an_npz_file_as_the_probability_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    npz = EXAMPLE / "fold_0" / "case_000.npz"
    err = _error(capsys, _query(npz, EXAMPLE / "dataset.json", tmp_path / "loop_001.json"))
    assert "not found" not in err
    assert "expected the probability export folder" in err and "got a file" in err
    assert "pass the folder that holds it" in err and err.endswith(str(npz))


def test_other_files_and_folders_in_each_others_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, out = EXAMPLE / "dataset.json", tmp_path / "loop_001.json"
    err = _error(capsys, _query(dataset, dataset, out))
    assert "expected the probability export folder" in err and "got a file" in err
    err = _error(capsys, _query(EXAMPLE, EXAMPLE, out))
    assert "expected the dataset.json file, got a folder (it holds a dataset.json)" in err
    err = _error(capsys, _query(EXAMPLE, dataset, tmp_path))
    assert "output is a folder; expected the name of a new file in it" in err
    err = _error(capsys, _query(EXAMPLE, dataset, out, "--annotated", str(EXAMPLE)))
    assert "expected a loop file, got a folder" in err
    assert list(tmp_path.iterdir()) == []


def _device_choices(parser: argparse.ArgumentParser, path: str = "") -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for action in parser._actions:
        if "--device" in action.option_strings and action.choices is not None:
            found[path] = list(action.choices)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_device_choices(sub, f"{path} {name}".strip()))
    return found


def test_every_command_that_runs_nnunet_offers_the_same_devices() -> None:
    # study run once lacked mps, which run and annotate took.
    found = _device_choices(build_parser())
    assert {"run", "annotate", "study run"} <= set(found), found
    assert all(choices == list(DEVICE_CHOICES) for choices in found.values()), found
    assert main(["study", "run", "--help"]) == 0
