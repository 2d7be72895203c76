"""``README.txt`` of an export folder: what each file is and how to open it in 3D Slicer,
ITK-SNAP and MITK, with the real file names of the first case."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["export_readme", "viewer_commands"]


def viewer_commands(files: Mapping[str, str]) -> dict[str, str]:
    """One line per viewer that opens a case's files (names relative to the folder)."""
    image = files.get("image", "<the scan>")
    label = files.get("label")
    outline, boxes = files["outline"], files["boxes"]
    if label:
        itksnap = f"itksnap -g {image} -s {label} -l classes_itksnap.txt -o {outline}"
        slicer = (
            f"load classes_slicer.ctbl, {image}, {files['slicer']} (the boxes), then {label} "
            "as a segmentation with that colour table"
        )
    else:
        itksnap = f"itksnap -g {image} -s {boxes} -l {files['itksnap']}"
        slicer = f"load {image}, {files['slicer']} (the boxes) and {outline} as a segmentation"
    return {
        "3D Slicer": slicer,
        "ITK-SNAP": itksnap,
        "MITK": f"open {image} and the case's mitk/*.mitkgeometry files",
        "MRtrix3": f"mrview {image} -overlay.load {boxes} -overlay.colourmap 3 "
        "-overlay.threshold_min 0.5",
    }


def export_readme(files: Mapping[str, Mapping[str, str]], options: Any, *, intro: str = "") -> str:
    """The README text for an export of ``files`` (case -> its files, see
    :func:`clasp_rs.export.bundle.case_files`)."""
    cases = sorted(files)
    first = files[cases[0]] if cases else {}
    ending = options.file_ending
    ignore = options.ignore_label
    lines = []
    if intro:
        lines += [intro, ""]
    lines += [
        f"Queried cases ({len(cases)}): {', '.join(cases)}",
        "",
        "patches.csv / patches.json list every patch: voxel start and size (z, y, x), viewer",
        "indices (i, j, k) = (x, y, z), both 0-based, and its corners and centre in LPS and RAS",
        "mm (the voxels' extent). Every file is in the scan's own geometry (origin, spacing and",
        "direction of its header), so viewers put the boxes where the voxels are.",
        "",
        "Per case <case>:",
        f"  <case>_0000{ending}          the scan (more channels: _0001, ...)",
    ]
    if "label" in first:
        lines.append(
            f"  <case>{ending}               the label file to complete: the current training "
            f"label{f', ignore={ignore} where unannotated' if ignore is not None else ''}"
        )
    lines += [
        f"  <case>_boxes{ending}         box label map: patch k's voxels hold k, 0 elsewhere",
        f"  <case>_outline{ending}       the same boxes, their faces only (an overlay)",
        "  <case>_boxes_itksnap.txt    box names and colours for ITK-SNAP",
        '  <case>.mrk.json             3D Slicer ROIs, one per patch: "<case> #k (stratum)"',
        "  mitk/<case>_pNN.mitkgeometry  MITK boxes, one file per patch",
    ]
    if options.crops:
        lines += [
            f"  crops/<case>_pNN_0000{ending}  patch NN plus {options.crop_margin_mm:g} mm of "
            "the scan",
            f"  crops/<case>_pNN{ending}       the same crop of the label file (fill it instead "
            "of the full file)",
            f"  crops/<case>_pNN_box{ending}   the patch inside its crop",
        ]
    if cases:
        lines += ["", f"Opening {cases[0]}:"]
        lines += [f"  {viewer}: {how}" for viewer, how in viewer_commands(first).items()]
    if "label" in first:
        lines += [
            "",
            "Label every voxel inside each box with a class (0 = background); leave the rest "
            "as it is.",
            "Then: clasp-rs annotate EXPERIMENT --labels <this folder> (or --labels "
            "<this folder>/crops).",
        ]
    return "\n".join(lines) + "\n"
