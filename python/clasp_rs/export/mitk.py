"""MITK geometry files (``.mitkgeometry``): one box per file, as nnActive hands patches to
MITK.

The file is MITK's ``GeometryData`` XML: a ``Geometry3D`` with ``ImageGeometry="true"``,
an ``IndexToWorld`` matrix, an ``Offset`` and index ``Bounds``. MITK places index ``p`` at
``Matrix · p + Offset`` (world = ITK's LPS, mm) and, for an image geometry, puts the box
corners half a voxel outside the bounds, like voxel extents. So a patch is written with the
image's ``D · diag(spacing)`` as the matrix, the LPS centre of its first voxel as the
offset, and bounds ``0 .. size``: its corners are exactly the voxel extent of the patch.
(nnActive writes the direction alone as the matrix, which is right only for 1 mm voxels.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np

from clasp_rs.geometry import ImageGeometry
from clasp_rs.patches import Patch

__all__ = ["mitk_geometry_xml"]


def _num(value: float) -> str:
    return repr(float(value) + 0.0)  # + 0.0: no "-0.0" in the file


def mitk_geometry_xml(patch: Patch, geometry: ImageGeometry) -> str:
    """The ``.mitkgeometry`` text of one patch on an image of ``geometry``."""
    matrix = geometry.index_to_lps[:3, :3]
    start = np.asarray([patch.coords[2], patch.coords[1], patch.coords[0]], dtype=np.float64)
    offset = geometry.to_lps(start)
    root = ET.Element("GeometryData")
    ET.SubElement(root, "Version", Writer="clasp-rs", FileVersion="1")
    timegeom = ET.SubElement(root, "ProportionalTimeGeometry", NumberOfTimeSteps="1")
    geom = ET.SubElement(
        timegeom, "Geometry3D", ImageGeometry="true", FrameOfReferenceID="0", TimeStep="0"
    )
    ET.SubElement(
        geom,
        "IndexToWorld",
        {"type": "Matrix3x3"}
        | {f"m_{r}_{c}": _num(matrix[r, c]) for r in range(3) for c in range(3)},
    )
    ET.SubElement(
        geom, "Offset", type="Vector3D", x=_num(offset[0]), y=_num(offset[1]), z=_num(offset[2])
    )
    bounds = ET.SubElement(geom, "Bounds")
    ET.SubElement(bounds, "Min", type="Vector3D", x="0", y="0", z="0")
    dz, dy, dx = patch.size
    ET.SubElement(bounds, "Max", type="Vector3D", x=str(dx), y=str(dy), z=str(dz))
    ET.indent(root, space="    ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
