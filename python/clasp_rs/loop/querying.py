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
from clasp_rs.io.dataset_json import read_dataset_json
from clasp_rs.loop.annotation import patches_by_case
from clasp_rs.loop.volumes import image_shape, read_label
from clasp_rs.nnunet._runtime import nnunet_warnings
from clasp_rs.patches import Patch, write_loop_file
from clasp_rs.query import (
    Stages,
    merge_parts,
    open_export_query,
    query_meta,
    run_export_part,
    run_export_query,
    select_part,
)
from clasp_rs.strategies.types import QueryRequest, QueryResult, ScoreSet
from clasp_rs.summary import MapsProgressBar, print_summary

__all__ = ["complete_parts", "query_loop", "query_part"]

_PART = re.compile(r"^part_(\d+)_of_(\d+)$")


def complete_parts(run: Any, loop: int) -> list[Path] | None:
    """The part files of a sharded query of ``loop`` when all K parts are there."""
    folder = run.exp.loop_folder(loop) / "parts"
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


def _annotated(run: Any, loop: int, cases: list[str]) -> dict[str, list[Patch]]:
    """Every patch annotated through ``loop`` in ``cases``, by case."""
    keep = set(cases)
    return {c: ps for c, ps in patches_by_case(run.annotated_through(loop)).items() if c in keep}


def _request(run: Any, loop: int, cases: list[str]) -> QueryRequest:
    exp = run.exp
    request = QueryRequest.build(
        exp.budget,
        loop,
        exp.patch_size,
        annotated=_annotated(run, loop, cases),
        files={case: exp.file_of(case) for case in cases},
    )
    run.strategy.check_loop(request.loop)
    return request


def _shapes(run: Any, cases: list[str]) -> dict[str, ScoreSet]:
    labels = run.dataset / "labelsTr"
    return {c: ScoreSet(image_shape(labels / run.exp.file_of(c))) for c in cases}


def _write(run: Any, target: Path, request: QueryRequest, result: QueryResult) -> int:
    write_loop_file(target, result.patches, meta=query_meta(run.strategy, request, result))
    return len(result.patches)


def query_loop(run: Any, loop: int, target: Path) -> int:
    """Write ``target`` (``loop_(t+1).json``) with the experiment's strategy; returns the
    number of patches."""
    exp, strategy = run.exp, run.strategy
    cases = run.unlabelled_pool(loop)
    if strategy.needs_maps:
        if str(run.options.device).startswith("mps"):
            run.console.print(MAPS_ON_CPU)
        parts = complete_parts(run, loop)
        if parts is not None:
            start = time.perf_counter()
            merged = merge_parts(parts)
            done_merging = time.perf_counter()
            _write(run, target, merged.request, merged.result)
            print_summary(
                run.console,
                f"clasp-rs merge {strategy.name}: {len(merged.result.patches)} of "
                f"{merged.request.n} patches",
                merged.result.patches,
                merged.result,
                {"read + merge": done_merging - start, "write": time.perf_counter() - done_merging},
                merged.label_names,
                len(merged.request.files),
            )
            run.console.print(f"wrote {target}")
            for part in parts:
                # The merge is written; the shards' large inputs are no longer needed.
                shutil.rmtree(part.parent / "probabilities", ignore_errors=True)
                shutil.rmtree(part.parent / "maps", ignore_errors=True)
            return len(merged.result.patches)
        query = open_export_query(
            strategy,
            exp.loop_folder(loop) / "pool_probabilities",
            run.dataset / "dataset.json",
            n=exp.budget,
            loop=loop,
            patch_size=exp.patch_size,
            out=target,
            annotated=_annotated(run, loop, cases),
            device=run.options.device,
        )
        stages = Stages()
        cases = list(query.export.cases)
        with nnunet_warnings(), MapsProgressBar(run.console, len(cases)) as bar:
            result = run_export_query(
                query, target, device=run.options.device, progress=bar, stages=stages
            )
        print_summary(
            run.console,
            f"clasp-rs query {strategy.name}: {len(result.patches)} of {query.request.n} patches",
            result.patches,
            result,
            stages.seconds,
            query.label_names,
            len(cases),
        )
        run.console.print(f"wrote {target}")
        return len(result.patches)

    request = _request(run, loop, cases)
    if strategy.needs_labels:
        labels = {case: read_label(exp.ground_truth(case))[0] for case in cases}
        result = strategy.query_labels(labels, request, classes=exp.foreground)
        return _write(run, target, request, result)
    return _write(run, target, request, strategy.query_scores(_shapes(run, cases), request))


def query_part(run: Any, loop: int, out: Path) -> Path:
    """Phase 1 of the query over this shard's cases, as ``clasp-rs query --num-parts``
    does, but with the case list of the whole pool (each shard holds only its own
    probabilities). Writes ``out/part.json``; the maps stay in ``out/maps`` for the merge."""
    strategy = run.strategy
    k, i = run.options.num_parts, run.options.part_id
    all_cases = run.unlabelled_pool(loop)
    mine = sorted(all_cases)[i::k]
    target = out / "part.json"
    if target.exists():
        return target
    maps = out / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    if not strategy.needs_maps:
        dataset = read_dataset_json(run.dataset / "dataset.json")
        part = select_part(
            strategy,
            _shapes(run, mine),
            _request(run, loop, all_cases),
            part_id=i,
            num_parts=k,
            all_cases=all_cases,
            meta={"labels": {str(v): name for name, v in dataset.labels.items()}},
        )
        from clasp_rs.io.parts import write_part

        return write_part(target, part)
    query = open_export_query(
        strategy,
        out / "probabilities",
        run.dataset / "dataset.json",
        n=run.exp.budget,
        loop=loop,
        patch_size=run.exp.patch_size,
        out=target,
        annotated=_annotated(run, loop, all_cases),
        device=run.options.device,
    )
    with nnunet_warnings(), MapsProgressBar(run.console, len(mine)) as bar:
        written = run_export_part(
            query,
            target,
            part_id=i,
            num_parts=k,
            cases=mine,
            all_cases=all_cases,
            device=run.options.device,
            workdir=maps,
            progress=bar,
        )
    return written.path
