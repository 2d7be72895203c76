"""Exporting queried patches for annotators, in each scan's own physical geometry.

One module per file format: :mod:`~clasp_rs.export.boxmap` (box label maps and outlines),
:mod:`~clasp_rs.export.slicer` (3D Slicer ``.mrk.json`` ROIs), :mod:`~clasp_rs.export.mitk`
(``.mitkgeometry`` boxes), :mod:`~clasp_rs.export.itksnap` (label descriptions),
:mod:`~clasp_rs.export.table` (``patches.csv`` / ``.json``), :mod:`~clasp_rs.export.crops`;
:mod:`~clasp_rs.export.bundle` writes them all for a list of cases, and
:mod:`~clasp_rs.export.sources` finds the cases of a loop file in an images folder (an
experiment's are found by :mod:`clasp_rs.loop.export`).
"""

from __future__ import annotations

from clasp_rs.export.bundle import CaseSource, ExportOptions, ExportResult, export_cases
from clasp_rs.export.sources import loop_file_sources

__all__ = ["CaseSource", "ExportOptions", "ExportResult", "export_cases", "loop_file_sources"]
