"""3D Slicer markups (``.mrk.json``): one ROI (box) markup per patch.

Each ROI is written as Slicer itself writes a box ROI: ``roiType`` ``Box``, no control
points, and ``center`` / ``orientation`` / ``size`` in LPS (``coordinateSystem`` ``LPS``), so
Slicer shows it where the image's voxels are. ``orientation`` is the image's direction
matrix (row-major; its columns are the box axes), ``size`` the box's edge lengths in mm along
those axes. A mirrored direction matrix (determinant -1) is written with its third column
negated: the box is symmetric about its centre, so it is the same box, and Slicer's ROI
stays a rotation. The format is checked in the tests against Slicer's JSON schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clasp_rs.export.labels import BoxLabel
from clasp_rs.geometry import ImageGeometry, PhysicalBox, is_proper_rotation

__all__ = ["MARKUPS_SCHEMA", "roi_markup", "slicer_color_table", "slicer_markups"]

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
    "Resources/Schema/markups-schema-v1.0.3.json#"
)
"""The schema id Slicer 5 writes into its own markups files."""


def _orientation(geometry: ImageGeometry) -> list[float]:
    direction = geometry.direction_matrix.copy()
    if not is_proper_rotation(direction):
        direction[:, 2] *= -1.0
    return [float(v) for v in direction.reshape(-1)]


def roi_markup(label: BoxLabel, box: PhysicalBox, geometry: ImageGeometry) -> dict[str, Any]:
    """One ROI markup (a ``markups`` item) for a patch's physical box."""
    return {
        "type": "ROI",
        "name": label.name,
        "coordinateSystem": "LPS",
        "coordinateUnits": "mm",
        "locked": True,
        "roiType": "Box",
        "insideOut": False,
        "center": [float(v) for v in box.centre],
        "orientation": _orientation(geometry),
        "size": [float(v) for v in np.abs(box.extent)],
        "controlPoints": [],
        "display": {
            "visibility": True,
            "opacity": 1.0,
            "color": label.colour_unit,
            "selectedColor": label.colour_unit,
            "propertiesLabelVisibility": True,
        },
    }


def slicer_markups(
    labels: Sequence[BoxLabel], boxes: Sequence[PhysicalBox], geometry: ImageGeometry
) -> dict[str, Any]:
    """The ``.mrk.json`` document of one case: one ROI per patch, in order."""
    return {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            roi_markup(label, box, geometry) for label, box in zip(labels, boxes, strict=True)
        ],
    }


def slicer_color_table(
    classes: Sequence[BoxLabel], ignore_label: int | None, background: str = "background"
) -> str:
    """A 3D Slicer colour table (``.ctbl``) of the class values: chosen as the colour node
    when a label file is loaded, its segments get the class names ``annotate`` maps back."""
    lines = ["# Color table file written by clasp-rs", f"# {len(classes) + 1} values"]
    lines.append(f"0 {background.replace(' ', '_')} 0 0 0 0")
    for c in classes:
        r, g, b = c.colour
        lines.append(f"{c.value} {c.name.replace(' ', '_')} {r} {g} {b} 255")
    if ignore_label is not None:
        lines.append(f"{ignore_label} ignore 128 128 128 60")
    return "\n".join(lines) + "\n"
