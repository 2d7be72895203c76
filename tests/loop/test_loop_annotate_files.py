"""``clasp-rs annotate`` with the files annotators really return (NIfTI, NRRD, MHA, 3D Slicer
``.seg.nrrd``, exported crops), their geometry checked before anything is applied, and the
experiment's folders never written through a symbolic link; the run's hand-out folder."""

from __future__ import annotations

import errno
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from clasp_rs.cli import main
from clasp_rs.exceptions import DatasetError
from clasp_rs.geometry import ImageGeometry
from clasp_rs.loop.handout import hand_out
from clasp_rs.loop.human import annotate_experiment
from clasp_rs.loop.setup import init_experiment
from clasp_rs.loop.state import load_state
from clasp_rs.nnunet.labels import apply_patches, partial_labels
from clasp_rs.patches import Patch, patches_by_case, read_loop_file, write_loop_file
from export_checks import load_json

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture
def experiment(ct_dataset, tmp_path):
    """An initialised experiment waiting for the human annotation of a Random query."""
    from clasp_rs.strategies import get_strategy
    from clasp_rs.strategies.base import QueryRequest, ScoreSet

    exp = init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=8)
    raw = tmp_path / "nnUNet_raw" / exp.dataset_name
    annotated = patches_by_case(read_loop_file(exp.loop_file(0)))
    shapes = {c: _array(raw / "labelsTr" / exp.file_of(c)).shape for c in exp.pool}
    request = QueryRequest.build(
        8, 0, exp.patch_size, annotated=annotated, files={c: exp.file_of(c) for c in exp.pool}
    )
    result = get_strategy("random", seed=3).query_scores(
        {c: ScoreSet(s) for c, s in shapes.items()}, request
    )
    write_loop_file(exp.loop_file(1), result.patches, meta={"strategy": "random", "loop": 0})
    state = load_state(exp.state_file)
    state.waiting = {"loop": 0, "query": "loop_001.json"}
    state.save()
    return exp, raw


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(_array(p).tobytes()).hexdigest() for p in sorted(folder.iterdir())
    }


def _query(exp) -> dict[str, list]:
    return patches_by_case(read_loop_file(exp.loop_file(1)))


def _expected(exp, case: str) -> np.ndarray:
    truth = _array(exp.ground_truth(case))
    mine = [
        p for t in (0, 1) for p in read_loop_file(exp.loop_file(t)) if p.file == exp.file_of(case)
    ]
    return partial_labels(truth, mine, exp.ignore_label, np.uint8)


def _filled(exp, raw, case: str) -> tuple[np.ndarray, object]:
    """The handed-out label of a case with the ground truth inside its queried patches."""
    reference = sitk.ReadImage(str(raw / "labelsTr" / exp.file_of(case)))
    labels = apply_patches(
        sitk.GetArrayFromImage(reference), _array(exp.ground_truth(case)), _query(exp)[case]
    )
    return labels, reference


def _write(labels: np.ndarray, reference, path: Path) -> None:
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path), True)


def _write_segmentation(labels, reference, path: Path, names: dict[int, str], skip=()) -> None:
    """A 3D Slicer segmentation of ``labels`` (one segment per class present, named by
    ``names``; background and values in ``skip`` left unsegmented), by slicerio."""
    slicerio = pytest.importorskip("slicerio")
    geometry = ImageGeometry.of(reference)
    seg = slicerio.create_segmentation(list(geometry.size), geometry.index_to_lps)
    for value in sorted(set(np.unique(labels).tolist()) - {0, *skip}):
        mask = np.transpose(labels == value, (2, 1, 0))
        slicerio.add_segment(seg, mask, {"name": names[value]})
    slicerio.write_segmentation(str(path), seg)


def _filled_folder(exp, raw, folder: Path) -> Path:
    """``folder`` with every queried case's label file filled from the ground truth."""
    folder.mkdir()
    for case in _query(exp):
        _write(*_filled(exp, raw, case), folder / f"{case}.nii.gz")
    return folder


