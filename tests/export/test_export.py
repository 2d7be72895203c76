"""``clasp-rs export``: every viewer file puts each patch exactly on its voxels, on oblique,
mirrored and anisotropic scans (hypothesis) and on the bundled CT dataset."""

from __future__ import annotations

import csv
import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clasp_rs import Patch, write_loop_file
from clasp_rs.cli import main
from clasp_rs.geometry import ImageGeometry, geometry_mismatches, physical_box
from export_checks import (
    itksnap_labels,
    load_json,
    mitk_box_corners,
    same_corner_sets,
    slicer_roi_corners,
    slicer_schema_path,
)
from geometry_cases import geometries, patches_in, sitk_image
from testdata import CT_DATASET

sitk = pytest.importorskip("SimpleITK")


def _disjoint(patches: list[Patch]) -> list[Patch]:
    out: list[Patch] = []
    for p in patches:
        if not any(p.overlaps(q) for q in out):
            out.append(p)
    return out


def _expected_maps(shape, patches):
    boxes = np.zeros(shape, dtype=np.int64)
    faces = np.zeros(shape, dtype=np.int64)
    for v in itertools.product(*(range(n) for n in shape)):
        for k, p in enumerate(patches, start=1):
            if all(c <= x < e for c, x, e in zip(p.coords, v, p.end, strict=True)):
                boxes[v] = k
                on_face = any(x in (c, e - 1) for c, x, e in zip(p.coords, v, p.end, strict=True))
                faces[v] = k if on_face else 0
    return boxes, faces


def _check_export(out: Path, case: str, patches: list[Patch], ending: str) -> None:
    """Every file of one exported case against the patches (brute force, SimpleITK)."""
    image = sitk.ReadImage(str(out / f"{case}_0000{ending}"))
    geometry = ImageGeometry.of(image)
    doc = load_json(out / "patches.json")
    rows = [r for r in doc["patches"] if r["case"] == case]
    assert [r["patch"] for r in rows] == list(range(1, len(patches) + 1))
    for row, patch in zip(rows, patches, strict=True):
        z, y, x = patch.coords
        assert row["voxel_zyx"]["start"] == [z, y, x]
        assert row["viewer_ijk"]["start"] == [x, y, z]
        assert row["viewer_ijk"]["size"] == list(patch.size[::-1])
        start, end = np.asarray(row["lps_mm"]["start"]), np.asarray(row["lps_mm"]["end"])
        centre = np.asarray(row["lps_mm"]["centre"])
        step = 0.25 / max(patch.size)
        # Physical corners -> SimpleITK index: exactly the first and last voxel of the patch.
        assert image.TransformPhysicalPointToIndex(tuple(start + step * (centre - start))) == (
            x,
            y,
            z,
        )
        ez, ey, ex = patch.end
        assert image.TransformPhysicalPointToIndex(tuple(end + step * (centre - end))) == (
            ex - 1,
            ey - 1,
            ez - 1,
        )
        ras = np.asarray(row["ras_mm"]["centre"])
        np.testing.assert_allclose(ras, centre * [-1, -1, 1])
        corners = np.asarray(row["lps_mm"]["corners"])
        # Slicer ROI and MITK box: the same eight corners.
        markup = load_json(out / f"{case}.mrk.json")["markups"][row["patch"] - 1]
        assert markup["name"] == row["name"]
        assert same_corner_sets(slicer_roi_corners(markup), corners), markup
        mitk = (out / "mitk" / f"{case}_p{row['patch']:02d}.mitkgeometry").read_text()
        assert same_corner_sets(mitk_box_corners(mitk), corners)
        np.testing.assert_allclose(corners, physical_box(patch, geometry).corners, atol=1e-6)
    boxes, faces = _expected_maps(geometry.shape, patches)
    for name, expected in (("boxes", boxes), ("outline", faces)):
        written = sitk.ReadImage(str(out / f"{case}_{name}{ending}"))
        assert geometry_mismatches(ImageGeometry.of(written), geometry) == []
        assert np.array_equal(sitk.GetArrayFromImage(written), expected), name
    labels = itksnap_labels((out / f"{case}_boxes_itksnap.txt").read_text())
    assert sorted(labels) == list(range(len(patches) + 1))
    assert [labels[k][2] for k in range(1, len(patches) + 1)] == [r["name"] for r in rows]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_export_puts_every_patch_on_its_voxels_in_oblique_and_mirrored_scans(data):
    geometry = data.draw(geometries(max_size=9))
    ending = data.draw(st.sampled_from([".mha", ".nrrd"]))
    drawn = data.draw(
        st.lists(patches_in(geometry.shape, f"case_a{ending}"), min_size=1, max_size=4)
    )
    patches = _disjoint(drawn)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "imagesTr").mkdir()
        rng = np.random.default_rng(0)
        scan = rng.integers(-100, 100, size=geometry.shape).astype(np.int16)
        sitk.WriteImage(sitk_image(geometry, scan), str(root / "imagesTr" / f"case_a_0000{ending}"))
        write_loop_file(root / "loop_001.json", patches)
        code = main(
            [
                "export",
                str(root / "loop_001.json"),
                "--images",
                str(root / "imagesTr"),
                "--to",
                str(root / "out"),
            ]
        )
        assert code == 0
        _check_export(root / "out", "case_a", patches, ending)
        copied = sitk.ReadImage(str(root / "out" / f"case_a_0000{ending}"))
        assert np.array_equal(sitk.GetArrayFromImage(copied), scan)


