"""The query step of the loop: ``loop_(t+1).json`` from the models of loop ``t``, through the
library pipeline of :mod:`clasp_rs.query` (the same code as ``clasp-rs query``/``merge``).

Strategies that rank uncertainty maps query the per-fold probabilities of the pool; sharded
runs write part files that the merge joins. Random needs only the volume shapes; Random FG
needs the ground truth (simulation).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from clasp_rs.devices import MAPS_ON_CPU
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.dataset_json import read_dataset_json
from clasp_rs.io.parts import write_part
from clasp_rs.loop.tasks import LoopContext
from clasp_rs.nnunet._runtime import nnunet_warnings
from clasp_rs.nnunet.labels import image_shape, read_label
from clasp_rs.patches import Patch, patches_by_case, read_loop_file, read_loop_meta, write_loop_file
from clasp_rs.query import (
    Stages,
    merge_parts,
    open_export_query,
    query_meta,
    run_export_part,
    run_export_query,
    select_part,
)
from clasp_rs.strategies.base import Strategy
from clasp_rs.strategies.random_fg import RandomFG
from clasp_rs.strategies.types import QueryRequest, QueryResult, ScoreSet
from clasp_rs.summary import MapsProgressBar, print_summary

__all__ = ["complete_parts", "part_folder", "query_loop", "query_part", "query_step"]

_PART = re.compile(r"^part_(\d+)_of_(\d+)$")


def part_folder(ctx: LoopContext, loop: int, num_parts: int, part_id: int) -> Path:
    """Where shard ``part_id`` of ``num_parts`` keeps its probabilities, maps and part file."""
    return ctx.exp.loop_folder(loop) / "parts" / f"part_{part_id}_of_{num_parts}"


def complete_parts(ctx: LoopContext, loop: int) -> list[Path] | None:
    """The part files of a sharded query of ``loop`` when all K parts are there."""
    folder = ctx.exp.loop_folder(loop) / "parts"
    if not folder.is_dir():
        return None
    found: dict[int, dict[int, Path]] = {}
    for entry in folder.iterdir():
        m = _PART.match(entry.name)
        if m and (entry / "part.json").is_file():
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = entry / "part.json"
    for k, parts in sorted(found.items()):
        if len(parts) == k:
            return [parts[i] for i in range(k)]
    return None


def _annotated(ctx: LoopContext, loop: int, cases: list[str]) -> dict[str, list[Patch]]:
    """Every patch annotated through ``loop`` in ``cases``, by case."""
    keep = set(cases)
    return {c: ps for c, ps in patches_by_case(ctx.annotated_through(loop)).items() if c in keep}


def _request(ctx: LoopContext, loop: int, cases: list[str]) -> QueryRequest:
    exp = ctx.exp
    request = QueryRequest.build(
        exp.budget,
        loop,
        exp.patch_size,
        annotated=_annotated(ctx, loop, cases),
        files={case: exp.file_of(case) for case in cases},
    )
    ctx.strategy.check_loop(request.loop)
    return request


def _shapes(ctx: LoopContext, cases: list[str]) -> dict[str, ScoreSet]:
    labels = ctx.dataset / "labelsTr"
    return {c: ScoreSet(image_shape(labels / ctx.exp.file_of(c))) for c in cases}


def _write(ctx: LoopContext, target: Path, request: QueryRequest, result: QueryResult) -> int:
    write_loop_file(target, result.patches, meta=query_meta(ctx.strategy, request, result))
    return len(result.patches)


def _merge(ctx: LoopContext, parts: list[Path], target: Path) -> int:
    """Merge a sharded query's part files into ``target``; the shards' inputs then go."""
    start = time.perf_counter()
    merged = merge_parts(parts)
    done_merging = time.perf_counter()
    _write(ctx, target, merged.request, merged.result)
    print_summary(
        ctx.console,
        f"clasp-rs merge {ctx.strategy.name}: {len(merged.result.patches)} of "
        f"{merged.request.n} patches",
        merged.result.patches,
        merged.result,
        {"read + merge": done_merging - start, "write": time.perf_counter() - done_merging},
        merged.label_names,
        len(merged.request.files),
    )
    ctx.console.print(f"wrote {target}")
    for part in parts:
        # The merge is written; the shards' large inputs are no longer needed.
        shutil.rmtree(part.parent / "probabilities", ignore_errors=True)
        shutil.rmtree(part.parent / "maps", ignore_errors=True)
    return len(merged.result.patches)


def _query_probabilities(
    ctx: LoopContext, strategy: Strategy, loop: int, cases: list[str], target: Path
) -> int:
    """The query over the pool's per-fold probabilities of ``loop``, as ``clasp-rs query``."""
    exp = ctx.exp
    query = open_export_query(
        strategy,
        exp.loop_folder(loop) / "pool_probabilities",
        ctx.dataset / "dataset.json",
        n=exp.budget,
        loop=loop,
        patch_size=exp.patch_size,
        out=target,
        annotated=_annotated(ctx, loop, cases),
        device=ctx.device,
    )
    stages = Stages()
    predicted = list(query.export.cases)
    with nnunet_warnings(), MapsProgressBar(ctx.console, len(predicted)) as bar:
        result = run_export_query(query, target, device=ctx.device, progress=bar, stages=stages)
    print_summary(
        ctx.console,
        f"clasp-rs query {strategy.name}: {len(result.patches)} of {query.request.n} patches",
        result.patches,
        result,
        stages.seconds,
        query.label_names,
        len(predicted),
    )
    ctx.console.print(f"wrote {target}")
    return len(result.patches)


