"""The query pipeline as a library: probabilities → maps → strategy → loop file (or part file),
and the merge of part files. ``clasp-rs query``/``merge`` and the active-learning loop call
these functions; nothing here parses arguments or prints.

The steps, each a plain function on typed values:

* :func:`open_export_query`: everything that can be checked cheaply, before any map is
  computed (dataset.json labels, the export's folds, cases and shapes, annotated patches,
  the output path, the device);
* :func:`compute_maps`: the score maps of some cases (``.npy`` files in a :class:`MapsFolder`);
* :func:`select_query` (single run) or :func:`select_part` (one shard of a query);
* :func:`merge_parts`: the parts of a sharded query into the single run's result;
* :func:`query_meta`: the ``meta`` block of the loop file.

:func:`run_export_query` and :func:`run_export_part` chain them over an export folder, and
remove the maps they no longer need, also when a step fails.

Modules: :mod:`.steps` (the steps on ready values), :mod:`.export` (over an export folder),
:mod:`.merge` (the parts of a sharded query), :mod:`.score_files` (``clasp-rs select``: the
engine alone over ``.npy`` score files).
"""

from __future__ import annotations

from clasp_rs.query.export import (
    ExportQuery,
    PartWritten,
    open_export_query,
    run_export_part,
    run_export_query,
)
from clasp_rs.query.merge import Merged, merge_parts
from clasp_rs.query.score_files import ScoreFileSelection, select_score_files
from clasp_rs.query.steps import (
    MapProgress,
    MapsFolder,
    Stages,
    check_out,
    compute_maps,
    query_meta,
    read_annotated,
    select_part,
    select_query,
)

__all__ = [
    "ExportQuery",
    "MapProgress",
    "MapsFolder",
    "Merged",
    "PartWritten",
    "ScoreFileSelection",
    "Stages",
    "check_out",
    "compute_maps",
    "merge_parts",
    "open_export_query",
    "query_meta",
    "read_annotated",
    "run_export_part",
    "run_export_query",
    "select_part",
    "select_query",
    "select_score_files",
]
