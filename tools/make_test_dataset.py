"""Build the small nnU-Net v2 test dataset ``tests/data/Dataset_clasp_ct`` from real CT scans.

Source: the reference files in the TotalSegmentator 2.18.0 source distribution on PyPI
(``tests/reference_files/``). Two CT scans there come with organ label maps on the same grid:

- scan A: ``example_ct.nii.gz`` (abdomen and pelvis, 3 mm isotropic, 112 x 101 x 122 voxels)
  with ``example_seg_fast_force_split.nii.gz`` (TotalSegmentator "total" classes);
- scan B: the DICOM series ``example_ct_dicom/`` (upper abdomen, 20 slices of 512 x 512,
  0.98 x 0.98 x 2 mm) with ``example_seg_dicom.nii.gz``.

The label maps are TotalSegmentator predictions kept as regression references by that project,
not manual annotations; they are good enough to train and query on in tests.

What this script does, deterministically:

1. reorients every image and label map to LPS (identity direction), so axis 2 (x) runs from the
   patient's right to left;
2. keeps three coarse classes: 1 liver, 2 spleen, 3 kidney (left and right merged);
3. resamples in-plane to 4.5 mm (CT: Gaussian anti-aliasing then linear; labels:
   label-Gaussian interpolation); the slice spacing stays native (A 3 mm, B 2 mm);
4. cuts disjoint slabs along z through the organ region (A: four slabs of 12 slices,
   B: two slabs of 10 slices), each cropped in-plane to 64 x 64 voxels around the organs;
5. adds the left-right mirror image (x axis flipped) of every slab, giving 12 cases.

Mirror twins share their voxels, so a split may put a case in the pool and its twin in the
test set; the dataset is for testing software, not for reporting accuracy.

Usage::

    python tools/make_test_dataset.py                       # downloads the sdist with pip
    python tools/make_test_dataset.py --sdist /tmp/ts/totalsegmentator-2.18.0.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SDIST_NAME = "totalsegmentator-2.18.0.tar.gz"
SDIST_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
REFERENCE_DIR = "totalsegmentator-2.18.0/tests/reference_files"

# TotalSegmentator "total" task label values (totalsegmentator/map_to_binary.py).
TOTALSEG_SPLEEN = 1
TOTALSEG_KIDNEY_RIGHT = 2
TOTALSEG_KIDNEY_LEFT = 3
TOTALSEG_LIVER = 5

# Our coarse classes: source values mapped to each.
CLASSES: dict[str, tuple[int, tuple[int, ...]]] = {
    "liver": (1, (TOTALSEG_LIVER,)),
    "spleen": (2, (TOTALSEG_SPLEEN,)),
    "kidney": (3, (TOTALSEG_KIDNEY_RIGHT, TOTALSEG_KIDNEY_LEFT)),
}

IN_PLANE_SPACING_MM = 4.5
CROP_YX = (64, 64)
DATASET_FOLDER = "Dataset_clasp_ct"


@dataclass(frozen=True)
class Slab:
    """A z range ``[z0, z1)`` of one scan, cropped in-plane to ``CROP_YX`` around the organs."""

    scan: str
    z0: int
    z1: int


# Organ z ranges (LPS voxel indices after reorientation): scan A holds liver, spleen and kidneys
# in slices 66..111, scan B covers liver and spleen in all 20 slices.
SLABS = (
    Slab("A", 64, 76),
    Slab("A", 76, 88),
    Slab("A", 88, 100),
    Slab("A", 100, 112),
    Slab("B", 0, 10),
    Slab("B", 10, 20),
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(folder: Path) -> Path:
    """Fetch the sdist with pip (no install, no dependencies)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "totalsegmentator==2.18.0",
            "-d",
            str(folder),
        ],
        check=True,
    )
    return folder / SDIST_NAME


def extract_reference_files(sdist: Path, folder: Path) -> Path:
    """Extract the scans this script uses from the sdist; returns the reference_files folder."""
    wanted = (
        f"{REFERENCE_DIR}/example_ct.nii.gz",
        f"{REFERENCE_DIR}/example_seg_fast_force_split.nii.gz",
        f"{REFERENCE_DIR}/example_seg_dicom.nii.gz",
        f"{REFERENCE_DIR}/example_ct_dicom/",
    )
    with tarfile.open(sdist, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith(wanted)]
        if not members:
            raise FileNotFoundError(f"{sdist} holds no {REFERENCE_DIR}/ files")
        archive.extractall(folder, members=members, filter="data")
    return folder / REFERENCE_DIR