def _assert_applied(exp, raw) -> None:
    for case in exp.pool:
        assert np.array_equal(_array(raw / "labelsTr" / exp.file_of(case)), _expected(exp, case))
    assert load_state(exp.state_file).waiting is None


@pytest.mark.parametrize("ending", [".nrrd", ".mha", ".nii", ".seg.nrrd"])
def test_each_format_is_applied_inside_the_patches(experiment, tmp_path, ending):
    exp, raw = experiment
    folder = tmp_path / "human"
    folder.mkdir()
    names = {v: k for k, v in exp.labels.items()} | {exp.ignore_label: "ignore"}
    for case in _query(exp):
        labels, reference = _filled(exp, raw, case)
        if ending == ".seg.nrrd":
            # As a Slicer user saves it: organs as segments, background unsegmented, the
            # handed-out ignore value kept as a segment named "ignore".
            _write_segmentation(labels, reference, folder / f"{case}{ending}", names)
        else:
            _write(labels, reference, folder / f"{case}{ending}")
    assert annotate_experiment(exp.root, folder) == (0, len(_query(exp)))
    _assert_applied(exp, raw)
    kept = sorted(p.name for p in (exp.root / "annotations" / "loop_001").iterdir())
    assert kept == sorted(p.name for p in folder.iterdir())


