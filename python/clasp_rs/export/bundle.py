"""Write the files an annotator opens: per queried case, in the scan's own geometry, the
box label maps, Slicer ROIs, MITK boxes, ITK-SNAP label descriptions, optional crops, and
for all cases ``patches.csv`` / ``patches.json`` and a ``README.txt`` that says which file to
open in which viewer.

Every file is written atomically and never over an existing one; folders below the export
folder are entered without following symbolic links (:mod:`clasp_rs._safe_paths`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._atomic import write_text_atomic
from clasp_rs._optional import import_simpleitk
from clasp_rs._safe_paths import copy_into, real_dirs
from clasp_rs.exceptions import DatasetError
from clasp_rs.export.boxmap import box_label_map, box_outline_map
from clasp_rs.export.crops import (
    DEFAULT_MARGIN_MM,
    crop_box,
    crop_name,
    margin_voxels,
    patch_in_crop,
)
from clasp_rs.export.itksnap import itksnap_label_description
from clasp_rs.export.labels import PALETTE, BoxLabel, box_labels
from clasp_rs.export.mitk import mitk_geometry_xml
from clasp_rs.export.slicer import slicer_color_table, slicer_markups
from clasp_rs.export.table import PatchRow, patches_csv, patches_json
from clasp_rs.geometry import ImageGeometry, physical_box
from clasp_rs.nnunet.labels import write_image
from clasp_rs.patches import Patch

__all__ = [
    "CaseSource",
    "ExportOptions",
    "ExportResult",
    "case_files",
    "class_label_description",
    "export_cases",
]


@dataclass(frozen=True)
class CaseSource:
    """One queried case to export.

    Attributes:
        case: case name.
        images: the scan's channel files (``<case>_0000<ending>``, ...), all on one grid.
        geometry: that grid (``read_geometry(images[0])``).
        patches: the queried boxes on that grid, (Z, Y, X), in loop-file order.
        queried: the same boxes as the loop file holds them (equal to ``patches`` unless the
            loop ran on resampled images).
        label: returns the current training label on that grid, int ``(Z, Y, X)``; ``None``
            when there is none (a loop file exported without labels).
    """

    case: str
    images: list[Path]
    geometry: ImageGeometry
    patches: list[Patch]
    queried: list[Patch]
    label: Callable[[], np.ndarray] | None = None


@dataclass(frozen=True)
class ExportOptions:
    """What to write.

    Attributes:
        file_ending: the dataset's image ending (``.nii.gz``, ``.nrrd``, ...), used for
            every volume written.
        label_names: class value -> name (dataset.json), for patch names and label files.
        ignore_label: the value of unannotated voxels, if the labels have one.
        copy_images: copy the scans into the export folder (the annotator then needs only
            that folder).
        crops: also write each patch plus ``crop_margin_mm`` as small image/label files.
        crop_margin_mm: context around a patch in a crop.
    """

    file_ending: str
    label_names: Mapping[int, str] = field(default_factory=dict)
    ignore_label: int | None = None
    copy_images: bool = True
    crops: bool = False
    crop_margin_mm: float = DEFAULT_MARGIN_MM


@dataclass(frozen=True)
class ExportResult:
    """What was written: the folder, the cases, the patch rows, and per case its files
    (names relative to the folder)."""

    folder: Path
    rows: list[PatchRow]
    files: dict[str, dict[str, str]]


def case_files(case: str, ending: str) -> dict[str, str]:
    """The names of a case's exported files, relative to the export folder."""
    return {
        "image": f"{case}_0000{ending}",
        "label": f"{case}{ending}",
        "boxes": f"{case}_boxes{ending}",
        "outline": f"{case}_outline{ending}",
        "itksnap": f"{case}_boxes_itksnap.txt",
        "slicer": f"{case}.mrk.json",
        "mitk": f"mitk/{case}_p01.mitkgeometry",
    }


def _write_volume(array: np.ndarray, geometry: ImageGeometry, dest: Path) -> None:
    image = import_simpleitk().GetImageFromArray(np.ascontiguousarray(array))
    write_image(geometry.apply_to(image), dest, overwrite=False)


def class_label_description(label_names: Mapping[int, str]) -> list[BoxLabel]:
    """ITK-SNAP labels for the foreground classes of the training labels."""
    out = []
    for value in sorted(label_names):
        if value == 0:
            continue
        out.append(BoxLabel(value, label_names[value], "", PALETTE[(value - 1) % len(PALETTE)]))
    return out


def _classes_text(label_names: Mapping[int, str], ignore_label: int | None) -> str:
    text = itksnap_label_description(class_label_description(label_names))
    if ignore_label is not None:
        # Unannotated voxels: listed so ITK-SNAP names them, but invisible.
        text += f'{ignore_label:5d}   128  128  128     0.00    0  0    "ignore (unlabelled)"\n'
    return text