def read_dicom_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    if not names:
        raise FileNotFoundError(f"no DICOM series in {folder}")
    reader.SetFileNames(names)
    return reader.Execute()


def to_lps(image: sitk.Image) -> sitk.Image:
    return sitk.DICOMOrient(image, "LPS")


def coarse_labels(totalseg: sitk.Image) -> sitk.Image:
    """Map TotalSegmentator values to our classes; everything else becomes background."""
    source = sitk.GetArrayFromImage(totalseg)
    target = np.zeros(source.shape, dtype=np.uint8)
    for value, source_values in CLASSES.values():
        target[np.isin(source, source_values)] = value
    out = sitk.GetImageFromArray(target)
    out.CopyInformation(totalseg)
    return out


def load_scan(reference: Path, scan: str) -> tuple[sitk.Image, sitk.Image]:
    """Return (CT, coarse labels) of one scan in LPS, labels on the CT grid."""
    if scan == "A":
        ct = sitk.ReadImage(str(reference / "example_ct.nii.gz"))
        seg = sitk.ReadImage(str(reference / "example_seg_fast_force_split.nii.gz"))
    else:
        ct = read_dicom_series(reference / "example_ct_dicom")
        seg = sitk.ReadImage(str(reference / "example_seg_dicom.nii.gz"))
    ct = to_lps(sitk.Cast(ct, sitk.sitkFloat32))
    seg = to_lps(seg)
    # Scan B's label map is stored with a flipped y axis; resampling with identity transform
    # onto the CT grid puts both on the same voxels whatever their storage order was.
    seg = sitk.Resample(seg, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0, seg.GetPixelID())
    return ct, coarse_labels(seg)


