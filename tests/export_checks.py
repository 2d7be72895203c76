"""Independent readers of the exported viewer files, for the tests: each recomputes the box
corners the way its viewer does, from the file alone."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_NAME = "markups-schema-v1.0.3.json"


def slicer_schema_path() -> Path | None:
    """3D Slicer's markups JSON schema (``Modules/Loadable/Markups/Resources/Schema`` of the
    Slicer repository), where a copy is found: ``$CLASP_RS_SLICER_SCHEMA``,
    ``tests/data/slicer/``, or ``slicer/`` of the shared folder beside the checkout."""
    candidates = [
        os.environ.get("CLASP_RS_SLICER_SCHEMA"),
        ROOT / "tests" / "data" / "slicer" / SCHEMA_NAME,
        ROOT.parent / "shared" / "slicer" / SCHEMA_NAME,
        ROOT / "shared" / "slicer" / SCHEMA_NAME,
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


def slicer_roi_corners(markup: dict[str, Any]) -> np.ndarray:
    """float64 (8, 3) LPS corners of a Slicer box ROI: Slicer's ObjectToNode matrix is the
    row-major ``orientation`` with ``center`` as translation (x, y negated in LPS files, so
    taken as they are here); the box spans ``±size / 2`` along its columns."""
    assert markup["coordinateSystem"] == "LPS"
    rotation = np.asarray(markup["orientation"], dtype=np.float64).reshape(3, 3)
    centre = np.asarray(markup["center"], dtype=np.float64)
    half = np.asarray(markup["size"], dtype=np.float64) / 2
    signs = np.array([[1 if (c >> a) & 1 else -1 for a in range(3)] for c in range(8)])
    return centre + (signs * half) @ rotation.T


def mitk_box_corners(text: str) -> np.ndarray:
    """float64 (8, 3) LPS corners of the box in a ``.mitkgeometry`` file, as MITK computes
    them for an image geometry: index bounds minus half a voxel, through matrix and
    offset; corner ``c`` takes the upper bound on axis ``a`` when bit ``a`` is set."""
    geom = ET.fromstring(text).find("./ProportionalTimeGeometry/Geometry3D")
    assert geom is not None
    m, o = geom.find("IndexToWorld"), geom.find("Offset")
    lo_el, hi_el = geom.find("Bounds/Min"), geom.find("Bounds/Max")
    assert m is not None and o is not None and lo_el is not None and hi_el is not None
    matrix = np.array([[float(m.attrib[f"m_{r}_{c}"]) for c in range(3)] for r in range(3)])
    offset = np.array([float(o.attrib[a]) for a in "xyz"])
    lo = np.array([float(lo_el.attrib[a]) for a in "xyz"])
    hi = np.array([float(hi_el.attrib[a]) for a in "xyz"])
    shift = 0.5 if geom.attrib.get("ImageGeometry") == "true" else 0.0
    bits = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)], dtype=bool)
    return np.where(bits, hi - shift, lo - shift) @ matrix.T + offset


_ITKSNAP_LINE = re.compile(
    r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([01])\s+([01])\s+"(.*)"\s*$'
)


def itksnap_labels(text: str) -> dict[int, tuple[tuple[int, int, int], float, str]]:
    """value -> (rgb, alpha, name) of an ITK-SNAP label description file."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ITKSNAP_LINE.match(line)
        assert m, f"not an ITK-SNAP label line: {line!r}"
        value, r, g, b = (int(m.group(i)) for i in range(1, 5))
        out[value] = ((r, g, b), float(m.group(5)), m.group(8))
    return out


def same_corner_sets(a: np.ndarray, b: np.ndarray, atol: float = 1e-6) -> bool:
    """Whether two (8, 3) corner arrays hold the same points, in any order."""
    used = set()
    for p in a:
        d = np.linalg.norm(b - p, axis=1)
        hits = [i for i in np.flatnonzero(d <= atol) if i not in used]
        if not hits:
            return False
        used.add(hits[0])
    return True


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
