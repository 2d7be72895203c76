"""Patch, case_id and loop files (read, write once, never overwrite)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clasp_rs import (
    InvalidPatchError,
    LoopFileError,
    Patch,
    case_id,
    identical_patches,
    read_loop_file,
    read_loop_meta,
    write_loop_file,
)
from reference import boxes_overlap


def test_patch_normalises_to_int_tuples() -> None:
    p = Patch("case.nii.gz", np.array([1, 2, 3]), [np.int64(4), 5, np.uint8(6)], np.float32(0.5))
    assert p.coords == (1, 2, 3) and p.size == (4, 5, 6)
    assert all(type(v) is int for v in (*p.coords, *p.size))
    assert type(p.score) is float and p.score == 0.5
    assert p.box == (1, 2, 3, 4, 5, 6)
    assert p.end == (5, 7, 9)
    assert p.stratum is None
    assert Patch("a", (0, 0, 0), (1, 1, 1), stratum=np.int32(-1)).stratum == -1


@pytest.mark.parametrize(
    ("coords", "size", "words"),
    [
        ((0, 0), (1, 1, 1), "3 dimensions"),
        ((0, 0, 0), (1, 1, 1, 1), "3 dimensions"),
        ((0, -1, 0), (1, 1, 1), "non-negative"),
        ((0, 0, 0), (1, 0, 1), ">= 1"),
        ((0.0, 0, 0), (1, 1, 1), "integers"),
        ((True, 0, 0), (1, 1, 1), "integers"),
        ("abc", (1, 1, 1), "integers"),
        (5, (1, 1, 1), "integers"),
    ],
)
def test_invalid_patch(coords: object, size: object, words: str) -> None:
    with pytest.raises(InvalidPatchError, match=words):
        Patch("a.nii.gz", coords, size)  # type: ignore[arg-type]


def test_invalid_patch_fields() -> None:
    with pytest.raises(InvalidPatchError, match="file"):
        Patch(3, (0, 0, 0), (1, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(InvalidPatchError, match="score"):
        Patch("a", (0, 0, 0), (1, 1, 1), score="high")  # type: ignore[arg-type]
    with pytest.raises(InvalidPatchError, match="stratum"):
        Patch("a", (0, 0, 0), (1, 1, 1), stratum=1.5)  # type: ignore[arg-type]


def test_patch_is_frozen_and_hashable() -> None:
    p = Patch("a", (0, 0, 0), (1, 1, 1))
    with pytest.raises(AttributeError):
        p.coords = (1, 1, 1)  # type: ignore[misc]
    assert len({p, Patch("a", [0, 0, 0], [1, 1, 1])}) == 1


boxes = st.tuples(*[st.integers(0, 6)] * 3, *[st.integers(1, 4)] * 3)


@settings(max_examples=500, deadline=None)
@given(boxes, boxes)
def test_overlaps_matches_voxel_painting(a: tuple, b: tuple) -> None:
    pa, pb = Patch("x", a[:3], a[3:]), Patch("y", b[:3], b[3:])
    assert pa.overlaps(pb) == pb.overlaps(pa) == boxes_overlap(a, b)


def test_touching_boxes_do_not_overlap() -> None:
    a = Patch("a", (0, 0, 0), (2, 2, 2))
    assert not a.overlaps(Patch("a", (2, 0, 0), (2, 2, 2)))
    assert a.overlaps(Patch("a", (1, 1, 1), (2, 2, 2)))
    assert a.overlaps(Patch("other file", (1, 1, 1), (1, 1, 1)))  # geometry only


@pytest.mark.parametrize(
    ("name", "case"),
    [
        ("case_001.nii.gz", "case_001"),
        ("imagesTr/case_001_0000.nii.gz", "case_001_0000"),
        ("/data/scores/liver_7.npy", "liver_7"),
        ("a.b.nrrd", "a.b"),
        ("x.mha", "x"),
        ("x.MHD", "x"),
        ("x.tif", "x"),
        ("x.tiff", "x"),
        ("x.png", "x"),
        ("x.npz", "x"),
        ("x.b2nd", "x"),
        ("case_001", "case_001"),
        ("notes.txt", "notes.txt"),
        (".npy", ".npy"),
    ],
)
def test_case_id(name: str, case: str) -> None:
    assert case_id(name) == case


def _strict_json(path: os.PathLike[str] | str) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_constant=reject)


def test_loop_file_round_trip(tmp_path) -> None:
    patches = [
        Patch("case_001.nii.gz", (1, 2, 3), (4, 5, 6), score=-1.25, stratum=2),
        Patch("case_002.nii.gz", (0, 0, 0), (8, 8, 8), score=-math.inf, stratum=-1),
        Patch("case_002.nii.gz", (9, 0, 0), (8, 8, 8)),
    ]
    meta = {"strategy": "clasp-pe", "seed": 3, "loop": 1, "beta": 3.162, "version": "0.1.0"}
    path = write_loop_file(tmp_path / "loop_001.json", patches, meta=meta)
    assert path == tmp_path / "loop_001.json"
    doc = _strict_json(path)
    assert doc["patches"][0] == {
        "file": "case_001.nii.gz",
        "coords": [1, 2, 3],
        "size": [4, 5, 6],
        "score": -1.25,
        "stratum": 2,
    }
    assert doc["patches"][1]["score"] is None  # -inf is written as null
    assert doc["meta"] == meta
    back = read_loop_file(path)
    assert identical_patches(
        back,
        [patches[0], Patch("case_002.nii.gz", (0, 0, 0), (8, 8, 8), None, -1), patches[2]],
    )
    assert read_loop_meta(path) == meta
    assert os.listdir(tmp_path) == ["loop_001.json"]  # no temporary file left


def test_write_never_overwrites(tmp_path) -> None:
    path = tmp_path / "loop_000.json"
    write_loop_file(path, [Patch("a", (0, 0, 0), (1, 1, 1))])
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        write_loop_file(path, [Patch("b", (0, 0, 0), (2, 2, 2))])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["loop_000.json"]


def test_concurrent_writers_exactly_one_wins(tmp_path) -> None:
    path = tmp_path / "loop_002.json"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(i: int) -> None:
        barrier.wait()
        try:
            write_loop_file(path, [Patch(f"w{i}", (i, 0, 0), (1, 1, 1))])
            result = f"won {i}"
        except FileExistsError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and outcomes.count("refused") == 7
    (winner,) = read_loop_file(path)
    assert winners[0] == f"won {winner.coords[0]}"
    assert os.listdir(tmp_path) == ["loop_002.json"]


def test_write_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        write_loop_file(tmp_path / "missing" / "loop.json", [])
    with pytest.raises(ValueError, match="JSON"):
        write_loop_file(tmp_path / "nan.json", [], meta={"beta": math.nan})
    with pytest.raises(ValueError, match="JSON"):
        write_loop_file(tmp_path / "obj.json", [], meta={"x": object()})
    with pytest.raises(InvalidPatchError):
        write_loop_file(tmp_path / "bad.json", [(0, 0, 0, 1, 1, 1)])  # type: ignore[list-item]
    assert os.listdir(tmp_path) == []


def test_empty_loop_file(tmp_path) -> None:
    path = write_loop_file(tmp_path / "empty.json", [])
    assert read_loop_file(path) == []
    assert read_loop_meta(path) == {}


def test_read_nnactive_file_ignores_extra_keys(tmp_path) -> None:
    path = tmp_path / "loop_000.json"
    path.write_text(
        json.dumps(
            {
                "patches": [
                    {"file": "c.nii.gz", "coords": [1, 2, 3], "size": [4, 5, 6], "label": 3},
                    {"file": "d.nii.gz", "coords": [0, 0, 0], "size": [1, 1, 1], "score": 7},
                ],
                "other": {"anything": True},
            }
        )
    )
    assert identical_patches(
        read_loop_file(path),
        [
            Patch("c.nii.gz", (1, 2, 3), (4, 5, 6)),
            Patch("d.nii.gz", (0, 0, 0), (1, 1, 1), score=7.0),
        ],
    )


def test_read_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_loop_file(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError):
        read_loop_meta(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"patches": [', "not valid JSON"),
        ("[]", "JSON object"),
        ('{"loops": []}', '"patches"'),
        ('{"patches": {}}', "must be a list"),
        ('{"patches": [3]}', "patches[0]"),
        ('{"patches": [{"file": "a", "coords": [0, 0, 0]}]}', '"size"'),
        ('{"patches": [{"file": 1, "coords": [0, 0, 0], "size": [1, 1, 1]}]}', "file"),
        ('{"patches": [{"file": "a", "coords": [0, 0], "size": [1, 1, 1]}]}', "coords"),
        ('{"patches": [{"file": "a", "coords": [0, -1, 0], "size": [1, 1, 1]}]}', "non-negative"),
        ('{"patches": [{"file": "a", "coords": [0, 0, 0], "size": [1, 0, 1]}]}', "size"),
        ('{"patches": [{"file": "a", "coords": [0, 0.5, 0], "size": [1, 1, 1]}]}', "integers"),
        (
            '{"patches": [{"file": "a", "coords": [0, 0, 0], "size": [1, 1, 1], "score": "x"}]}',
            "score",
        ),
        (
            '{"patches": [{"file": "a", "coords": [0, 0, 0], "size": [1, 1, 1], "stratum": 1.5}]}',
            "stratum",
        ),
    ],
)
def test_read_corrupt_loop_files(tmp_path, text: str, words: str) -> None:
    path = tmp_path / "loop_bad.json"
    path.write_text(text)
    with pytest.raises(LoopFileError) as info:
        read_loop_file(path)
    assert "loop_bad.json" in str(info.value)
    assert words in str(info.value)


def test_read_meta_errors(tmp_path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"patches": [], "meta": [1]}')
    with pytest.raises(LoopFileError, match="meta"):
        read_loop_meta(path)
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LoopFileError, match="b.json"):
        read_loop_file(binary)


def test_import_is_light_and_all_is_complete() -> None:
    code = (
        "import sys, clasp_rs\n"
        "heavy = sorted(m for m in ('torch', 'nnunetv2', 'scipy') if m in sys.modules)\n"
        "missing = [n for n in clasp_rs.__all__ if not hasattr(clasp_rs, n)]\n"
        "print(heavy, missing, 'ClaspPE' in dir(clasp_rs))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "[] [] True"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import clasp_rs

    with pytest.raises(AttributeError, match="no attribute 'not_there'"):
        clasp_rs.not_there  # noqa: B018
