"""The nnU-Net v2 adapter (clasp_rs.nnunet) on the bundled real CT dataset.

The end-to-end test runs stock nnU-Net from PyPI on CPU: fingerprint and plan, preprocess,
train one fold of the tiny trainer on labels that are ``ignore`` outside a few boxes, predict
per-fold probabilities and score them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from clasp_rs.exceptions import DatasetError, InvalidProbabilitiesError
from clasp_rs.nnunet import (
    PROBABILITIES_KEY,
    dataset_name,
    dice_per_class,
    ensemble_segmentation,
    evaluate_segmentations,
    nnunet_paths,
)
from testdata import CT_DATASET, NNUNET_VARIABLES, set_nnunet_folders

LABELS = {"liver": 1, "spleen": 2, "kidney": 3}


# --- environment and dataset lookup (no nnunetv2 needed) -----------------------------------


@pytest.mark.parametrize("unset", NNUNET_VARIABLES)
def test_unset_variable_names_the_export_to_run(monkeypatch, tmp_path, unset):
    set_nnunet_folders(monkeypatch, tmp_path)
    monkeypatch.delenv(unset)
    with pytest.raises(DatasetError, match=f"not set: {unset}") as info:
        nnunet_paths()
    assert f"export {unset}=" in str(info.value)


def test_empty_variable_counts_as_unset(monkeypatch, tmp_path):
    set_nnunet_folders(monkeypatch, tmp_path)
    monkeypatch.setenv("nnUNet_results", "  ")
    with pytest.raises(DatasetError, match="nnUNet_results"):
        nnunet_paths()


def test_raw_folder_must_exist(monkeypatch, tmp_path):
    set_nnunet_folders(monkeypatch, tmp_path)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="not an existing folder"):
        nnunet_paths()


def test_paths_create_output_folders(monkeypatch, tmp_path):
    set_nnunet_folders(monkeypatch, tmp_path)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "new" / "results"))
    paths = nnunet_paths()
    assert paths.results.is_dir()
    assert paths.raw == tmp_path / "nnUNet_raw"


def test_dataset_name_lookup(monkeypatch, tmp_path):
    set_nnunet_folders(monkeypatch, tmp_path)
    (tmp_path / "nnUNet_raw" / "Dataset007_Knee").mkdir()
    assert dataset_name(7) == "Dataset007_Knee"
    assert dataset_name("7") == "Dataset007_Knee"
    assert dataset_name("Dataset123_Other") == "Dataset123_Other"
    with pytest.raises(DatasetError, match="no dataset with id 8"):
        dataset_name(8)
    with pytest.raises(DatasetError, match="three digits"):
        dataset_name("Dataset7_Knee")
    (tmp_path / "nnUNet_raw" / "Dataset007_Other").mkdir()
    with pytest.raises(DatasetError, match="several datasets with id 7"):
        dataset_name(7)


# --- the bundled dataset ------------------------------------------------------------------


def test_bundled_dataset_is_a_valid_nnunet_dataset():
    sitk = pytest.importorskip("SimpleITK")
    dataset_json = json.loads((CT_DATASET / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "CT"}
    assert dataset_json["labels"] == {"background": 0, **LABELS}
    assert dataset_json["file_ending"] == ".nii.gz"
    labels = sorted((CT_DATASET / "labelsTr").glob("*.nii.gz"))
    assert len(labels) == dataset_json["numTraining"] == 12
    cases_with = {name: 0 for name in LABELS}
    for path in labels:
        case = path.name[: -len(".nii.gz")]
        image = sitk.ReadImage(str(CT_DATASET / "imagesTr" / f"{case}_0000.nii.gz"))
        label = sitk.ReadImage(str(path))
        array = sitk.GetArrayFromImage(label)
        assert array.shape == sitk.GetArrayFromImage(image).shape
        assert all(s <= 64 for s in array.shape)
        assert image.GetSpacing() == pytest.approx(label.GetSpacing())
        assert image.GetOrigin() == pytest.approx(label.GetOrigin())
        assert set(np.unique(array)) <= {0, *LABELS.values()}
        for name, value in LABELS.items():
            cases_with[name] += bool(np.any(array == value))
    # every class in enough cases that a 75/25 split can keep it on both sides
    assert min(cases_with.values()) >= 4
    assert (CT_DATASET.parent / "ATTRIBUTION.md").is_file()


# --- partial labels and Dice against plain references ---------------------------------------


def copy_with_ignore_label(source: Path, target: Path) -> int:
    """Copy a raw dataset to ``target`` and add the ``ignore`` label (one above the highest
    label) to its dataset.json; returns the ignore value."""
    import shutil

    from clasp_rs.io.dataset_json import load_dataset_json, write_dataset_json

    shutil.copytree(source, target)
    doc = load_dataset_json(target / "dataset.json")
    ignore = max(doc["labels"].values()) + 1
    doc["labels"]["ignore"] = ignore
    write_dataset_json(target / "dataset.json", doc)
    return ignore


def clipped_patch(file, coords, size, volume):
    """The patch of the box ``coords`` + ``size`` clipped to ``volume``'s extent."""
    from clasp_rs import Patch

    start = [max(int(c), 0) for c in coords]
    end = [min(int(c) + int(s), n) for c, s, n in zip(coords, size, volume.shape, strict=True)]
    return Patch(file, start, [e - b for b, e in zip(start, end, strict=True)])


