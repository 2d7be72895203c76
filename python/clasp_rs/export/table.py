"""``patches.csv`` and ``patches.json``: every exported patch in voxel, viewer and physical
coordinates.

Voxel indices are ``(z, y, x)`` (SimpleITK / nnU-Net arrays, loop files); viewer indices
``(i, j, k) = (x, y, z)`` (ITK, 3D Slicer's IJK, ITK-SNAP), both 0-based, start inclusive.
Physical corners are the voxel extent of the box (continuous index ``start - 0.5`` and
``end - 0.5``) in LPS and RAS mm; ``size_mm`` is its edge lengths along ``(i, j, k)``.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from clasp_rs.export.labels import BoxLabel
from clasp_rs.geometry import PhysicalBox, lps_to_ras
from clasp_rs.patches import Patch

__all__ = ["CSV_COLUMNS", "PatchRow", "patches_csv", "patches_json"]


@dataclass(frozen=True)
class PatchRow:
    """One exported patch.

    Attributes:
        case: case name.
        label: its number, name, stratum and colour.
        patch: the box on the exported image's grid (Z, Y, X).
        queried: the box as the loop file holds it (differs from ``patch`` when the loop ran
            on resampled images).
        box: its physical extent on the exported image.
        image: file name of the exported image (first channel), or ``""``.
    """

    case: str
    label: BoxLabel
    patch: Patch
    queried: Patch
    box: PhysicalBox
    image: str

    def to_json(self) -> dict[str, Any]:
        z, y, x = self.patch.coords
        dz, dy, dx = self.patch.size
        ras = lps_to_ras(np.array([self.box.start, self.box.end, self.box.centre]))
        corners_ras = lps_to_ras(self.box.corners)
        score = self.patch.score
        return {
            "case": self.case,
            "patch": self.label.value,
            "name": self.label.name,
            "stratum": self.patch.stratum,
            "stratum_name": self.label.stratum,
            "score": score if score is not None and math.isfinite(score) else None,
            "file": self.patch.file,
            "image": self.image,
            "voxel_zyx": {"start": [z, y, x], "size": [dz, dy, dx], "end": list(self.patch.end)},
            "viewer_ijk": {
                "start": [x, y, z],
                "size": [dx, dy, dz],
                "end": [x + dx, y + dy, z + dz],
            },
            "queried_zyx": {"start": list(self.queried.coords), "size": list(self.queried.size)},
            "lps_mm": {
                "start": list(self.box.start),
                "end": list(self.box.end),
                "centre": list(self.box.centre),
                "corners": self.box.corners.tolist(),
            },
            "ras_mm": {
                "start": ras[0].tolist(),
                "end": ras[1].tolist(),
                "centre": ras[2].tolist(),
                "corners": corners_ras.tolist(),
            },
            "size_mm_ijk": list(self.box.extent),
        }


CSV_COLUMNS = (
    "case patch name stratum score image z y x dz dy dx i j k di dj dk "
    "queried_z queried_y queried_x queried_dz queried_dy queried_dx "
    "lps_start_x lps_start_y lps_start_z lps_end_x lps_end_y lps_end_z "
    "lps_centre_x lps_centre_y lps_centre_z ras_start_x ras_start_y ras_start_z "
    "ras_end_x ras_end_y ras_end_z ras_centre_x ras_centre_y ras_centre_z "
    "size_mm_i size_mm_j size_mm_k"
).split()


def patches_json(rows: list[PatchRow], meta: dict[str, Any]) -> dict[str, Any]:
    """The ``patches.json`` document."""
    return {"meta": meta, "patches": [r.to_json() for r in rows]}


def _g(value: float) -> str:
    return repr(round(float(value), 6))


def patches_csv(rows: list[PatchRow]) -> str:
    """The ``patches.csv`` text (header row, then one row per patch; mm to 1 µm)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        doc = r.to_json()
        lps, ras = doc["lps_mm"], doc["ras_mm"]
        writer.writerow(
            [
                r.case,
                r.label.value,
                r.label.name,
                r.label.stratum,
                "" if doc["score"] is None else _g(doc["score"]),
                r.image,
                *doc["voxel_zyx"]["start"],
                *doc["voxel_zyx"]["size"],
                *doc["viewer_ijk"]["start"],
                *doc["viewer_ijk"]["size"],
                *doc["queried_zyx"]["start"],
                *doc["queried_zyx"]["size"],
                *(_g(v) for v in lps["start"]),
                *(_g(v) for v in lps["end"]),
                *(_g(v) for v in lps["centre"]),
                *(_g(v) for v in ras["start"]),
                *(_g(v) for v in ras["end"]),
                *(_g(v) for v in ras["centre"]),
                *(_g(v) for v in doc["size_mm_ijk"]),
            ]
        )
    return buffer.getvalue()