def export_cases(
    sources: Sequence[CaseSource],
    out: str | os.PathLike[str],
    options: ExportOptions,
    *,
    meta: Mapping[str, Any] | None = None,
    readme_intro: str = "",
) -> ExportResult:
    """Write the export of ``sources`` into the folder ``out``.

    Args:
        sources: the queried cases, each with its patches on its scan's grid.
        out: a folder that does not exist yet or is empty (created with its parents).
        options: what to write.
        meta: extra keys for ``patches.json``'s ``meta`` (loop, strategy, experiment...).
        readme_intro: a paragraph put first into ``README.txt``.

    Returns:
        What was written.

    Raises:
        FileExistsError: ``out`` holds files already.
        DatasetError: a patch lies outside its scan, or a scan's channels differ in size.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise FileExistsError(
            17, "export folder is not empty (exports are never written over)", str(folder)
        )
    ending = options.file_ending
    rows: list[PatchRow] = []
    files: dict[str, dict[str, str]] = {}
    for source in sources:
        names = case_files(source.case, ending)
        labels = box_labels(source.case, source.patches, options.label_names)
        shape = source.geometry.shape
        boxes = [physical_box(p, source.geometry) for p in source.patches]
        written = {k: names[k] for k in ("boxes", "outline", "itksnap", "slicer")}
        _write_volume(
            box_label_map(shape, source.patches), source.geometry, folder / names["boxes"]
        )
        _write_volume(
            box_outline_map(shape, source.patches),
            source.geometry,
            folder / names["outline"],
        )
        write_text_atomic(
            folder / names["itksnap"], itksnap_label_description(labels), overwrite=False
        )
        write_text_atomic(
            folder / names["slicer"],
            json.dumps(slicer_markups(labels, boxes, source.geometry), indent=2) + "\n",
            overwrite=False,
        )
        mitk_dir = real_dirs(folder, "mitk")
        for lab, patch in zip(labels, source.patches, strict=True):
            write_text_atomic(
                mitk_dir / f"{crop_name(source.case, lab.value)}.mitkgeometry",
                mitk_geometry_xml(patch, source.geometry),
                overwrite=False,
            )
        written["mitk"] = names["mitk"]
        if options.copy_images:
            for channel, image in enumerate(source.images):
                copy_into(image, folder / f"{source.case}_{channel:04d}{ending}", overwrite=False)
            written["image"] = names["image"]
        current = source.label() if source.label is not None else None
        if current is not None:
            if tuple(current.shape) != shape:
                raise DatasetError(
                    f"case {source.case!r}: label shape {current.shape} differs from its scan's "
                    f"{shape} (Z, Y, X)"
                )
            _write_volume(current, source.geometry, folder / names["label"])
            written["label"] = names["label"]
        if options.crops:
            _write_crops(source, labels, current, folder, options)
            written["crops"] = f"crops/{crop_name(source.case, 1)}{ending}"
        files[source.case] = written
        rows.extend(
            PatchRow(source.case, lab, p, q, b, names["image"] if options.copy_images else "")
            for lab, p, q, b in zip(labels, source.patches, source.queried, boxes, strict=True)
        )
    doc_meta = {"file_ending": ending, **(meta or {})}
    write_text_atomic(
        folder / "patches.json",
        json.dumps(patches_json(rows, doc_meta), indent=2) + "\n",
        overwrite=False,
    )
    write_text_atomic(folder / "patches.csv", patches_csv(rows), overwrite=False)
    if options.label_names:
        write_text_atomic(
            folder / "classes_itksnap.txt",
            _classes_text(options.label_names, options.ignore_label),
            overwrite=False,
        )
        write_text_atomic(
            folder / "classes_slicer.ctbl",
            slicer_color_table(
                class_label_description(options.label_names),
                options.ignore_label,
                options.label_names.get(0, "background"),
            ),
            overwrite=False,
        )
    from clasp_rs.export.readme import export_readme

    write_text_atomic(
        folder / "README.txt",
        export_readme(files, options, intro=readme_intro),
        overwrite=False,
    )
    return ExportResult(folder, rows, files)


def _write_crops(
    source: CaseSource,
    labels: Sequence[BoxLabel],
    label: np.ndarray | None,
    folder: Path,
    options: ExportOptions,
) -> None:
    sitk = import_simpleitk()
    crops = real_dirs(folder, "crops")
    ending = options.file_ending
    margin = margin_voxels(options.crop_margin_mm, source.geometry)
    scans = [sitk.ReadImage(str(p)) for p in source.images]
    for scan in scans:
        if tuple(scan.GetSize()) != source.geometry.size:
            raise DatasetError(
                f"case {source.case!r}: channel size {scan.GetSize()} differs from "
                f"{source.geometry.size}"
            )
    shape = source.geometry.shape
    for lab, patch in zip(labels, source.patches, strict=True):
        box = crop_box(patch, shape, margin)
        stem = crop_name(source.case, lab.value)
        index = [box.coords[2], box.coords[1], box.coords[0]]
        size = [box.size[2], box.size[1], box.size[0]]
        for channel, scan in enumerate(scans):
            write_image(
                sitk.RegionOfInterest(scan, size, index),
                crops / f"{stem}_{channel:04d}{ending}",
                overwrite=False,
            )
        geometry = source.geometry.cropped(box.coords, box.size)
        inner = patch_in_crop(patch, box)
        boxes = (box_label_map(box.size, [inner]) > 0).astype(np.uint16) * lab.value
        _write_volume(boxes, geometry, crops / f"{stem}_box{ending}")
        if label is not None:
            _write_volume(label[box.slices], geometry, crops / f"{stem}{ending}")
