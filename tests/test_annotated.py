"""The one reading of ``annotated`` (clasp_rs.annotated.match_annotated)."""

from __future__ import annotations

import pytest

from clasp_rs import InvalidPatchError, InvalidScoresError, Patch
from clasp_rs.annotated import match_annotated, volume_ids

NAMES = ["case_000", "case_001.nii.gz"]


def test_dict_keys_and_patch_files_match_through_case_id() -> None:
    a = Patch("case_000.npy", (0, 0, 0), (1, 1, 1))
    b = Patch("case_001", (1, 1, 1), (1, 1, 1))
    assert match_annotated([a, b], NAMES) == {"case_000": [a], "case_001.nii.gz": [b]}
    got = match_annotated({"case_000.nii.gz": [(0, 0, 0, 1, 1, 1)], "case_000": [a]}, NAMES)
    assert got == {"case_000": [(0, 0, 0, 1, 1, 1), a]}
    # In a dict the key names the volume; the patches' file is not looked at.
    assert match_annotated({"case_001": [a]}, NAMES) == {"case_001.nii.gz": [a]}
    assert match_annotated(None, NAMES) == {} and match_annotated([], NAMES) == {}


@pytest.mark.parametrize(
    ("annotated", "words"),
    [
        ({"case_002": []}, r"annotated key 'case_002' names no volume .*'case_000'"),
        ([Patch("case_0", (0, 0, 0), (1, 1, 1))], "'case_0' names no volume"),
        ([(0, 0, 0, 1, 1, 1)], "must hold clasp_rs.Patch"),
        (Patch("case_000", (0, 0, 0), (1, 1, 1)), "got Patch"),
        ({"case_000": Patch("case_000", (0, 0, 0), (1, 1, 1))}, "must be a list"),
        ({3: []}, "volume names"),
        ("case_000", "got str"),
    ],
)
def test_what_names_no_volume_or_has_no_volume_is_an_error(annotated, words: str) -> None:
    with pytest.raises(InvalidPatchError, match=words):
        match_annotated(annotated, NAMES)


def test_two_names_of_one_case_are_an_error() -> None:
    with pytest.raises(InvalidScoresError, match="same case 'a'"):
        volume_ids(["a", "a.npy"])
    with pytest.raises(InvalidScoresError, match="must be strings"):
        volume_ids([1])