def _dice_reference(ref, pred, label, ignore):
    tp = fp = fn = 0
    for r, p in zip(ref.ravel().tolist(), pred.ravel().tolist(), strict=True):
        if ignore is not None and r == ignore:
            continue
        tp += r == label and p == label
        fp += r != label and p == label
        fn += r == label and p != label
    return math.nan if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


@pytest.mark.parametrize("ignore", [None, 4])
def test_dice_matches_voxel_count_reference(ignore):
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 5, size=(5, 6, 7))
    pred = rng.integers(0, 4, size=(5, 6, 7))
    ref[ref == 3] = 0  # label 3 absent from the reference, present in the prediction
    pred[pred == 2] = 1
    labels = [1, 2, 3, 7]  # 7 absent from both -> NaN
    got = dice_per_class(ref, pred, labels, ignore)
    for label in labels:
        want = _dice_reference(ref, pred, label, ignore)
        if math.isnan(want):
            assert math.isnan(got[label])
        else:
            assert got[label] == pytest.approx(want, rel=1e-12)
    assert math.isnan(got[7]) and got[3] == 0.0


def test_evaluate_means_skip_undefined_cases():
    ref = {"a": np.array([[[1, 1, 0, 0]]]), "b": np.array([[[0, 0, 0, 0]]])}
    pred = {"a": np.array([[[1, 0, 0, 0]]]), "b": np.array([[[0, 0, 0, 0]]])}
    result = evaluate_segmentations(ref, pred, [1, 2])
    assert result.per_case["a"][1] == pytest.approx(2 / 3)
    assert math.isnan(result.per_case["b"][1])
    assert result.per_class[1] == pytest.approx(2 / 3)
    assert math.isnan(result.per_class[2])
    assert result.mean == pytest.approx(2 / 3)
    with pytest.raises(DatasetError, match="no prediction for"):
        evaluate_segmentations(ref, {"a": pred["a"]}, [1])


def test_ensemble_averages_probabilities_not_votes(tmp_path):
    # fold 0 is sure of class 1, fold 1 leans to class 2: the mean says 1, votes would tie
    p0 = np.zeros((3, 1, 1, 2), np.float32)
    p1 = np.zeros((3, 1, 1, 2), np.float32)
    p0[:, 0, 0, 0] = (0.0, 0.9, 0.1)
    p1[:, 0, 0, 0] = (0.0, 0.4, 0.6)
    p0[:, 0, 0, 1] = p1[:, 0, 0, 1] = (1.0, 0.0, 0.0)
    files = []
    for i, p in enumerate((p0, p1)):
        np.savez_compressed(tmp_path / f"f{i}.npz", **{PROBABILITIES_KEY: p})
        files.append(tmp_path / f"f{i}.npz")
    np.testing.assert_array_equal(ensemble_segmentation(files), [[[1, 0]]])
    np.savez_compressed(tmp_path / "bad.npz", softmax=p0)
    with pytest.raises(InvalidProbabilitiesError, match="no 'probabilities'"):
        ensemble_segmentation([tmp_path / "bad.npz"])