def _ct_loop(tmp: Path) -> tuple[Path, list[Patch]]:
    patches = [
        Patch("case_000.nii.gz", (2, 10, 20), (4, 16, 16), score=-1.5, stratum=1),
        Patch("case_000.nii.gz", (6, 30, 30), (4, 16, 16), score=-2.0, stratum=-1),
        Patch("case_008.nii.gz", (0, 20, 10), (4, 16, 16), score=float("-inf"), stratum=2),
    ]
    path = tmp / "loop_001.json"
    write_loop_file(path, patches)
    return path, patches


def test_export_of_the_ct_dataset_with_crops(tmp_path, capsys):
    loop, patches = _ct_loop(tmp_path)
    out = tmp_path / "out"
    args = ["export", str(loop), "--images", str(CT_DATASET / "imagesTr"), "--to", str(out)]
    assert (
        main([*args, "--labels", str(CT_DATASET / "labelsTr"), "--crops", "--crop-margin", "5"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "exported 3 patch(es) of 2 case(s)" in printed
    assert "itksnap -g case_000_0000.nii.gz -s case_000.nii.gz" in printed
    for case in ("case_000", "case_008"):
        _check_export(out, case, [p for p in patches if p.file.startswith(case)], ".nii.gz")
    # Names come from the dataset.json next to imagesTr.
    names = [m["name"] for m in load_json(out / "case_000.mrk.json")["markups"]]
    assert names == ["case_000 #1 (liver)", "case_000 #2 (any class)"]
    classes = itksnap_labels((out / "classes_itksnap.txt").read_text())
    assert {v: n for v, (_, _, n) in classes.items()} == {
        0: "Clear Label",
        1: "liver",
        2: "spleen",
        3: "kidney",
    }
    ctbl = [line.split() for line in (out / "classes_slicer.ctbl").read_text().splitlines()]
    assert [(int(r[0]), r[1]) for r in ctbl if not r[0].startswith("#")] == [
        (0, "background"),
        (1, "liver"),
        (2, "spleen"),
        (3, "kidney"),
    ]
    # The CSV holds what the JSON holds.
    rows = list(csv.DictReader((out / "patches.csv").read_text().splitlines()))
    doc = load_json(out / "patches.json")["patches"]
    assert [r["name"] for r in rows] == [d["name"] for d in doc]
    for r, d in zip(rows, doc, strict=True):
        assert [int(r[k]) for k in ("z", "y", "x")] == d["voxel_zyx"]["start"]
        assert [int(r[k]) for k in ("i", "j", "k")] == d["viewer_ijk"]["start"]
        np.testing.assert_allclose(
            [float(r[f"lps_start_{a}"]) for a in "xyz"], d["lps_mm"]["start"], atol=1e-6
        )
        np.testing.assert_allclose(
            [float(r[f"ras_centre_{a}"]) for a in "xyz"], d["ras_mm"]["centre"], atol=1e-6
        )
    assert doc[2]["score"] is None  # -inf: JSON has no infinities
    # Crops: the scan and label cut at patch + 5 mm (2 voxels in-plane at 4.5 mm, 2 in z at
    # 3 mm), with the origin of their first voxel.
    scan = sitk.ReadImage(str(CT_DATASET / "imagesTr" / "case_000_0000.nii.gz"))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(CT_DATASET / "labelsTr" / "case_000.nii.gz")))
    crop = sitk.ReadImage(str(out / "crops" / "case_000_p01_0000.nii.gz"))
    start = (20 - 2, 10 - 2, 2 - 2)
    assert crop.GetSize() == (16 + 4, 16 + 4, 4 + 4)
    np.testing.assert_allclose(
        crop.GetOrigin(), scan.TransformIndexToPhysicalPoint(start), atol=1e-4
    )
    assert np.array_equal(
        sitk.GetArrayFromImage(crop), sitk.GetArrayFromImage(scan)[0:8, 8:28, 18:38]
    )
    label_crop = sitk.ReadImage(str(out / "crops" / "case_000_p01.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(label_crop), truth[0:8, 8:28, 18:38])
    assert geometry_mismatches(ImageGeometry.of(label_crop), ImageGeometry.of(crop)) == []
    box = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "crops" / "case_000_p01_box.nii.gz")))
    assert np.array_equal(np.argwhere(box).min(axis=0), [2, 2, 2])
    assert np.array_equal(np.argwhere(box).max(axis=0), [5, 17, 17]) and box.max() == 1
    # The second patch of case_000 touches the top of the slab: its crop is clipped there.
    clipped = sitk.ReadImage(str(out / "crops" / "case_000_p02_0000.nii.gz"))
    assert clipped.GetSize()[2] == 12 - (6 - 2)


