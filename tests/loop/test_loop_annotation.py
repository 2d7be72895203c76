"""Annotation (clasp_rs.loop.annotation, .human, driver.simulate_annotation): simulated from
the ground truth and from a human's label files, only inside the queried patches."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from clasp_rs import Patch
from clasp_rs.cli import main
from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.annotation import check_human_labels
from clasp_rs.loop.human import annotate_experiment
from clasp_rs.loop.setup import init_experiment
from clasp_rs.loop.state import load_state
from clasp_rs.loop.tasks import simulate_annotation
from clasp_rs.nnunet.labels import apply_patches, partial_labels, patch_mask
from clasp_rs.patches import patches_by_case, read_loop_file, write_loop_file
from testdata import copy_ct_dataset

sitk = pytest.importorskip("SimpleITK")


# --- pure functions against per-voxel references -------------------------------------------


def _inside(p: Patch, v: tuple[int, int, int]) -> bool:
    return all(c <= x < c + s for c, s, x in zip(p.coords, p.size, v, strict=True))


@pytest.mark.parametrize("seed", range(10))
def test_masks_and_partial_labels_match_a_per_voxel_reference(seed):
    rng = np.random.default_rng(seed)
    shape = (5, 7, 6)
    patches = []
    for _ in range(int(rng.integers(0, 4))):
        size = tuple(int(s) for s in rng.integers(1, 4, size=3))
        coords = tuple(int(rng.integers(0, n - s + 1)) for n, s in zip(shape, size, strict=True))
        patches.append(Patch("c.nii.gz", coords, size))
    truth = rng.integers(0, 3, size=shape)
    current = rng.integers(0, 4, size=shape)
    mask = patch_mask(shape, patches)
    partial = partial_labels(truth, patches, 9, np.uint8)
    applied = apply_patches(current, truth, patches)
    for v in np.ndindex(shape):
        hit = any(_inside(p, v) for p in patches)
        assert mask[v] == hit
        assert partial[v] == (truth[v] if hit else 9)
        assert applied[v] == (truth[v] if hit else current[v])
    assert partial.dtype == np.uint8 and applied.dtype == current.dtype


def test_patch_outside_the_volume_is_an_error():
    with pytest.raises(DatasetError, match=r"outside the volume \(4, 4, 4\)"):
        patch_mask((4, 4, 4), [Patch("c", (2, 0, 0), (3, 2, 2))], "c")


def test_human_labels_inside_the_patches_are_accepted_and_outside_refused():
    current = np.full((4, 6, 6), 3, dtype=np.uint8)
    current[0, 0, :2] = 1  # annotated in an earlier loop
    patch = Patch("c.nii.gz", (1, 1, 1), (2, 3, 3))
    human = current.copy()
    human[1:3, 1:4, 1:4] = 2
    human[1, 1, 1] = 0
    ok = check_human_labels("c", Path("c.nii.gz"), human, current, [patch], 3, 3)
    assert ok.case == "c"
    # ignore outside the patch means "untouched": accepted too
    blank = np.full_like(current, 3)
    blank[1:3, 1:4, 1:4] = 1
    check_human_labels("c", Path("c.nii.gz"), blank, current, [patch], 3, 3)

    outside = human.copy()
    outside[3, 5, 5] = 1
    with pytest.raises(
        DatasetError, match=r"writes outside its patches: 1 voxel\(s\) in the box z 3:4"
    ):
        check_human_labels("c", Path("c.nii.gz"), outside, current, [patch], 3, 3)
    changed_earlier = human.copy()
    changed_earlier[0, 0, 0] = 2
    with pytest.raises(DatasetError, match="writes outside its patches"):
        check_human_labels("c", Path("c.nii.gz"), changed_earlier, current, [patch], 3, 3)
    unlabelled = human.copy()
    unlabelled[2, 3, 3] = 3
    with pytest.raises(DatasetError, match=r"inside the queried patches hold \[3\]"):
        check_human_labels("c", Path("c.nii.gz"), unlabelled, current, [patch], 3, 3)
    with pytest.raises(DatasetError, match="shape"):
        check_human_labels("c", Path("c.nii.gz"), human[:3], current, [patch], 3, 3)


# --- on an experiment of the real CT dataset ------------------------------------------------


@pytest.fixture
def experiment(monkeypatch, tmp_path):
    """An initialised experiment with a Random query as loop_001.json (no training)."""
    from clasp_rs.strategies import get_strategy
    from clasp_rs.strategies.types import QueryRequest, ScoreSet

    copy_ct_dataset(monkeypatch, tmp_path)
    exp = init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=8)
    raw = tmp_path / "nnUNet_raw" / exp.dataset_name
    annotated = patches_by_case(read_loop_file(exp.loop_file(0)))
    shapes = {
        c: sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / exp.file_of(c)))).shape
        for c in exp.pool
    }
    request = QueryRequest.build(
        8, 0, exp.patch_size, annotated=annotated, files={c: exp.file_of(c) for c in exp.pool}
    )
    result = get_strategy("random", seed=0).query_scores(
        {c: ScoreSet(s) for c, s in shapes.items()}, request
    )
    write_loop_file(exp.loop_file(1), result.patches, meta={"strategy": "random", "loop": 0})
    return exp, raw


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _expected_labels(exp, case: str, loops: int) -> np.ndarray:
    truth = _array(exp.ground_truth(case))
    patches = [
        p
        for t in range(loops)
        for p in read_loop_file(exp.loop_file(t))
        if p.file == exp.file_of(case)
    ]
    return partial_labels(truth, patches, exp.ignore_label, np.uint8)


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(_array(p).tobytes()).hexdigest() for p in sorted(folder.iterdir())
    }


def test_simulated_annotation_copies_the_ground_truth_inside_new_patches_only(experiment):
    exp, raw = experiment
    info = simulate_annotation(exp, raw, 0)
    assert info["patches"] == 8
    for case in exp.pool:
        assert np.array_equal(
            _array(raw / "labelsTr" / exp.file_of(case)), _expected_labels(exp, case, 2)
        )
    first = _digests(raw / "labelsTr")
    simulate_annotation(exp, raw, 0)  # a resumed step applies the same annotation again
    assert _digests(raw / "labelsTr") == first


def _human_folder(exp, raw, tmp: Path) -> Path:
    """What a careful annotator returns: the handed-out files with the truth in the patches."""
    folder = tmp / "human"
    folder.mkdir()
    for case, patches in patches_by_case(read_loop_file(exp.loop_file(1))).items():
        current = _array(raw / "labelsTr" / exp.file_of(case))
        labelled = apply_patches(current, _array(exp.ground_truth(case)), patches)
        image = sitk.GetImageFromArray(labelled)
        image.CopyInformation(sitk.ReadImage(str(raw / "labelsTr" / exp.file_of(case))))
        sitk.WriteImage(image, str(folder / exp.file_of(case)))
    return folder


def _wait(exp) -> None:
    state = load_state(exp.state_file)
    state.waiting = {"loop": 0, "query": "loop_001.json"}
    state.save()


def test_human_annotation_applies_the_labels_inside_the_patches(experiment, tmp_path, capsys):
    exp, raw = experiment
    _wait(exp)
    folder = _human_folder(exp, raw, tmp_path)
    assert main(["annotate", str(exp.root), "--labels", str(folder), "--no-continue"]) == 0
    for case in exp.pool:
        assert np.array_equal(
            _array(raw / "labelsTr" / exp.file_of(case)), _expected_labels(exp, case, 2)
        )
    state = load_state(exp.state_file)
    assert state.waiting is None and state.done_keys() == ["000/annotate"]
    kept = sorted(p.name for p in (exp.root / "annotations" / "loop_001").iterdir())
    assert kept == sorted(p.name for p in folder.iterdir())
    # Nothing is waiting any more: a second annotate is refused.
    assert main(["annotate", str(exp.root), "--labels", str(folder), "--no-continue"]) == 2
    assert "not waiting for annotation" in capsys.readouterr().err


def test_human_label_outside_its_patches_is_refused_and_nothing_applied(experiment, tmp_path):
    exp, raw = experiment
    _wait(exp)
    folder = _human_folder(exp, raw, tmp_path)
    before = _digests(raw / "labelsTr")
    # One file writes a voxel far from every patch of its case.
    victim = sorted(folder.iterdir())[-1]
    labels = _array(victim)
    case_patches = [p for p in read_loop_file(exp.loop_file(1)) if p.file == victim.name]
    outside = np.argwhere(~patch_mask(labels.shape, case_patches) & (labels == exp.ignore_label))[0]
    labels[tuple(outside)] = 1
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(sitk.ReadImage(str(victim)))
    sitk.WriteImage(image, str(victim))
    with pytest.raises(DatasetError, match="label writes outside its patches"):
        annotate_experiment(exp.root, folder)
    assert _digests(raw / "labelsTr") == before
    assert load_state(exp.state_file).waiting is not None


def test_missing_human_label_file_is_named(experiment, tmp_path):
    exp, raw = experiment
    _wait(exp)
    folder = _human_folder(exp, raw, tmp_path)
    gone = sorted(folder.iterdir())[0]
    gone.unlink()
    with pytest.raises(DatasetError, match=f"lacks the label file.*{gone.name}"):
        annotate_experiment(exp.root, folder)


def test_state_json_is_untouched_by_a_refused_annotation(experiment, tmp_path):
    exp, raw = experiment
    _wait(exp)
    text = exp.state_file.read_text()
    with pytest.raises(FileNotFoundError):
        annotate_experiment(exp.root, tmp_path / "nowhere")
    assert exp.state_file.read_text() == text
    assert json.loads(text)["steps"] == []