# --- real nnU-Net ---------------------------------------------------------------------------


@pytest.mark.nnunet
def test_dice_agrees_with_nnunet_compute_metrics(tmp_path):
    pytest.importorskip("nnunetv2")
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from clasp_rs.nnunet.labels import read_label, write_label_like

    ref, reference = read_label(CT_DATASET / "labelsTr" / "case_004.nii.gz")
    pred = np.roll(ref, 2, axis=2).astype(np.uint8)  # a shifted copy: partial overlap
    ref_ignored = ref.astype(np.uint8).copy()
    ref_ignored[:, :10] = 4
    write_label_like(pred, reference, tmp_path / "pred.nii.gz")
    write_label_like(ref_ignored, reference, tmp_path / "ref.nii.gz")
    theirs = compute_metrics(
        str(tmp_path / "ref.nii.gz"), str(tmp_path / "pred.nii.gz"), SimpleITKIO(), [1, 2, 3], 4
    )
    ours = dice_per_class(ref_ignored, read_label(tmp_path / "pred.nii.gz")[0], [1, 2, 3], 4)
    for label in (1, 2, 3):
        assert 0.0 < ours[label] < 1.0
        assert ours[label] == pytest.approx(theirs["metrics"][label]["Dice"], rel=1e-12)


@pytest.mark.nnunet
# nnU-Net's search imports all its trainer modules; primus imports timm, which warns.
@pytest.mark.filterwarnings("ignore:`torch.jit.interface` is deprecated:FutureWarning")
def test_nnunet_finds_tiny_trainer_through_ext_trainer_folder(monkeypatch):
    pytest.importorskip("nnunetv2")
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from clasp_rs.nnunet import external_trainer_folder, resolve_trainer
    from clasp_rs.nnunet.trainers import nnUNetTrainer_clasp_tiny

    monkeypatch.setenv("nnUNet_extTrainer", str(external_trainer_folder()))
    found = recursive_find_trainer_class_by_name("nnUNetTrainer_clasp_tiny")
    assert found is nnUNetTrainer_clasp_tiny
    assert resolve_trainer("nnUNetTrainer_clasp_tiny") is nnUNetTrainer_clasp_tiny
    assert resolve_trainer(nnUNetTrainer_clasp_tiny) is nnUNetTrainer_clasp_tiny
    with pytest.raises(ValueError, match="no nnU-Net trainer named 'NoSuchTrainer'"):
        resolve_trainer("NoSuchTrainer")
    with pytest.raises(ValueError, match="not a subclass of nnUNetTrainer"):
        resolve_trainer(dict)


