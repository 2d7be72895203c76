"""``clasp-rs init`` on the bundled real CT dataset: split, starting budget, partial labels
with the ignore value, auto patch size and budget, and every bad input (nothing written)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from clasp_rs.cli import main
from clasp_rs.exceptions import BudgetWarning, ClaspWarning, DatasetError, PatchSizeWarning
from clasp_rs.loop.autosize import auto_patch_size, largest_component_box
from clasp_rs.loop.experiment import load_experiment
from clasp_rs.loop.setup import init_experiment
from clasp_rs.patches import patches_by_case, read_loop_file, read_loop_meta
from testdata import copy_ct_dataset

sitk = pytest.importorskip("SimpleITK")


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _training_truth(source: Path, case: str, exp) -> np.ndarray:
    """A case's ground truth on the training grid, resampled here without clasp-rs: the
    bundled cases are 3 x 4.5 x 4.5 mm (eight) or 2 x 4.5 x 4.5 mm (four), so nnU-Net's target
    spacing is the median, 3 x 4.5 x 4.5, and the 2 mm cases get round(10 * 2 / 3) = 7 slices
    about the same centre, by nearest neighbour."""
    image = sitk.ReadImage(str(source / "labelsTr" / f"{case}.nii.gz"))
    if image.GetSpacing() == (4.5, 4.5, 3.0):
        return sitk.GetArrayFromImage(image)
    assert image.GetSpacing() == (4.5, 4.5, 2.0) and image.GetSize() == (64, 64, 10)
    centre = image.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 4.5))
    origin = (image.GetOrigin()[0], image.GetOrigin()[1], centre[2] - 3 * 3.0)
    out = sitk.Resample(
        image,
        (64, 64, 7),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        origin,
        (4.5, 4.5, 3.0),
        image.GetDirection(),
        0,
        image.GetPixelID(),
    )
    return sitk.GetArrayFromImage(out)


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_init_builds_the_experiment_and_its_dataset(monkeypatch, tmp_path):
    source = copy_ct_dataset(monkeypatch, tmp_path)
    exp = init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=10, seed=1)
    raw = tmp_path / "nnUNet_raw" / exp.dataset_name
    assert exp.dataset_name == "Dataset901_clasp_ct_clasp"  # above every id in use
    assert load_experiment(tmp_path / "exp") == exp

    # split: 9 pool, 3 test, every class in both
    assert len(exp.pool) == 9 and len(exp.test) == 3
    for cases in (exp.pool, exp.test):
        seen = set()
        for case in cases:
            seen |= set(np.unique(_read(source / "labelsTr" / f"{case}.nii.gz")).tolist())
        assert seen == {0, 1, 2, 3}

    # the new dataset: ignore is the highest label, pool in imagesTr, test in imagesTs
    dataset = json.loads((raw / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "ignore": 4}
    assert dataset["numTraining"] == 9 and exp.ignore_label == 4
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == [
        f"{c}_0000.nii.gz" for c in exp.pool
    ]
    assert sorted(p.name for p in (raw / "imagesTs").iterdir()) == [
        f"{c}_0000.nii.gz" for c in exp.test
    ]

    # the starting budget: 10 patches, two per label in different cases
    patches = read_loop_file(tmp_path / "exp" / "loop_000.json")
    assert len(patches) == 10
    assert read_loop_meta(tmp_path / "exp" / "loop_000.json")["strategy"] == "starting-budget"
    for label in range(4):
        assert len({p.file for p in patches if p.stratum == label}) == 2

    # mixed spacing: the 2 mm cases are resampled to nnU-Net's target spacing for training,
    # their originals kept for the annotators
    assert exp.target_spacing == (3.0, 4.5, 4.5)
    assert exp.resampled == ["case_008", "case_009", "case_010", "case_011"]
    for case in exp.resampled:
        for sub, name in (("imagesTr", f"{case}_0000.nii.gz"), ("labelsTr", f"{case}.nii.gz")):
            kept = tmp_path / "exp" / "original" / sub / name
            assert kept.read_bytes() == (source / sub / name).read_bytes()
        folder = "imagesTr" if case in exp.pool else "imagesTs"
        scan = sitk.ReadImage(str(raw / folder / f"{case}_0000.nii.gz"))
        assert scan.GetSize() == (64, 64, 7) and scan.GetSpacing() == (4.5, 4.5, 3.0)
        original = sitk.ReadImage(str(source / "imagesTr" / f"{case}_0000.nii.gz"))
        np.testing.assert_allclose(
            scan.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 3.0)),
            original.TransformContinuousIndexToPhysicalPoint((31.5, 31.5, 4.5)),
            atol=1e-4,
        )

    # partial labels: the ground truth inside the patches, ignore (4) everywhere else
    by_case = patches_by_case(patches)
    for case in exp.pool:
        truth = _training_truth(source, case, exp)
        expected = np.full(truth.shape, 4, dtype=np.int64)
        for p in by_case.get(case, []):
            z, y, x = p.coords
            dz, dy, dx = p.size
            expected[z : z + dz, y : y + dy, x : x + dx] = truth[z : z + dz, y : y + dy, x : x + dx]
        written = sitk.ReadImage(str(raw / "labelsTr" / f"{case}.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(written), expected)
        if case not in exp.resampled:
            image = sitk.ReadImage(str(source / "labelsTr" / f"{case}.nii.gz"))
            assert written.GetSpacing() == image.GetSpacing()
            assert written.GetOrigin() == image.GetOrigin()
        assert np.array_equal(_read(tmp_path / "exp" / "ground_truth" / f"{case}.nii.gz"), truth)

    # the pool's foreground voxel counts come from the ground truth on the training grid
    cases_json = {c["case"]: c["voxels"] for c in json.loads((source / "cases.json").read_text())}
    for case in exp.pool:
        counts = exp.foreground_voxels[case]
        truth = _training_truth(source, case, exp)
        if case not in exp.resampled:
            assert [cases_json[case][k] for k in ("liver", "spleen", "kidney")] == [
                int(np.count_nonzero(truth == c)) for c in (1, 2, 3)
            ]
        assert counts == {str(c): int(np.count_nonzero(truth == c)) for c in (1, 2, 3)}


def test_auto_patch_size_and_budget_on_the_real_labels(monkeypatch, tmp_path):
    source = copy_ct_dataset(monkeypatch, tmp_path)
    # 200 patches on a pool of 9 small scans: most of its foreground is annotated at once;
    # the automatic patch is deeper than the thinnest scans.
    with pytest.warns(ClaspWarning) as warned:
        exp = init_experiment("Dataset900_clasp_ct", tmp_path / "exp", hard_classes=["kidney"])
    messages = [str(w.message) for w in warned if issubclass(w.category, BudgetWarning)]
    assert any(re.search(r"starting budget .* annotates \d+ % of the pool", m) for m in messages)
    assert any(
        re.search(r"one loop's budget .* covers up to \d+ % of the pool", m) for m in messages
    )
    caught = [w for w in warned if issubclass(w.category, PatchSizeWarning)]
    assert caught and all("axis Z" in str(w.message) for w in caught)
    boxes: dict[int, list] = {1: [], 2: [], 3: []}
    for label in sorted((source / "labelsTr").glob("*.nii.gz")):
        truth = _read(label)
        # measured in mm, counted in voxels of the training spacing 3 x 4.5 x 4.5 mm
        z_mm = sitk.ReadImage(str(label)).GetSpacing()[2]
        for c in boxes:
            if np.any(truth == c):
                dz, dy, dx = largest_component_box(truth == c)
                boxes[c].append((dz * z_mm / 3.0, dy, dx))
    assert exp.patch_size == auto_patch_size(boxes)
    assert all(1 <= s <= 64 for s in exp.patch_size)
    # The median liver box is taller than the resampled 7-slice cases: the warning says so.
    assert exp.patch_size[0] > 7
    assert "case_008" in str(caught[0].message) or "case_009" in str(caught[0].message)
    assert exp.budget == 50 + 50 + 100 and exp.hard_classes == [3]
    assert exp.start_budget == exp.budget


def test_init_through_the_cli(monkeypatch, tmp_path, capsys):
    copy_ct_dataset(monkeypatch, tmp_path)
    code = main(
        [
            "init",
            "900",
            str(tmp_path / "exp"),
            "--patch-size",
            "4",
            "16",
            "16",
            "--budget",
            "8",
            "--dataset-id",
            "777",
            "--name",
            "ct_al",
        ]
    )
    assert code == 0
    assert (tmp_path / "nnUNet_raw" / "Dataset777_ct_al" / "dataset.json").is_file()
    assert "clasp-rs run" in capsys.readouterr().err


def _break_dataset(raw: Path, how: str) -> None:
    doc = json.loads((raw / "dataset.json").read_text())
    if how == "no labelsTr":
        shutil.rmtree(raw / "labelsTr")
    elif how == "file_ending":
        doc["file_ending"] = ".nii"
    elif how == "missing label value":
        del doc["labels"]["kidney"]
    elif how == "ignore label":
        doc["labels"]["ignore"] = 4
    (raw / "dataset.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("how", "options", "message"),
    [
        ("unset env", {}, "export nnUNet_preprocessed="),
        ("no labelsTr", {}, "has no labelsTr folder"),
        ("file_ending", {}, "do not end with dataset.json's file_ending '.nii'"),
        ("missing label value", {}, r"label value\(s\) \[3\] that dataset.json does not list"),
        ("ignore label", {}, "already has an 'ignore' label"),
        ("ok", {"budget": 7}, "--budget 7 is too small: every class needs two patches"),
        ("ok", {"budget": 20, "start_budget": 5}, "--start-budget 5 is too small"),
        ("ok", {"hard_classes": ["lung"]}, "--hard-classes 'lung' is not a foreground class"),
        ("ok", {"patch_size": (4, 16)}, "3 positive integers"),
        ("ok", {"dataset_id": 900}, "id 900 is already used"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    monkeypatch, tmp_path, how, options, message
):
    raw = copy_ct_dataset(monkeypatch, tmp_path)
    if how == "unset env":
        monkeypatch.delenv("nnUNet_preprocessed")
    else:
        _break_dataset(raw, how)
    before = _listing(tmp_path)
    with pytest.raises((DatasetError, ValueError), match=message):
        init_experiment("900" if how != "unset env" else str(raw), tmp_path / "exp", **options)
    assert _listing(tmp_path) == before
    assert not (tmp_path / "exp").exists()


def test_existing_experiment_folder_is_refused(monkeypatch, tmp_path, capsys):
    copy_ct_dataset(monkeypatch, tmp_path)
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "notes.txt").write_text("mine")
    assert main(["init", "900", str(tmp_path / "exp"), "--budget", "8"]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["notes.txt"]


def test_init_prints_the_patches_it_wrote_and_warns_about_a_large_budget(
    monkeypatch, tmp_path, capsys
):
    copy_ct_dataset(monkeypatch, tmp_path)
    assert main(["init", "900", str(tmp_path / "exp"), "--hard-classes", "kidney"]) == 0
    err = capsys.readouterr().err
    written = len(read_loop_file(tmp_path / "exp" / "loop_000.json"))
    assert written < 200
    assert f"{written} in loop_000.json (of 200 asked; no more fit)" in err
    assert "clasp-rs: warning: the starting budget (" in err
    assert "% of the pool's foreground voxels" in err
    assert "200 in loop_000.json" not in err
