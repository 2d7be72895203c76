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
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clasp_rs._engine import __version__
from clasp_rs.exceptions import InvalidProbabilitiesError, LoopFileError
from clasp_rs.io.dataset_json import DatasetInfo, read_dataset_json
from clasp_rs.io.parts import Part, annotated_digest, read_part, write_part
from clasp_rs.io.probabilities import ProbabilityExport, discover_probabilities
from clasp_rs.patches import Box, Patch, case_id, read_loop_file, write_loop_file
from clasp_rs.strategies import get_strategy
from clasp_rs.strategies.base import SeededStrategy, Strategy
from clasp_rs.strategies.fill import RecordedFill
from clasp_rs.strategies.types import CaseSelection, QueryRequest, QueryResult, ScoreSet

__all__ = [
    "ExportQuery",
    "MapProgress",
    "MapsFolder",
    "Merged",
    "PartWritten",
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
]


class Stages:
    """Wall time per named stage (``stages.seconds``, in the order first entered)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class MapProgress(Protocol):
    """Told when the maps of each case start and end (a progress bar, a log)."""

    def begin(self, case: str) -> None: ...

    def end(self, case: str) -> None: ...


@dataclass
class MapsFolder:
    """Where a query writes its memory-mapped maps (absolute), and what it wrote there.

    Attributes:
        path: the folder.
        owned: created by this query (removed with everything in it when no longer needed);
            otherwise the caller's folder, of which only the files written are removed.
        written: paths of the ``.npy`` maps written so far.
    """

    path: Path
    owned: bool
    written: list[str] = field(default_factory=list)

    def discard(self, keep: Iterable[str] = ()) -> None:
        """Remove what this query wrote except ``keep`` (and an owned folder, when empty)."""
        kept = set(keep)
        if self.owned and not kept:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for path in self.written:
            if path not in kept:
                Path(path).unlink(missing_ok=True)


def check_out(path: str | os.PathLike[str]) -> Path:
    """The output path, checked to be new in an existing folder.

    Raises:
        FileExistsError: it exists (outputs are never overwritten).
        FileNotFoundError: its folder does not exist.
    """
    out = Path(path)
    if os.path.lexists(out):
        raise FileExistsError(17, "output file already exists; it is never overwritten", str(out))
    if not out.parent.is_dir():
        raise FileNotFoundError(2, "folder of the output file does not exist", str(out.parent))
    return out


def read_annotated(
    loop_files: Sequence[str | os.PathLike[str]], cases: Sequence[str]
) -> dict[str, list[Patch]]:
    """The patches of ``loop_files`` by case (``case_id`` of ``Patch.file``).

    Raises:
        LoopFileError: a loop file names cases that are not in ``cases``.
    """
    known = set(cases)
    annotated: dict[str, list[Patch]] = defaultdict(list)
    for loop_file in loop_files:
        unknown: set[str] = set()
        for patch in read_loop_file(loop_file):
            case = case_id(patch.file)
            if case not in known:
                unknown.add(case)
            annotated[case].append(patch)
        if unknown:
            names = sorted(unknown)
            raise LoopFileError(
                f"loop file {os.fspath(loop_file)} names {len(names)} case(s) that are not in "
                f"the probability folder: {', '.join(names[:8])}"
                + (" ..." if len(names) > 8 else "")
            )
    return dict(annotated)


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


def compute_maps(
    strategy: Strategy,
    export: ProbabilityExport,
    cases: Sequence[str],
    *,
    device: str,
    maps: MapsFolder,
    progress: MapProgress | None = None,
) -> dict[str, ScoreSet]:
    """The score maps ``strategy`` ranks, for ``cases`` of ``export``, written into ``maps``
    (each path recorded in ``maps.written`` as soon as it exists, so a failed run can remove
    them). Strategies that need no map get the volume shapes alone."""
    from clasp_rs.strategies.scores import score_set_for_case

    scores: dict[str, ScoreSet] = {}
    for case in cases:
        if progress is not None:
            progress.begin(case)
        if not strategy.needs_maps:
            _, z, y, x = export.shapes[case]
            scores[case] = ScoreSet((z, y, x))
        else:
            s = score_set_for_case(
                case, export.sources(case), strategy.needs, device=device, workdir=maps.path
            )
            maps.written.extend(s.paths())
            scores[case] = s
        if progress is not None:
            progress.end(case)
    return scores


def select_query(
    strategy: Strategy,
    scores: Mapping[str, ScoreSet],
    request: QueryRequest,
    *,
    stages: Stages | None = None,
) -> QueryResult:
    """A single run's query over ready maps (stages ``select`` and ``merge + fill``)."""
    stages = stages or Stages()
    if not strategy.shardable:
        with stages.stage("select"):
            return strategy.query_scores(scores, request)
    with stages.stage("select"):
        local = strategy.select_local(scores, request, partial=False)
    with stages.stage("merge + fill"):
        return strategy.combine(local, request, strategy.fill_provider(scores, request))