def resample_in_plane(ct: sitk.Image, labels: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Resample to ``IN_PLANE_SPACING_MM`` in x and y, keeping the slice spacing."""
    old_spacing = np.array(ct.GetSpacing())  # (x, y, z)
    new_spacing = np.array([IN_PLANE_SPACING_MM, IN_PLANE_SPACING_MM, old_spacing[2]])
    old_size = np.array(ct.GetSize())
    new_size = np.floor(old_size * old_spacing / new_spacing).astype(int)

    reference = sitk.Image([int(s) for s in new_size], sitk.sitkFloat32)
    reference.SetSpacing([float(s) for s in new_spacing])
    reference.SetDirection(ct.GetDirection())
    # Keep the physical extent centred: the first new voxel centre sits half a new voxel in.
    corner = np.array(ct.GetOrigin()) - 0.5 * old_spacing
    reference.SetOrigin([float(v) for v in corner + 0.5 * new_spacing])

    # Anti-alias before linear interpolation (sigma ~ half the new in-plane spacing).
    sigma = [0.5 * IN_PLANE_SPACING_MM, 0.5 * IN_PLANE_SPACING_MM, 1e-3]
    smoothed = sitk.SmoothingRecursiveGaussian(ct, sigma)
    ct_out = sitk.Resample(smoothed, reference, sitk.Transform(), sitk.sitkLinear, -1024.0)
    labels_out = sitk.Resample(
        labels, reference, sitk.Transform(), sitk.sitkLabelGaussian, 0, sitk.sitkUInt8
    )
    return ct_out, labels_out


def crop_slab(ct: sitk.Image, labels: sitk.Image, slab: Slab) -> tuple[sitk.Image, sitk.Image]:
    """Cut ``slab`` and crop in-plane to ``CROP_YX`` centred on the foreground of the slab."""
    lab = sitk.GetArrayFromImage(labels)  # (Z, Y, X)
    if not 0 <= slab.z0 < slab.z1 <= lab.shape[0]:
        raise ValueError(f"slab {slab} outside scan of {lab.shape[0]} slices")
    fg = np.argwhere(lab[slab.z0 : slab.z1] > 0)
    if fg.size == 0:
        raise ValueError(f"slab {slab} holds no foreground")
    starts = []
    for axis, width in zip((1, 2), CROP_YX, strict=True):
        extent = lab.shape[axis]
        if extent < width:
            raise ValueError(f"scan {slab.scan} has {extent} voxels on axis {axis}, need {width}")
        centre = (fg[:, axis].min() + fg[:, axis].max() + 1) // 2
        starts.append(int(np.clip(centre - width // 2, 0, extent - width)))
    index = [starts[1], starts[0], slab.z0]  # SimpleITK index order (x, y, z)
    size = [CROP_YX[1], CROP_YX[0], slab.z1 - slab.z0]
    return sitk.RegionOfInterest(ct, size, index), sitk.RegionOfInterest(labels, size, index)


def mirrored(image: sitk.Image) -> sitk.Image:
    """Flip the voxel data along x, keeping the geometry (a left-right mirror image)."""
    array = sitk.GetArrayFromImage(image)[:, :, ::-1]
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(image)
    return out


def write_case(folder: Path, name: str, ct: sitk.Image, labels: sitk.Image) -> dict[str, int]:
    """Write one case; returns voxel counts per class name."""
    hu = sitk.GetArrayFromImage(ct)
    ct_int = sitk.GetImageFromArray(np.clip(np.rint(hu), -1024, 3071).astype(np.int16))
    ct_int.CopyInformation(ct)
    sitk.WriteImage(ct_int, str(folder / "imagesTr" / f"{name}_0000.nii.gz"), useCompression=True)
    sitk.WriteImage(labels, str(folder / "labelsTr" / f"{name}.nii.gz"), useCompression=True)
    lab = sitk.GetArrayFromImage(labels)
    return {cls: int((lab == value).sum()) for cls, (value, _) in CLASSES.items()}


def build(reference: Path, out: Path) -> list[dict[str, object]]:
    """Write the dataset into ``out`` (replaced if present); returns one summary per case."""
    staging = Path(tempfile.mkdtemp(prefix=".staging_", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp creates it private; the dataset is meant to be shared
    (staging / "imagesTr").mkdir()
    (staging / "labelsTr").mkdir()
    scans = {
        s: resample_in_plane(*load_scan(reference, s)) for s in sorted({x.scan for x in SLABS})
    }
    summary: list[dict[str, object]] = []
    index = 0
    for slab in SLABS:
        ct, labels = crop_slab(*scans[slab.scan], slab)
        for flip in (False, True):
            name = f"case_{index:03d}"
            if flip:
                ct_case, lab_case = mirrored(ct), mirrored(labels)
            else:
                ct_case, lab_case = ct, labels
            counts = write_case(staging, name, ct_case, lab_case)
            summary.append(
                {
                    "case": name,
                    "scan": slab.scan,
                    "slices": [slab.z0, slab.z1],
                    "mirrored": flip,
                    "shape_zyx": list(sitk.GetArrayFromImage(lab_case).shape),
                    "spacing_zyx": list(reversed(ct_case.GetSpacing())),
                    "voxels": counts,
                }
            )
            index += 1
    dataset_json = {
        "name": "clasp_ct",
        "description": "Tiny CT organ dataset for clasp-rs tests, from TotalSegmentator 2.18.0 "
        "reference files (see ATTRIBUTION.md)",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{cls: value for cls, (value, _) in CLASSES.items()}},
        "numTraining": len(summary),
        "file_ending": ".nii.gz",
        "licence": "CC BY 4.0",
    }
    (staging / "dataset.json").write_text(json.dumps(dataset_json, indent=4) + "\n")
    (staging / "cases.json").write_text(json.dumps(summary, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help=f"path to {SDIST_NAME} (downloaded if absent)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "tests" / "data" / DATASET_FOLDER,
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist if args.sdist is not None else download_sdist(Path(tmp))
        digest = sha256_of(sdist)
        if digest != SDIST_SHA256:
            raise SystemExit(f"{sdist}: sha256 {digest}, expected {SDIST_SHA256}")
        reference = extract_reference_files(sdist, Path(tmp) / "src")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        summary = build(reference, args.out)
    for row in summary:
        print(row["case"], row["scan"], row["slices"], row["shape_zyx"], row["voxels"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
