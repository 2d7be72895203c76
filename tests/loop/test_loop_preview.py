"""The query preview of ``clasp-rs report`` (:mod:`clasp_rs.loop.preview`)."""

from __future__ import annotations

import pytest

from clasp_rs.loop.preview import query_preview
from clasp_rs.loop.setup import init_experiment


def test_report_renders_one_queried_case_as_annotators_see_it(ct_dataset, tmp_path):
    """``clasp-rs report`` writes query_<experiment>.png: the first case of the newest loop
    file, box map and Slicer ROIs through each patch centre."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("SimpleITK")
    exp = init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=8)
    out = tmp_path / "report"
    out.mkdir()
    (png,) = query_preview(exp, out)
    assert png == out / "query_exp.png"
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["query_exp.png"]  # temp export removed
