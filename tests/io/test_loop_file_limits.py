"""Loop files (and the other JSON files clasp-rs reads) with numbers or nesting no volume can
have are refused when read, in one line (issue 10, fault 4: a ``size`` of 10**30 was accepted
and ended in an ``OverflowError`` traceback in ``select --annotated``; JSON nested 100,000
levels deep ended in ``RecursionError``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from clasp_rs import LoopFileError, Patch, read_loop_file, read_loop_meta, select_top_patches
from clasp_rs.cli import main
from clasp_rs.exceptions import DatasetError, InvalidPatchError
from clasp_rs.io.dataset_json import read_dataset_json
from clasp_rs.io.parts import read_part


def _loop(coords: object = (0, 0, 0), size: object = (1, 1, 1), **extra: object) -> str:
    entry = {"file": "case_001.npy", "coords": coords, "size": size, **extra}
    return json.dumps({"patches": [entry]})


BAD_LOOP_FILES = {
    "size 10**30": (_loop(size=[10**30, 1, 1]), "patch size must be at most 2**62"),
    "coords 2**63": (_loop(coords=[2**63, 0, 0]), "patch coords must be at most 2**62"),
    "coords 2**64": (_loop(coords=[0, 0, 2**64]), "patch coords must be at most 2**62"),
    "nested 100,000": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "patches nested 100,000": (
        '{"patches": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "nested too deeply",
    ),
    "5000 digits": (
        '{"patches": [{"file": "a", "coords": [' + "9" * 5000 + ', 0, 0], "size": [1, 1, 1]}]}',
        "4300 digits",
    ),
    "score 10**400": (
        '{"patches": [{"file": "a", "coords": [0, 0, 0], "size": [1, 1, 1], "score": '
        + "9" * 400
        + "}]}",
        "float64's range",
    ),
    "coords of 100,000 values": (_loop(coords=[1] * 100_000), "must be a list of 3 integers"),
}


@pytest.mark.parametrize("name", list(BAD_LOOP_FILES))
def test_loop_file_numbers_and_nesting_are_refused_when_read(tmp_path: Path, name: str) -> None:
    text, match = BAD_LOOP_FILES[name]
    path = tmp_path / "loop_001.json"
    path.write_text(text)
    with pytest.raises(LoopFileError, match=re.escape(match)) as info:
        read_loop_file(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and len(message) < 400, message
    assert str(path) in message


def test_meta_nested_too_deeply_is_a_loop_file_error(tmp_path: Path) -> None:
    path = tmp_path / "loop_001.json"
    path.write_text('{"patches": [], "meta": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(LoopFileError, match="nested too deeply"):
        read_loop_meta(path)


@pytest.mark.parametrize("name", list(BAD_LOOP_FILES))
def test_select_annotated_with_such_a_file_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    scores = tmp_path / "case_001.npy"
    np.save(scores, np.ones((6, 6, 6), dtype=np.float32))
    loop = tmp_path / "loop_001.json"
    loop.write_text(BAD_LOOP_FILES[name][0])
    argv = ["select", str(scores), "--patch-size", "2", "2", "2", "--n", "2"]
    assert main([*argv, "--annotated", str(loop)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"clasp-rs: error: loop file {loop}: "), err


def test_a_patch_beyond_int64_is_refused_when_made() -> None:
    with pytest.raises(InvalidPatchError, match="at most 2\\*\\*62"):
        Patch("a", (0, 0, 0), (10**30, 1, 1))
    with pytest.raises(InvalidPatchError, match="an integer of 1329 bits"):
        Patch("a", (10**400, 0, 0), (1, 1, 1))
    edge = Patch("a", (2**62, 0, 0), (2**62, 1, 1))
    assert edge.end == (2**63, 1, 1)
    # Such a patch, annotated, overlaps nothing inside a real volume.
    assert len(select_top_patches(np.ones((4, 4, 4)), (2, 2, 2), 3, annotated=[edge])) == 3


def test_file_names_with_a_newline_stay_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "two\nlines"
    folder.mkdir()
    scores = tmp_path / "case_001.npy"
    np.save(scores, np.ones((6, 6, 6), dtype=np.float32))
    bad = folder / "loop_001.json"
    bad.write_text(BAD_LOOP_FILES["size 10**30"][0])
    argv = ["select", str(scores), "--patch-size", "2", "2", "2", "--n", "2", "--annotated"]
    for loop, start in (
        (bad, f"clasp-rs: error: loop file {tmp_path}/two\\nlines/loop_001.json: "),
        (folder / "missing.json", "clasp-rs: error: loop file not found: "),
    ):
        assert main([*argv, str(loop)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(start), err
        assert "two\\nlines" in err
    with pytest.raises(LoopFileError) as info:
        read_loop_file(bad)
    assert "\n" not in str(info.value) and "two\\nlines" in str(info.value)


def test_dataset_json_and_part_files_nested_too_deeply(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match="nested too deeply"):
        read_dataset_json(deep)
    with pytest.raises(LoopFileError, match="nested too deeply"):
        read_part(deep)
