"""A human's label files for a query: found, read in any format annotators save, checked
for geometry, and assembled into one label map per case on the grid they were drawn on.

Per queried case, ``--labels DIR`` holds either one full label file ``<case>.nii.gz`` /
``.nii`` / ``.nrrd`` / ``.mha`` / ``.seg.nrrd`` (3D Slicer segmentation), or, for annotators
who worked on ``clasp-rs export --crops``, one crop ``<case>_pNN<ending>`` per patch. Each
file's geometry (size, origin, spacing, direction) must be the case's (or the crop's) within
:class:`~clasp_rs.geometry.GeometryTolerance` before anything is applied; a 3D Slicer
segmentation may also cover only part of the scan's grid (Slicer crops to the segments).

In a Slicer segmentation, segments are mapped to dataset.json labels by name
(case-insensitive; ``ignore`` included) or by a name that is a label value (``"2"``);
voxels in no segment are background inside the queried patches and untouched outside.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._safe_paths import is_inside
from clasp_rs.exceptions import DatasetError
from clasp_rs.export.crops import crop_box, crop_name, margin_voxels, patch_in_crop
from clasp_rs.geometry import ImageGeometry, geometry_mismatches, read_geometry
from clasp_rs.nnunet.labels import patch_mask, read_label
from clasp_rs.patches import Patch

__all__ = [
    "LABEL_ENDINGS",
    "FoundLabels",
    "GeometryMismatchError",
    "assemble_labels",
    "find_label_files",
    "read_label_map",
]

LABEL_ENDINGS = (".seg.nrrd", ".nii.gz", ".nii", ".nrrd", ".mha")
"""Label file endings ``annotate`` reads (3D Slicer segmentations first)."""


class GeometryMismatchError(DatasetError):
    """A label file does not lie on the grid it was expected on."""


@dataclass(frozen=True)
class FoundLabels:
    """The file(s) a human returned for one case.

    Attributes:
        case: case name.
        files: one full label file, or one crop per patch in patch order.
        crops: whether ``files`` are crops.
    """

    case: str
    files: list[Path]
    crops: bool


def _present(path: Path) -> bool:
    return os.path.lexists(path)


def _one_of(folder: Path, stem: str) -> list[Path]:
    return [folder / f"{stem}{e}" for e in LABEL_ENDINGS if _present(folder / f"{stem}{e}")]


def _refuse_links(path: Path, experiment: Path | None) -> None:
    if experiment is None or not is_inside(path, experiment):
        return
    if stat.S_ISLNK(os.lstat(path).st_mode):
        raise DatasetError(
            f"{path} is a symbolic link inside the experiment; annotate reads no links there "
            "(copy the file in its place)"
        )


def find_label_files(
    folder: Path,
    patches: Mapping[str, Sequence[Patch]],
    file_ending: str,
    *,
    experiment: Path | None = None,
) -> dict[str, FoundLabels]:
    """The label file (or crops) of every queried case in ``folder``.

    Args:
        folder: what ``--labels`` names.
        patches: case -> its queried patches (crops are numbered in this order).
        file_ending: the dataset's ending, named in messages.
        experiment: the experiment folder: files inside it must not be symbolic links.

    Raises:
        FileNotFoundError: no such folder.
        DatasetError: files missing (all named), a case given twice (two endings), only
            some crops of a case, or a symbolic link inside the experiment.
    """
    if not folder.is_dir():
        raise FileNotFoundError(2, "label folder not found", str(folder))
    found: dict[str, FoundLabels] = {}
    missing = []
    for case, case_patches in patches.items():
        full = _one_of(folder, case)
        if len(full) > 1:
            raise DatasetError(
                f"{folder} holds case {case!r} {len(full)} times "
                f"({', '.join(p.name for p in full)}); keep one"
            )
        if full:
            found[case] = FoundLabels(case, full, crops=False)
            continue
        crops = [_one_of(folder, crop_name(case, k)) for k in range(1, len(case_patches) + 1)]
        if not any(crops):
            missing.append(f"{case}{file_ending}")
            continue
        absent = [crop_name(case, k + 1) for k, c in enumerate(crops) if not c]
        doubled = [c[0].name for c in crops if len(c) > 1]
        if absent or doubled:
            raise DatasetError(
                f"{folder}: case {case!r} is given as crops, but "
                + (f"crop(s) {', '.join(absent)} are missing" if absent else "")
                + (f"crop(s) {', '.join(doubled)} appear with two endings" if doubled else "")
                + f" (one <case>_pNN{file_ending} per patch, {len(case_patches)} here)"
            )
        found[case] = FoundLabels(case, [c[0] for c in crops], crops=True)
    if missing:
        raise DatasetError(
            f"{folder} lacks the label file(s) of queried case(s): {', '.join(missing)}; "
            f"expected one <case>{file_ending} (or .nii.gz, .nii, .nrrd, .mha, .seg.nrrd) per "
            "case of the query, or its crops <case>_pNN"
        )
    for item in found.values():
        for path in item.files:
            _refuse_links(path, experiment)
    return found


@dataclass(frozen=True)
class LabelMap:
    """A label file's content on the grid it is expected on.

    Attributes:
        labels: int ``(Z, Y, X)``.
        unsegmented: for a Slicer segmentation, True where no segment is (else None).
    """

    labels: np.ndarray
    unsegmented: np.ndarray | None


def _plain(path: Path, expected: ImageGeometry, what: str) -> LabelMap:
    problems = geometry_mismatches(read_geometry(path), expected)
    if problems:
        raise GeometryMismatchError(f"{path}: geometry differs from {what}: " + "; ".join(problems))
    labels, _ = read_label(path)
    return LabelMap(labels.astype(np.int64, copy=False), None)


def _slicerio() -> Any:
    try:
        import slicerio
    except ImportError as err:
        raise ImportError(
            "reading 3D Slicer segmentations (.seg.nrrd) needs slicerio: install "
            "clasp-rs[slicer] (pip install 'clasp-rs[slicer]')"
        ) from err
    return slicerio


def _segment_value(segment: Mapping[str, Any], names: Mapping[str, int], path: Path) -> int:
    name = str(segment.get("name", "")).strip()
    by_name = {k.lower(): v for k, v in names.items()}
    if name.lower() in by_name:
        return by_name[name.lower()]
    if name.lstrip("-").isdigit() and int(name) in names.values():
        return int(name)
    listed = ", ".join(f"{k}={v}" for k, v in names.items())
    raise DatasetError(
        f"{path}: segment {name!r} matches no label of dataset.json ({listed}); name each "
        "segment after its class (or its value) in 3D Slicer"
    )


def _segmentation(
    path: Path, expected: ImageGeometry, what: str, names: Mapping[str, int]
) -> LabelMap:
    slicerio = _slicerio()
    seg = slicerio.read_segmentation(str(path))
    voxels = seg["voxels"]
    grid = tuple(int(n) for n in voxels.shape[-3:])
    found = ImageGeometry.from_index_to_lps(np.asarray(seg["ijkToLPS"]), grid)
    # Slicer may store only the segments' extent: accept any sub-grid of the expected grid.
    offset_f = expected.to_index(np.asarray(found.origin))
    offset = np.rint(offset_f).astype(int)
    # The grid the file's voxels span, extended to the expected size: it matches the
    # expected grid only when spacing and direction agree and the offset is whole voxels.
    shifted = ImageGeometry(
        expected.size,
        found.spacing,
        tuple(float(v) for v in found.to_lps(-offset.astype(np.float64))),  # type: ignore[arg-type]
        found.direction,
    )
    problems = geometry_mismatches(shifted, expected)
    if np.any(offset < 0) or np.any(offset + np.asarray(grid) > np.asarray(expected.size)):
        problems.append(
            f"its {list(grid)} voxels at index {offset.tolist()} reach outside the "
            f"{list(expected.size)} voxels (x, y, z)"
        )
    if problems:
        raise GeometryMismatchError(f"{path}: geometry differs from {what}: " + "; ".join(problems))
    labels = np.zeros(expected.shape, dtype=np.int64)
    owner = np.full(expected.shape, -1, dtype=np.int64)
    i0, j0, k0 = (int(v) for v in offset)
    ni, nj, nk = grid
    region = (slice(k0, k0 + nk), slice(j0, j0 + nj), slice(i0, i0 + ni))
    for index, segment in enumerate(seg["segments"]):
        value = _segment_value(segment, names, path)
        mask = np.transpose(slicerio.segment_mask(seg, segment), (2, 1, 0))
        clash = mask & (owner[region] >= 0) & (labels[region] != value)
        if clash.any():
            other = seg["segments"][int(owner[region][clash][0])]["name"]
            raise DatasetError(
                f"{path}: segments {other!r} and {segment['name']!r} overlap in "
                f"{int(clash.sum())} voxel(s); each voxel needs one class"
            )
        labels[region][mask] = value
        owner[region][mask] = index
    return LabelMap(labels, owner < 0)


def read_label_map(
    path: Path, expected: ImageGeometry, what: str, names: Mapping[str, int]
) -> LabelMap:
    """Read a label file, checking it lies on ``expected``'s grid.

    Args:
        path: a NIfTI/NRRD/MHA label map or a 3D Slicer ``.seg.nrrd``.
        expected: the grid it must be on.
        what: the grid's description for messages (``"case 'case_001'"``).
        names: label name -> value (dataset.json, ``ignore`` included), for segments.

    Raises:
        DatasetError: another geometry (the message names each mismatch), non-integer
            values, segments that match no label or overlap.
    """
    if path.name.lower().endswith(".seg.nrrd"):
        return _segmentation(path, expected, what, names)
    return _plain(path, expected, what)


def _fill_unsegmented(
    read: LabelMap, inside: np.ndarray, outside_value: np.ndarray | int
) -> np.ndarray:
    """A segmentation's unsegmented voxels: background inside ``inside``, ``outside_value``
    elsewhere (so that untouched voxels stay as they were)."""
    labels = read.labels
    if read.unsegmented is None:
        return labels
    out = labels.copy()
    out[read.unsegmented & inside] = 0
    outside = read.unsegmented & ~inside
    out[outside] = (
        outside_value[outside] if isinstance(outside_value, np.ndarray) else outside_value
    )
    return out


def assemble_labels(
    found: FoundLabels,
    geometry: ImageGeometry,
    patches: Sequence[Patch],
    handed_out: np.ndarray,
    names: Mapping[str, int],
    ignore_label: int,
    crop_margin_mm: float,
) -> np.ndarray:
    """The human's full label map of a case, on ``geometry``'s grid.

    A full file is read as it is. Crops are pasted into ``handed_out`` (the label file as
    it was handed out): crop ``k`` gives the voxels of patch ``k``; inside another queried
    patch its voxels are left to that patch's crop; anywhere else it must hold the handed-
    out label or ``ignore_label``.

    Raises:
        DatasetError: a geometry mismatch, or a crop that writes outside its patch.
    """
    what = f"case {found.case!r} ({geometry.describe()})"
    if not found.crops:
        read = read_label_map(found.files[0], geometry, what, names)
        inside = patch_mask(geometry.shape, patches, found.case)
        return _fill_unsegmented(read, inside, handed_out)
    out = handed_out.astype(np.int64, copy=True)
    shape = geometry.shape
    margin = margin_voxels(crop_margin_mm, geometry)
    queried = patch_mask(shape, patches, found.case)
    for k, (path, patch) in enumerate(zip(found.files, patches, strict=True), start=1):
        box = crop_box(patch, shape, margin)
        crop_geometry = geometry.cropped(box.coords, box.size)
        read = read_label_map(
            path, crop_geometry, f"crop {k} of {what} ({crop_geometry.describe()})", names
        )
        region = box.slices
        own_mask = patch_mask(box.size, [patch_in_crop(patch, box)])
        labels = _fill_unsegmented(read, own_mask, handed_out[region])
        rest = ~own_mask & ~queried[region]
        before = handed_out[region]
        changed = rest & (labels != before) & (labels != ignore_label)
        if changed.any():
            where = np.argwhere(changed)[0] + np.asarray(box.coords)
            raise DatasetError(
                f"{path}: label writes outside its patch: {int(changed.sum())} voxel(s) of the "
                f"crop (e.g. z {where[0]}, y {where[1]}, x {where[2]} of the case) differ from "
                f"the label handed out; only patch {k} of case {found.case!r} may be annotated "
                "in this crop"
            )
        target = out[region]
        target[own_mask] = labels[own_mask]
    return out