def query_loop(ctx: LoopContext, loop: int, target: Path) -> int:
    """Write ``target`` (``loop_(t+1).json``) with the experiment's strategy; returns the
    number of patches."""
    strategy = ctx.strategy
    cases = ctx.unlabelled_pool(loop)
    if isinstance(strategy, RandomFG):
        request = _request(ctx, loop, cases)
        labels = {case: read_label(ctx.exp.ground_truth(case))[0] for case in cases}
        result = strategy.query_labels(labels, request, classes=ctx.exp.foreground)
        return _write(ctx, target, request, result)
    if not strategy.needs_maps:
        request = _request(ctx, loop, cases)
        return _write(ctx, target, request, strategy.query_scores(_shapes(ctx, cases), request))
    if str(ctx.device).startswith("mps"):
        ctx.console.print(MAPS_ON_CPU)
    parts = complete_parts(ctx, loop)
    if parts is not None:
        return _merge(ctx, parts, target)
    return _query_probabilities(ctx, strategy, loop, cases, target)


def query_step(ctx: LoopContext, loop: int) -> dict[str, Any]:
    """The ``NNN/query`` step: ``loop_(loop+1).json`` (merging the parts of a sharded query
    when they are all there), then the pool's probabilities go. A loop file an interrupted
    attempt already wrote is kept when it is this experiment's query of ``loop``."""
    target = ctx.exp.loop_file(loop + 1)
    if target.exists():
        # Written by an attempt that died before recording the step: keep it if it is
        # this experiment's query (loop files are never overwritten).
        meta = read_loop_meta(target)
        if meta.get("loop") != loop or meta.get("strategy") != ctx.strategy.name:
            raise DatasetError(
                f"{target} exists but is not the {ctx.strategy.name} query of loop {loop} "
                f"(its meta says {meta.get('strategy')!r}, loop {meta.get('loop')!r})"
            )
        return {"patches": len(read_loop_file(target)), "reused": True}
    patches = query_loop(ctx, loop, target)
    if ctx.strategy.needs_maps:
        shutil.rmtree(ctx.exp.loop_folder(loop) / "pool_probabilities", ignore_errors=True)
    return {"patches": patches}


def query_part(ctx: LoopContext, loop: int, *, num_parts: int, part_id: int) -> Path:
    """Phase 1 of the query over shard ``part_id`` of ``num_parts``, as ``clasp-rs query
    --num-parts`` does, but with the case list of the whole pool (each shard holds only its
    own probabilities, in :func:`part_folder`). Writes ``part.json`` there; the maps stay in
    its ``maps/`` for the merge."""
    strategy = ctx.strategy
    if not isinstance(strategy, Strategy):
        raise DatasetError(f"strategy {strategy.name} cannot be split into parts (--num-parts)")
    k, i = num_parts, part_id
    out = part_folder(ctx, loop, k, i)
    all_cases = ctx.unlabelled_pool(loop)
    mine = sorted(all_cases)[i::k]
    target = out / "part.json"
    if target.exists():
        return target
    maps = out / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    if not strategy.needs_maps:
        dataset = read_dataset_json(ctx.dataset / "dataset.json")
        part = select_part(
            strategy,
            _shapes(ctx, mine),
            _request(ctx, loop, all_cases),
            part_id=i,
            num_parts=k,
            all_cases=all_cases,
            meta={"labels": {str(v): name for name, v in dataset.labels.items()}},
        )
        return write_part(target, part)
    query = open_export_query(
        strategy,
        out / "probabilities",
        ctx.dataset / "dataset.json",
        n=ctx.exp.budget,
        loop=loop,
        patch_size=ctx.exp.patch_size,
        out=target,
        annotated=_annotated(ctx, loop, all_cases),
        device=ctx.device,
    )
    with nnunet_warnings(), MapsProgressBar(ctx.console, len(mine)) as bar:
        written = run_export_part(
            query,
            target,
            part_id=i,
            num_parts=k,
            cases=mine,
            all_cases=all_cases,
            device=ctx.device,
            workdir=maps,
            progress=bar,
        )
    return written.path
