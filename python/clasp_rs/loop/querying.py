"""The query steps of the loop: ``loop_(t+1).json`` from the models of loop ``t``, through the
library pipeline of :mod:`clasp_rs.query` (the same code as ``clasp-rs query``/``merge``).

For strategies that rank uncertainty maps, the pool's unannotated cases are split into
shards (``loops/loop_t/parts/part_I_of_S/``). :func:`predict_maps` runs every fold's network
over a shard's cases and writes only their score maps (:mod:`clasp_rs.nnunet.fused_maps`);
:func:`query_part` selects from them into the shard's ``part.json``; :func:`query_step`
merges the parts into the loop file, exactly the file one query over all cases writes.
Strategies that cannot be split query all shards' maps at once. Random needs only the volume
shapes; Random FG needs the ground truth (simulation).
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
from clasp_rs.query import Stages, merge_parts, query_meta, select_part, select_query
from clasp_rs.strategies.base import Strategy
from clasp_rs.strategies.random_fg import RandomFG
from clasp_rs.strategies.types import QueryRequest, QueryResult, ScoreSet
from clasp_rs.summary import print_summary

__all__ = [
    "complete_parts",
    "part_folder",
    "predict_maps",
    "query_loop",
    "query_part",
    "query_step",
    "shard_cases",
]

_PART = re.compile(r"^part_(\d+)_of_(\d+)$")


def part_folder(ctx: LoopContext, loop: int, num_parts: int, part_id: int) -> Path:
    """Where shard ``part_id`` of ``num_parts`` keeps its maps and part file."""
    return ctx.exp.loop_folder(loop) / "parts" / f"part_{part_id}_of_{num_parts}"


def shard_cases(ctx: LoopContext, loop: int, num_parts: int, part_id: int) -> list[str]:
    """The cases of shard ``part_id`` of ``num_parts``: every ``num_parts``-th pool case not
    fully annotated after ``loop``, in sorted order, from ``part_id`` (nnU-Net's
    ``-num_parts/-part_id`` rule)."""
    return sorted(ctx.unlabelled_pool(loop))[part_id::num_parts]


def predict_maps(ctx: LoopContext, loop: int, num_parts: int, part_id: int) -> dict[str, Any]:
    """Shard ``part_id`` of ``num_parts``: every fold of loop ``loop`` over its cases, fused
    into their score maps in ``part_folder(...)/maps`` (cases already there are kept)."""
    from clasp_rs.nnunet.fused_maps import predict_pool_maps

    cases = shard_cases(ctx, loop, num_parts, part_id)
    if str(ctx.device).startswith("mps"):
        ctx.console.print(MAPS_ON_CPU)
    with nnunet_warnings():
        predict_pool_maps(
            ctx.model_dir(loop),
            ctx.dataset / "imagesTr",
            cases,
            part_folder(ctx, loop, num_parts, part_id) / "maps",
            folds=list(ctx.folds),
            needs=ctx.strategy.needs,
            device=ctx.device,
            maps_device=ctx.device,
        )
    return {"cases": len(cases)}


def _shard_maps(ctx: LoopContext, loop: int, num_parts: int) -> dict[str, ScoreSet]:
    from clasp_rs.nnunet.fused_maps import read_pool_maps

    scores: dict[str, ScoreSet] = {}
    for i in range(num_parts):
        folder = part_folder(ctx, loop, num_parts, i) / "maps"
        scores.update(read_pool_maps(folder, shard_cases(ctx, loop, num_parts, i)))
    return scores


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


def _query_maps(
    ctx: LoopContext, strategy: Strategy, loop: int, cases: list[str], target: Path, shards: int
) -> int:
    """One query over the maps of all ``shards`` (strategies that cannot be split)."""
    request = _request(ctx, loop, cases)
    stages = Stages()
    with stages.stage("read maps"):
        scores = _shard_maps(ctx, loop, shards)
    result = select_query(strategy, scores, request, stages=stages)
    _write(ctx, target, request, result)
    dataset = read_dataset_json(ctx.dataset / "dataset.json")
    print_summary(
        ctx.console,
        f"clasp-rs query {strategy.name}: {len(result.patches)} of {request.n} patches",
        result.patches,
        result,
        stages.seconds,
        {v: name for name, v in dataset.labels.items()},
        len(cases),
    )
    ctx.console.print(f"wrote {target}")
    for i in range(shards):
        shutil.rmtree(part_folder(ctx, loop, shards, i) / "maps", ignore_errors=True)
    return len(result.patches)


def query_loop(ctx: LoopContext, loop: int, target: Path, shards: int = 1) -> int:
    """Write ``target`` (``loop_(t+1).json``) with the experiment's strategy, from the
    complete query parts (or, for strategies that cannot be split, from the maps of the
    ``shards`` prediction shards); returns the number of patches."""
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
    if strategy.shardable:
        parts = complete_parts(ctx, loop)
        if parts is None:
            raise DatasetError(
                f"loop {loop}: the query parts in {ctx.exp.loop_folder(loop) / 'parts'} are not "
                "complete; run clasp-rs run --resume to predict and query the missing shards"
            )
        return _merge(ctx, parts, target)
    return _query_maps(ctx, strategy, loop, cases, target, shards)


def query_step(ctx: LoopContext, loop: int, shards: int = 1) -> dict[str, Any]:
    """The ``NNN/query`` step: ``loop_(loop+1).json`` (see :func:`query_loop`). A loop file an
    interrupted attempt already wrote is kept when it is this experiment's query of
    ``loop``."""
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
    return {"patches": query_loop(ctx, loop, target, shards)}


def query_part(ctx: LoopContext, loop: int, *, num_parts: int, part_id: int) -> Path:
    """Phase 1 of the query over shard ``part_id`` of ``num_parts``, as ``clasp-rs query
    --num-parts`` does, but with the case list of the whole pool (each shard holds only its
    own maps, from :func:`predict_maps`). Writes ``part.json`` in :func:`part_folder`; the
    maps stay for the merge."""
    from clasp_rs.nnunet.fused_maps import read_pool_maps

    strategy = ctx.strategy
    if not isinstance(strategy, Strategy) or not strategy.shardable:
        raise DatasetError(f"strategy {strategy.name} cannot be split into parts (--num-parts)")
    k, i = num_parts, part_id
    out = part_folder(ctx, loop, k, i)
    all_cases = ctx.unlabelled_pool(loop)
    mine = shard_cases(ctx, loop, k, i)
    target = out / "part.json"
    if target.exists():
        return target
    out.mkdir(parents=True, exist_ok=True)
    if strategy.needs_maps:
        scores = read_pool_maps(out / "maps", mine)
    else:
        scores = _shapes(ctx, mine)
    dataset = read_dataset_json(ctx.dataset / "dataset.json")
    part = select_part(
        strategy,
        scores,
        _request(ctx, loop, all_cases),
        part_id=i,
        num_parts=k,
        all_cases=all_cases,
        meta={"labels": {str(v): name for name, v in dataset.labels.items()}},
    )
    return write_part(target, part)
