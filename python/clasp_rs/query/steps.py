"""The steps of a query on ready values: maps of some cases, the single-run or one-part
selection, the loop file's ``meta``, and the checks of outputs and annotated loop files."""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clasp_rs._engine import __version__
from clasp_rs._messages import escaped
from clasp_rs.exceptions import LoopFileError
from clasp_rs.io.parts import Part, annotated_digest
from clasp_rs.io.probabilities import ProbabilityExport
from clasp_rs.patches import Patch, case_id, read_loop_file
from clasp_rs.strategies.base import SeededStrategy, Strategy
from clasp_rs.strategies.types import QueryRequest, QueryResult, ScoreSet

__all__ = [
    "MapProgress",
    "MapsFolder",
    "Stages",
    "check_out",
    "compute_maps",
    "query_meta",
    "read_annotated",
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
        IsADirectoryError: it is a folder.
        FileNotFoundError: its folder does not exist.
    """
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(
            21, "output is a folder; expected the name of a new file in it", str(out)
        )
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
                f"loop file {escaped(os.fspath(loop_file))} names {len(names)} case(s) that are "
                f"not in the probability folder: {', '.join(escaped(n) for n in names[:8])}"
                + (" ..." if len(names) > 8 else "")
            )
    return dict(annotated)


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