def test_slicer_markups_validate_against_slicers_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    loop, _ = _ct_loop(tmp_path)
    out = tmp_path / "out"
    assert (
        main(["export", str(loop), "--images", str(CT_DATASET / "imagesTr"), "--to", str(out)]) == 0
    )
    doc = load_json(out / "case_000.mrk.json")
    # What Slicer's box ROI reader needs, whatever the schema file says.
    for markup in doc["markups"]:
        assert markup["type"] == "ROI" and markup["roiType"] == "Box"
        assert markup["coordinateSystem"] == "LPS" and markup["controlPoints"] == []
        assert len(markup["center"]) == 3 and len(markup["size"]) == 3
        rotation = np.asarray(markup["orientation"]).reshape(3, 3)
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rotation) > 0
    schema_file = slicer_schema_path()
    if schema_file is None:
        pytest.skip(
            "3D Slicer's markups-schema-v1.0.3.json not found (set CLASP_RS_SLICER_SCHEMA or "
            "put it into tests/data/slicer/)"
        )
    schema = load_json(schema_file)
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    broken = {**doc, "markups": [{**doc["markups"][0], "coordinateSystem": "XYZ"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_mirrored_scan_gives_a_rotation_with_the_same_box(tmp_path):
    """A direction with determinant -1: Slicer gets a rotation, and the same corners."""
    geometry = ImageGeometry(
        (6, 5, 4), (0.8, 1.2, 2.5), (10.0, -4.0, 7.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1)
    )
    (tmp_path / "images").mkdir()
    sitk.WriteImage(sitk_image(geometry), str(tmp_path / "images" / "m_0000.mha"))
    patch = Patch("m.mha", (1, 1, 2), (2, 3, 3), stratum=-1)
    write_loop_file(tmp_path / "loop.json", [patch])
    args = ["export", str(tmp_path / "loop.json"), "--images", str(tmp_path / "images")]
    assert main([*args, "--to", str(tmp_path / "out")]) == 0
    markup = load_json(tmp_path / "out" / "m.mrk.json")["markups"][0]
    assert np.linalg.det(np.asarray(markup["orientation"]).reshape(3, 3)) > 0
    assert same_corner_sets(slicer_roi_corners(markup), physical_box(patch, geometry).corners)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no images option", "needs --images DIR"),
        ("missing scan", "has no image of case 'case_000'"),
        ("not empty", "export folder is not empty"),
        ("outside", "outside the volume"),
    ],
)
def test_export_errors_are_one_line(tmp_path, capsys, how, message):
    loop, patches = _ct_loop(tmp_path)
    images = CT_DATASET / "imagesTr"
    out = tmp_path / "out"
    args = ["export", str(loop), "--to", str(out)]
    if how == "missing scan":
        images = tmp_path / "empty"
        images.mkdir()
    if how == "not empty":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    if how == "outside":
        write_loop_file(tmp_path / "far.json", [Patch("case_000.nii.gz", (10, 0, 0), (4, 4, 4))])
        args[1] = str(tmp_path / "far.json")
    if how != "no images option":
        args += ["--images", str(images)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    if how == "not empty":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