def test_importing_the_adapter_loads_neither_torch_nor_nnunetv2():
    import subprocess

    code = (
        "import sys, clasp_rs.nnunet; "
        "print(any(m == 'torch' or m.startswith(('torch.', 'nnunetv2')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


DATASET_ID = 987
PREDICTED = ("case_002", "case_008")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Plan, preprocess and train fold 0 of the tiny trainer on mostly-ignore labels."""
    pytest.importorskip("nnunetv2")
    import torch

    import clasp_rs.nnunet as nn
    from clasp_rs.nnunet.labels import partial_labels, read_label, write_label_like
    from clasp_rs.nnunet.trainers import nnUNetTrainer_clasp_tiny

    root = tmp_path_factory.mktemp("nnunet")
    with pytest.MonkeyPatch.context() as mp:
        set_nnunet_folders(mp, root)
        mp.setenv("nnUNet_n_proc_DA", "0")  # augmentation in this process: 2 small cores
        mp.setenv("nnUNet_compile", "false")
        threads = torch.get_num_threads()
        torch.set_num_threads(min(2, threads))
        try:
            raw = root / "nnUNet_raw" / f"Dataset{DATASET_ID:03d}_ClaspTest"
            ignore = copy_with_ignore_label(CT_DATASET, raw)
            annotated = 0
            total = 0
            for path in sorted((raw / "labelsTr").glob("*.nii.gz")):
                full, image = read_label(path)
                full = full.astype(np.uint8)
                # one 4 x 12 x 12 box around the first foreground voxel of each class
                boxes = []
                for value in np.unique(full[full > 0]):
                    z, y, x = np.argwhere(full == value)[0]
                    boxes.append(clipped_patch(path.name, (z - 2, y - 6, x - 6), (4, 12, 12), full))
                partial = partial_labels(full, boxes, ignore, np.uint8)
                write_label_like(partial, image, path)
                annotated += int(np.count_nonzero(partial != ignore))
                total += partial.size
            plans = nn.plan_experiment(DATASET_ID, verify=True)
            processed = nn.preprocess(DATASET_ID, "3d_fullres", plans=plans)
            fold_folder = nn.train_fold(
                DATASET_ID, 0, nnUNetTrainer_clasp_tiny, configuration="3d_fullres", device="cpu"
            )
            model = nn.model_folder(DATASET_ID, nnUNetTrainer_clasp_tiny, "3d_fullres", plans)
            yield {
                "root": root,
                "raw": raw,
                "ignore": ignore,
                "annotated_fraction": annotated / total,
                "plans": plans,
                "processed": processed,
                "fold_folder": fold_folder,
                "model": model,
            }
        finally:
            torch.set_num_threads(threads)


@pytest.mark.nnunet
@pytest.mark.slow
def test_training_on_ignore_labels_produces_a_checkpoint(trained):
    assert trained["annotated_fraction"] < 0.2  # most voxels are `ignore`
    assert trained["plans"] == "nnUNetPlans"
    assert trained["processed"] == [f"case_{i:03d}" for i in range(12)]
    assert trained["fold_folder"] == trained["model"] / "fold_0"
    assert (trained["fold_folder"] / "checkpoint_final.pth").is_file()
    dataset_json = json.loads((trained["model"] / "dataset.json").read_text())
    assert dataset_json["labels"]["ignore"] == trained["ignore"] == 4


@pytest.mark.nnunet
@pytest.mark.slow
def test_per_fold_probabilities(trained, monkeypatch, tmp_path):
    import clasp_rs.nnunet as nn
    from clasp_rs.nnunet.labels import read_label

    for name in NNUNET_VARIABLES:
        monkeypatch.setenv(name, str(trained["root"] / name))
    out = tmp_path / "probabilities"
    files = nn.predict_probabilities(
        trained["model"], trained["raw"] / "imagesTr", out, PREDICTED, folds=(0,), device="cpu"
    )
    assert sorted(files) == sorted(PREDICTED)
    for case in PREDICTED:
        (path,) = files[case]
        assert path == out / "fold_0" / f"{case}.npz"
        reference = read_label(CT_DATASET / "labelsTr" / f"{case}.nii.gz")[0]
        with np.load(path, allow_pickle=False) as data:
            assert list(data.keys()) == [PROBABILITIES_KEY]
            probabilities = data[PROBABILITIES_KEY]
        # background + 3 classes (ignore is not a class), on the raw grid (Z, Y, X)
        assert probabilities.shape == (4, *reference.shape)
        assert probabilities.dtype == np.float32
        assert probabilities.min() >= 0.0
        np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)
        # nnU-Net's own segmentation is the argmax of the probabilities it wrote
        segmentation = read_label(out / "fold_0" / f"{case}.nii.gz")[0]
        np.testing.assert_array_equal(segmentation, ensemble_segmentation([path]))
    assert not [p for p in (out / "fold_0").iterdir() if p.name.startswith(".")]

    # a second call with overwrite=False finds everything done and leaves the files alone
    stamps = {p: p.stat().st_mtime_ns for case in PREDICTED for p in files[case]}
    again = nn.predict_probabilities(
        trained["model"], trained["raw"] / "imagesTr", out, PREDICTED, folds=(0,), device="cpu"
    )
    assert again == files
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    references = {c: CT_DATASET / "labelsTr" / f"{c}.nii.gz" for c in PREDICTED}
    predictions = {c: ensemble_segmentation(files[c]) for c in PREDICTED}
    result = nn.evaluate_segmentations(references, predictions, [1, 2, 3])
    for scores in result.per_case.values():
        for value in scores.values():
            assert math.isnan(value) or 0.0 <= value <= 1.0
    assert set(result.per_class) == {1, 2, 3}


@pytest.mark.nnunet
@pytest.mark.slow
def test_prediction_shards_and_errors(trained, monkeypatch, tmp_path):
    import clasp_rs.nnunet as nn

    for name in NNUNET_VARIABLES:
        monkeypatch.setenv(name, str(trained["root"] / name))
    images = trained["raw"] / "imagesTr"
    part = nn.predict_probabilities(
        trained["model"], images, tmp_path, PREDICTED, num_parts=2, part_id=1, device="cpu"
    )
    assert list(part) == [sorted(PREDICTED)[1]]
    assert sorted(p.name for p in (tmp_path / "fold_0").glob("*.npz")) == ["case_008.npz"]
    with pytest.raises(DatasetError, match="no checkpoint .*fold_3"):
        nn.predict_probabilities(trained["model"], images, tmp_path, PREDICTED, folds=(3,))
    with pytest.raises(FileNotFoundError, match="case_999_0000.nii.gz"):
        nn.predict_probabilities(trained["model"], images, tmp_path, ["case_999"])
    with pytest.raises(ValueError, match="part_id 2 / num_parts 2"):
        nn.predict_probabilities(
            trained["model"], images, tmp_path, PREDICTED, num_parts=2, part_id=2
        )


@pytest.mark.nnunet
@pytest.mark.slow
def test_preprocess_only_the_cases_asked_for(trained, monkeypatch):
    import clasp_rs.nnunet as nn

    for name in NNUNET_VARIABLES:
        monkeypatch.setenv(name, str(trained["root"] / name))
    folder = nn.preprocessed_folder(DATASET_ID) / "nnUNetPlans_3d_fullres"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert nn.preprocess(DATASET_ID, "3d_fullres", cases=["case_005"]) == ["case_005"]
    after = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    changed = sorted(name for name in before if after[name] != before[name])
    assert changed and all(name.startswith("case_005") for name in changed)
    with pytest.raises(DatasetError, match="not in the raw dataset"):
        nn.preprocess(DATASET_ID, "3d_fullres", cases=["case_404"])
    with pytest.raises(DatasetError, match="configuration '3d_lowres' is not in"):
        nn.preprocess(DATASET_ID, "3d_lowres")


@pytest.mark.nnunet
@pytest.mark.slow
def test_train_errors_before_long_work(trained, monkeypatch):
    import clasp_rs.nnunet as nn

    for name in NNUNET_VARIABLES:
        monkeypatch.setenv(name, str(trained["root"] / name))
    with pytest.raises(DatasetError, match="configuration '3d_lowres' is not in"):
        nn.train_fold(DATASET_ID, 0, "nnUNetTrainer_clasp_tiny", configuration="3d_lowres")
    with pytest.raises(DatasetError, match="does not exist; run preprocess"):
        nn.train_fold(DATASET_ID, 0, "nnUNetTrainer_clasp_tiny", configuration="2d", device="cpu")
    with pytest.raises(ValueError, match="no nnU-Net trainer named"):
        nn.train_fold(DATASET_ID, 0, "nnUNetTrainer_typo", device="cpu")
    assert os.environ["nnUNet_results"] == str(trained["root"] / "nnUNet_results")
