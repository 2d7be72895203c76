"""The report's look at a query through an annotator's eyes: one queried case exported as
``clasp-rs export`` writes it, rendered by :func:`clasp_rs.export.preview.render_case_preview`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from clasp_rs.export.bundle import ExportOptions, export_cases
from clasp_rs.export.preview import render_case_preview
from clasp_rs.loop.experiment import Experiment
from clasp_rs.loop.export import experiment_sources, latest_loop

__all__ = ["query_preview"]


def query_preview(exp: Experiment, folder: str | Path) -> list[Path]:
    """``query_<experiment>.png`` in ``folder``: the first case of the newest loop file, its
    box label map and Slicer ROIs through each patch centre. Empty when no loop file lists
    patches."""
    sources = experiment_sources(exp, latest_loop(exp))
    if not sources:
        return []
    source = sources[0]
    options = ExportOptions(
        file_ending=exp.file_ending, label_names=exp.label_names, ignore_label=exp.ignore_label
    )
    target = Path(folder) / f"query_{exp.root.name}.png"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".query-export-") as tmp:
        export_cases([source], Path(tmp) / "export", options)
        render_case_preview(Path(tmp) / "export", source.case, target, file_ending=exp.file_ending)
    return [target]