def test_slicer_segmentation_cropped_to_its_segments_and_named_by_value(experiment, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    exp, raw = experiment
    folder = tmp_path / "human"
    folder.mkdir()
    for case, patches in _query(exp).items():
        labels, reference = _filled(exp, raw, case)
        geometry = ImageGeometry.of(reference)
        # Only the queried boxes' extent is stored (Slicer's "crop to segments"); unsegmented
        # voxels inside the patches are background, outside they are left as they were.
        lo = np.min([p.coords for p in patches], axis=0)
        hi = np.max([p.end for p in patches], axis=0)
        sub = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        part = geometry.cropped(tuple(lo), tuple(hi - lo))
        seg = slicerio.create_segmentation(list(part.size), part.index_to_lps)
        inside = np.zeros(labels.shape, dtype=bool)
        for p in patches:
            z, y, x = p.coords
            dz, dy, dx = p.size
            inside[z : z + dz, y : y + dy, x : x + dx] = True
        inside = inside[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        for value in sorted(set(np.unique(sub[inside]).tolist()) - {0}):
            mask = np.transpose((sub == value) & inside, (2, 1, 0))
            slicerio.add_segment(seg, mask, {"name": str(value)})
        slicerio.write_segmentation(str(folder / f"{case}.seg.nrrd"), seg)
    annotate_experiment(exp.root, folder)
    _assert_applied(exp, raw)


def test_slicer_segments_must_name_a_label_and_not_overlap(experiment, tmp_path):
    exp, raw = experiment
    folder = tmp_path / "human"
    folder.mkdir()
    case = next(iter(_query(exp)))
    labels, reference = _filled(exp, raw, case)
    names = {0: "background", 1: "Liver", 2: "spleen", 3: "kidney", exp.ignore_label: "ignore"}
    for other in _query(exp):
        if other != case:
            _write(*_filled(exp, raw, other), folder / f"{other}.nii.gz")
    renamed = {**names, exp.ignore_label: "tumour"}  # ignore is in every handed-out file
    _write_segmentation(labels, reference, folder / f"{case}.seg.nrrd", renamed)
    before = _digests(raw / "labelsTr")
    with pytest.raises(DatasetError, match="segment 'tumour' matches no label of dataset.json"):
        annotate_experiment(exp.root, folder)
    # Names are matched case-insensitively ("IGNORE").
    _write_segmentation(
        labels, reference, folder / f"{case}.seg.nrrd", {**names, exp.ignore_label: "IGNORE"}
    )
    slicerio = pytest.importorskip("slicerio")
    seg = slicerio.read_segmentation(str(folder / f"{case}.seg.nrrd"))
    everything = np.ones(seg["voxels"].shape[-3:], dtype=bool)
    slicerio.add_segment(seg, everything, {"name": "spleen"})  # overlaps every other segment
    slicerio.write_segmentation(str(folder / f"{case}.seg.nrrd"), seg)
    with pytest.raises(DatasetError, match="overlap"):
        annotate_experiment(exp.root, folder)
    assert _digests(raw / "labelsTr") == before


def test_a_real_slicer_file_of_another_scan_is_refused_by_geometry(experiment, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    exp, raw = experiment
    folder = _filled_folder(exp, raw, tmp_path / "human")
    victim = sorted(_query(exp))[0]
    (folder / f"{victim}.nii.gz").unlink()
    shutil.copyfile(
        slicerio.get_testdata_file("Segmentation.seg.nrrd"), folder / f"{victim}.seg.nrrd"
    )
    with pytest.raises(
        DatasetError, match=f"{victim}.seg.nrrd: geometry differs from case '{victim}'.*spacing"
    ):
        annotate_experiment(exp.root, folder)


def _shifted(reference, how: str):
    image = sitk.Image(reference)
    if how == "origin":
        image.SetOrigin(tuple(o + 2.0 for o in reference.GetOrigin()))
    elif how == "spacing":
        image.SetSpacing(tuple(s * 1.1 for s in reference.GetSpacing()))
    elif how == "direction":
        image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    return image


@pytest.mark.parametrize("how", ["origin", "spacing", "direction", "size"])
def test_wrong_geometry_is_refused_naming_case_and_mismatch(experiment, tmp_path, how):
    exp, raw = experiment
    folder = _filled_folder(exp, raw, tmp_path / "human")
    victim = sorted(_query(exp))[-1]
    labels, reference = _filled(exp, raw, victim)
    if how == "size":
        padded = np.pad(labels, ((0, 1), (0, 0), (0, 0)), constant_values=exp.ignore_label)
        image = sitk.GetImageFromArray(padded)
        image.SetSpacing(reference.GetSpacing())
        image.SetOrigin(reference.GetOrigin())
        image.SetDirection(reference.GetDirection())
    else:
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(_shifted(reference, how))
    sitk.WriteImage(image, str(folder / f"{victim}.nii.gz"))
    before = _digests(raw / "labelsTr")
    with pytest.raises(DatasetError, match=f"geometry differs from case '{victim}'.*{how}"):
        annotate_experiment(exp.root, folder)
    assert _digests(raw / "labelsTr") == before
    assert load_state(exp.state_file).waiting is not None
    assert not (exp.root / "annotations").exists()


def test_crops_round_trip_equals_annotating_the_full_files(experiment, tmp_path):
    exp, raw = experiment
    labels_before = {p.name: p.read_bytes() for p in (raw / "labelsTr").iterdir()}
    state_before = exp.state_file.read_text()
    # 1. Annotate the full files.
    full = _filled_folder(exp, raw, tmp_path / "full")
    annotate_experiment(exp.root, full)
    after_full = _digests(raw / "labelsTr")
    # 2. Back to the query, then the same from crops: export --crops, fill each crop's own
    #    patch with the truth (the margin and neighbouring patches left as handed out).
    for name, data in labels_before.items():
        (raw / "labelsTr" / name).write_bytes(data)
    exp.state_file.write_text(state_before)
    shutil.rmtree(exp.root / "annotations")
    out = tmp_path / "export"
    assert main(["export", str(exp.root), "--loop", "1", "--crops", "--to", str(out)]) == 0
    crops = out / "crops"
    for case, patches in _query(exp).items():
        truth = _array(exp.ground_truth(case))
        for k, patch in enumerate(patches, start=1):
            path = crops / f"{case}_p{k:02d}.nii.gz"
            image = sitk.ReadImage(str(path))
            crop = sitk.GetArrayFromImage(image)
            index = image.GetOrigin()
            start = sitk.ReadImage(
                str(raw / "labelsTr" / exp.file_of(case))
            ).TransformPhysicalPointToIndex(index)
            z0, y0, x0 = start[2], start[1], start[0]
            z, y, x = patch.coords
            dz, dy, dx = patch.size
            crop[z - z0 : z - z0 + dz, y - y0 : y - y0 + dy, x - x0 : x - x0 + dx] = truth[
                z : z + dz, y : y + dy, x : x + dx
            ]
            filled = sitk.GetImageFromArray(crop)
            filled.CopyInformation(image)
            sitk.WriteImage(filled, str(path))
    assert main(["annotate", str(exp.root), "--labels", str(crops), "--no-continue"]) == 0
    assert _digests(raw / "labelsTr") == after_full
    _assert_applied(exp, raw)
    kept = sorted(p.name for p in (exp.root / "annotations" / "loop_001" / "crops").iterdir())
    assert kept and all("_p" in k for k in kept)


def test_a_crop_that_writes_outside_its_patch_or_misses_is_refused(experiment, tmp_path):
    exp, raw = experiment
    out = tmp_path / "export"
    assert main(["export", str(exp.root), "--crops", "--to", str(out)]) == 0
    crops = out / "crops"
    case, patches = next(iter(_query(exp).items()))
    first = crops / f"{case}_p01.nii.gz"
    image = sitk.ReadImage(str(first))
    crop = sitk.GetArrayFromImage(image)
    crop[...] = 1  # the whole crop, margin included
    bad = sitk.GetImageFromArray(crop)
    bad.CopyInformation(image)
    sitk.WriteImage(bad, str(first))
    with pytest.raises(DatasetError, match="writes outside its patch"):
        annotate_experiment(exp.root, crops)
    moved = sitk.Image(bad)
    moved.SetOrigin(tuple(o + 4.5 for o in bad.GetOrigin()))
    sitk.WriteImage(moved, str(first))
    with pytest.raises(DatasetError, match="geometry differs from crop 1 of case.*origin"):
        annotate_experiment(exp.root, crops)
    if len(patches) > 1:
        (crops / f"{case}_p02.nii.gz").unlink()
        with pytest.raises(DatasetError, match=f"crop\\(s\\) {case}_p02 are missing"):
            annotate_experiment(exp.root, crops)


def _victim(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    victim = outside / "precious.nii.gz"
    victim.write_bytes(b"not yours")
    return victim


def test_a_symlink_in_annotations_is_replaced_never_written_through(experiment, tmp_path):
    exp, raw = experiment
    folder = _filled_folder(exp, raw, tmp_path / "human")
    victim = _victim(tmp_path)
    keep = exp.root / "annotations" / "loop_001"
    keep.mkdir(parents=True)
    planted = keep / f"{sorted(_query(exp))[0]}.nii.gz"
    planted.symlink_to(victim)
    annotate_experiment(exp.root, folder)
    assert victim.read_bytes() == b"not yours"
    assert not planted.is_symlink() and planted.is_file()
    _assert_applied(exp, raw)


def test_a_symlinked_annotations_folder_is_refused_before_anything_is_applied(experiment, tmp_path):
    exp, raw = experiment
    folder = _filled_folder(exp, raw, tmp_path / "human")
    outside = _victim(tmp_path).parent
    (exp.root / "annotations").symlink_to(outside, target_is_directory=True)
    before = _digests(raw / "labelsTr")
    with pytest.raises(OSError) as info:
        annotate_experiment(exp.root, folder)
    assert info.value.errno == errno.ELOOP and "symbolic link" in str(info.value)
    assert sorted(p.name for p in outside.iterdir()) == ["precious.nii.gz"]
    assert _digests(raw / "labelsTr") == before
    assert load_state(exp.state_file).waiting is not None


def test_hand_out_writes_the_export_and_refuses_symlinks(experiment, tmp_path):
    exp, raw = experiment
    folder = hand_out(exp, 0)
    assert folder == exp.root / "to_annotate" / "loop_001"
    names = {p.name for p in folder.iterdir()}
    for case in _query(exp):
        for suffix in ("_0000.nii.gz", ".nii.gz", "_boxes.nii.gz", "_outline.nii.gz", ".mrk.json"):
            assert f"{case}{suffix}" in names
        # the label file to fill is the current training label
        assert np.array_equal(
            _array(folder / exp.file_of(case)), _array(raw / "labelsTr" / exp.file_of(case))
        )
    assert {"README.txt", "patches.csv", "patches.json", "classes_itksnap.txt", "mitk"} <= names
    # A second stop keeps the folder as it is (a human may be working in it).
    (folder / "notes.txt").write_text("mine")
    assert hand_out(exp, 0) == folder and (folder / "notes.txt").read_text() == "mine"
    # A label file planted as a link inside the experiment is not read.
    case = sorted(_query(exp))[0]
    (folder / exp.file_of(case)).unlink()
    (folder / exp.file_of(case)).symlink_to(raw / "labelsTr" / exp.file_of(case))
    with pytest.raises(DatasetError, match="symbolic link inside the experiment"):
        annotate_experiment(exp.root, folder)
    # to_annotate as a link to elsewhere: nothing is written there.
    shutil.rmtree(exp.root / "to_annotate")
    outside = _victim(tmp_path).parent
    (exp.root / "to_annotate").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError, match="symbolic link"):
        hand_out(exp, 0)
    assert sorted(p.name for p in outside.iterdir()) == ["precious.nii.gz"]


def test_a_resampled_case_is_annotated_on_its_original_scan(experiment, tmp_path):
    """The bundled 2 mm cases are trained at 3 mm: the annotator gets the original scan with
    the boxes that cover each queried patch, and labels drawn there land on the training grid
    exactly as the ground truth does."""
    exp, raw = experiment
    assert exp.resampled
    case = next(c for c in exp.pool if c in exp.resampled)
    patches = [Patch(exp.file_of(case), (1, 20, 20), (3, 10, 12), stratum=-1)]
    others = [p for p in read_loop_file(exp.loop_file(1)) if p.file != exp.file_of(case)]
    exp.loop_file(1).unlink()
    write_loop_file(exp.loop_file(1), others + patches, meta={"strategy": "random", "loop": 0})
    folder = hand_out(exp, 0)
    original = sitk.ReadImage(str(exp.root / "original" / "imagesTr" / f"{case}_0000.nii.gz"))
    scan = sitk.ReadImage(str(folder / f"{case}_0000.nii.gz"))
    assert scan.GetSize() == original.GetSize() == (64, 64, 10)
    # The box on the 2 mm grid: slices 1..3 at 3 mm span z in [0.5, 3.5] * 3 mm about the
    # 3 mm grid's origin, i.e. original slices 1..5 (their extents reach into it).
    boxes = _array(folder / f"{case}_boxes.nii.gz")
    assert np.array_equal(np.unique(np.argwhere(boxes == 1)[:, 0]), [1, 2, 3, 4, 5])
    row = next(r for r in load_json(folder / "patches.json")["patches"] if r["case"] == case)
    assert row["queried_zyx"] == {"start": [1, 20, 20], "size": [3, 10, 12]}
    assert row["voxel_zyx"]["start"] == [1, 20, 20] and row["voxel_zyx"]["size"] == [5, 10, 12]
    # The annotator fills every box of the exported label files with the original truth.
    truth_original = _array(exp.root / "original" / "labelsTr" / f"{case}.nii.gz")
    for name in [p.file for p in others + patches]:
        c = name[: -len(exp.file_ending)]
        path = folder / name
        handed = sitk.ReadImage(str(path))
        labels = sitk.GetArrayFromImage(handed)
        box = _array(folder / f"{c}_boxes.nii.gz") > 0
        source = truth_original if c == case else _array(exp.ground_truth(c))
        labels[box] = source[box]
        _write(labels, handed, path)
    annotate_experiment(exp.root, folder)
    _assert_applied(exp, raw)
