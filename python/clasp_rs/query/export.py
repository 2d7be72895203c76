"""A query over an nnU-Net probability export folder: checked before any long work
(:func:`open_export_query`), then run as a single query or one part of a sharded one, with
the maps written to and removed from a work folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clasp_rs.exceptions import InvalidProbabilitiesError
from clasp_rs.io.dataset_json import DatasetInfo, read_dataset_json
from clasp_rs.io.parts import Part, write_part
from clasp_rs.io.probabilities import ProbabilityExport, discover_probabilities
from clasp_rs.patches import Patch, write_loop_file
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
from clasp_rs.strategies.base import Strategy
from clasp_rs.strategies.types import QueryRequest, QueryResult

__all__ = ["ExportQuery", "PartWritten", "open_export_query", "run_export_part", "run_export_query"]


@dataclass(frozen=True)
class ExportQuery:
    """A query over a probability export, checked (see :func:`open_export_query`).

    Attributes:
        strategy: the query strategy (one that ranks maps or volume shapes).
        dataset: the nnU-Net dataset.json it follows.
        export: the probability export (folds, cases, shapes).
        request: n, loop, patch size, stride, caps, annotated boxes and file names of every
            case of the export.
    """

    strategy: Strategy
    dataset: DatasetInfo
    export: ProbabilityExport
    request: QueryRequest

    @property
    def label_names(self) -> dict[int, str]:
        """Label value -> name (background included, ``ignore`` excluded)."""
        return {v: k for k, v in self.dataset.labels.items()}


def open_export_query(
    strategy: Strategy,
    probabilities: str | os.PathLike[str],
    dataset_json: str | os.PathLike[str],
    *,
    n: int,
    loop: int,
    patch_size: Sequence[int],
    out: str | os.PathLike[str],
    stride: int | Sequence[int] = 1,
    per_volume: int | None = None,
    annotated: Sequence[str | os.PathLike[str]] | Mapping[str, Iterable[Patch]] = (),
    device: str = "auto",
) -> ExportQuery:
    """Check everything cheap before any map is computed.

    Args:
        strategy: the strategy (not one that needs ground-truth labels).
        probabilities: the export folder (``<case>.npz`` or ``fold_K/<case>.npz``).
        dataset_json: the nnU-Net ``dataset.json`` (labels, file ending).
        n, loop, patch_size, stride, per_volume: the query (see :class:`QueryRequest`).
        out: the loop or part file to write; must not exist.
        annotated: loop files of patches already annotated (every patch must name a case of
            the export), or case -> patches.
        device: where the maps will be computed.

    Raises:
        FileExistsError, FileNotFoundError: ``out`` exists or has no folder; an input is
            missing.
        DatasetError: a bad dataset.json.
        InvalidProbabilitiesError, NpyFormatError: a bad export, or too few folds for the
            strategy.
        LoopFileError: an annotated loop file is bad or names unknown cases.
        InvalidPatchError, ValueError: bad query numbers, device or loop.
    """
    check_out(out)
    dataset = read_dataset_json(dataset_json)
    export = discover_probabilities(probabilities, n_classes=dataset.n_classes)
    if strategy.needs_folds and export.n_folds < 2:
        raise InvalidProbabilitiesError(
            f"strategy {strategy.name} needs the probabilities of each fold (fold_0/, fold_1/, "
            f"...) in {export.root}, found {export.n_folds} fold(s)"
        )
    patches: Mapping[str, Iterable[Patch]]
    if isinstance(annotated, Mapping):
        patches = annotated
    else:
        patches = read_annotated(annotated, export.cases)
    request = QueryRequest.build(
        n,
        loop,
        patch_size,
        stride=stride,
        per_volume=per_volume,
        annotated=patches,
        files={case: dataset.file_of(case) for case in export.cases},
    )
    strategy.check_loop(request.loop)
    if strategy.needs_maps:
        from clasp_rs.devices import resolve_device

        resolve_device(device)
    return ExportQuery(strategy, dataset, export, request)


def _maps_folder(out: Path, workdir: str | os.PathLike[str] | None, sharded: bool) -> MapsFolder:
    # Absolute paths: a part file records the entropy maps' paths for the merge.
    if workdir is not None:
        path = Path(workdir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return MapsFolder(path, owned=False)
    if sharded:
        path = Path(f"{out}.maps").resolve()
        path.mkdir(exist_ok=False)
        return MapsFolder(path, owned=True)
    return MapsFolder(
        Path(tempfile.mkdtemp(prefix=".clasp_rs_maps_", dir=out.parent)).resolve(), owned=True
    )


def run_export_query(
    query: ExportQuery,
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
    workdir: str | os.PathLike[str] | None = None,
    progress: MapProgress | None = None,
    stages: Stages | None = None,
) -> QueryResult:
    """Maps → strategy → ``out`` (a loop file, written atomically) for every case of the
    export. The maps go to ``workdir`` (kept) or a temporary folder next to ``out`` (removed);
    on failure nothing is written and the maps this run wrote are removed."""
    stages = stages or Stages()
    target = check_out(out)
    maps = _maps_folder(target, workdir, sharded=False)
    try:
        with stages.stage("read + maps"):
            scores = compute_maps(
                query.strategy,
                query.export,
                query.export.cases,
                device=device,
                maps=maps,
                progress=progress,
            )
        result = select_query(query.strategy, scores, query.request, stages=stages)
        with stages.stage("write"):
            meta = query_meta(query.strategy, query.request, result)
            write_loop_file(target, result.patches, meta=meta)
    except BaseException:
        maps.discard()
        raise
    if maps.owned:
        maps.discard()
    return result


@dataclass(frozen=True)
class PartWritten:
    """A part file written by :func:`run_export_part`.

    Attributes:
        part: what it holds.
        path: the part file.
        maps: the maps folder; it must be kept until the merge when ``maps_kept``.
        maps_kept: whether maps (the entropy maps a recorded fill may need, or the caller's
            ``workdir``) were left on disk.
    """

    part: Part
    path: Path
    maps: Path
    maps_kept: bool


def run_export_part(
    query: ExportQuery,
    out: str | os.PathLike[str],
    *,
    part_id: int,
    num_parts: int,
    cases: Sequence[str] | None = None,
    all_cases: Sequence[str] | None = None,
    device: str = "auto",
    workdir: str | os.PathLike[str] | None = None,
    progress: MapProgress | None = None,
    stages: Stages | None = None,
) -> PartWritten:
    """One part of a sharded query: maps and phase 1 of ``cases`` (default: every
    ``num_parts``-th case of the export from ``part_id``), written as a part file ``out``.

    ``all_cases`` (default: the export's) are the cases of the whole query. Without a
    ``workdir`` the maps go to ``<out>.maps``, and only those a recorded fill may need stay.
    """
    stages = stages or Stages()
    target = check_out(out)
    mine = list(query.export.cases[part_id::num_parts] if cases is None else cases)
    maps = _maps_folder(target, workdir, sharded=True)
    try:
        with stages.stage("read + maps"):
            scores = compute_maps(
                query.strategy, query.export, mine, device=device, maps=maps, progress=progress
            )
        with stages.stage("select"):
            part = select_part(
                query.strategy,
                scores,
                query.request,
                part_id=part_id,
                num_parts=num_parts,
                all_cases=list(query.export.cases if all_cases is None else all_cases),
                meta={"labels": {str(v): k for k, v in query.dataset.labels.items()}},
            )
        needed = {sel.fill_map for sel in part.local.values() if sel.fill_map}
        if maps.owned:
            # Only the entropy maps a recorded fill may need stay for the merge.
            maps.discard(keep=needed)
        with stages.stage("write"):
            write_part(target, part)
    except BaseException:
        maps.discard()
        raise
    return PartWritten(part, target, maps.path, maps_kept=not maps.owned or bool(needed))