def select_part(
    strategy: Strategy,
    scores: Mapping[str, ScoreSet],
    request: QueryRequest,
    *,
    part_id: int,
    num_parts: int,
    all_cases: Sequence[str],
    meta: Mapping[str, Any] | None = None,
) -> Part:
    """Phase 1 of a sharded query over this part's ``scores`` (cases), as a :class:`Part`.

    ``request`` may hold the annotated boxes of every case of the query (``all_cases``): the
    part records their digest, so the merge can check all parts avoided the same patches.
    """
    local = strategy.select_local(scores, request, partial=True)
    return Part(
        strategy=strategy.params(),
        request=request.restricted(sorted(scores)),
        num_parts=num_parts,
        part_id=part_id,
        all_cases=list(all_cases),
        digest=annotated_digest(request.annotated),
        local=local,
        meta=dict(meta or {}),
    )


def query_meta(
    strategy: SeededStrategy, request: QueryRequest, result: QueryResult
) -> dict[str, Any]:
    """The ``meta`` block of a query's loop file (the same for a single run and a merge)."""
    params = strategy.params()
    return {
        "strategy": strategy.name,
        "params": {k: v for k, v in params.items() if k != "strategy"},
        "seed": strategy.seed,
        "loop": request.loop,
        "n_loops": strategy.n_loops,
        "beta": result.beta,
        "n": request.n,
        "patch_size": list(request.patch_size),
        "stride": list(request.stride),
        "per_volume": request.per_volume,
        "quotas": None
        if result.quotas is None
        else {str(s): q for s, q in sorted(result.quotas.items())},
        "shortfall": result.shortfall,
        "unfilled": result.unfilled,
        "version": __version__,
    }


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


@dataclass(frozen=True)
class Merged:
    """The merge of a sharded query's parts: the single run's strategy, request and result."""

    strategy: Strategy
    request: QueryRequest
    result: QueryResult
    label_names: dict[int, str]


def merge_parts(parts: Sequence[Part | str | os.PathLike[str]]) -> Merged:
    """Phase 2 over all parts (or part files): exactly the query of a single run over all
    cases, with the strategy rebuilt from the parameters the parts recorded.

    Raises:
        LoopFileError: parts of different queries, missing or repeated parts, or cases not
            covered exactly once.
        ClaspError: the fill needs an entropy map that is gone.
    """
    loaded = [p if isinstance(p, Part) else read_part(p) for p in parts]
    if not loaded:
        raise LoopFileError("no part files given")
    first = loaded[0]
    params = dict(first.strategy)
    strategy = get_strategy(params.pop("strategy"), **params)
    if not isinstance(strategy, Strategy):
        raise LoopFileError(f"strategy {strategy.name} writes no part files")
    for p in loaded[1:]:
        for what, a, b in (
            ("strategy", p.strategy, first.strategy),
            ("request", _request_key(p.request), _request_key(first.request)),
            ("number of parts", p.num_parts, first.num_parts),
            ("case list", p.all_cases, first.all_cases),
            ("annotated patches", p.digest, first.digest),
        ):
            if a != b:
                raise LoopFileError(
                    f"parts {first.part_id} and {p.part_id} come from different queries: their "
                    f"{what} differ ({b!r} vs {a!r})"
                )
    ids = sorted(p.part_id for p in loaded)
    if ids != list(range(first.num_parts)):
        missing = sorted(set(range(first.num_parts)) - set(ids))
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise LoopFileError(
            f"expected parts 0..{first.num_parts - 1} once each; missing {missing}, "
            f"repeated {repeated}"
        )
    local: dict[str, CaseSelection] = {}
    files: dict[str, str] = {}
    annotated: dict[str, tuple[Box, ...]] = {}
    for p in loaded:
        for case, sel in p.local.items():
            if case in local:
                raise LoopFileError(f"case {case!r} appears in more than one part")
            local[case] = sel
            files[case] = p.request.file(case)
            annotated[case] = tuple(p.request.boxes(case))
    if sorted(local) != sorted(first.all_cases):
        uncovered = sorted(set(first.all_cases) - set(local))
        raise LoopFileError(f"the parts do not cover the cases {uncovered}")
    r = first.request
    request = QueryRequest(
        r.n, r.loop, r.patch_size, r.stride, r.per_volume, annotated=annotated, files=files
    )
    fill = RecordedFill(local, request, strategy.noise_for(request))
    result = strategy.combine(local, request, fill)
    names = {int(v): str(k) for v, k in first.meta.get("labels", {}).items()}
    return Merged(strategy, request, result, names)


def _request_key(r: QueryRequest) -> tuple[Any, ...]:
    return (r.n, r.loop, r.patch_size, r.stride, r.per_volume)
