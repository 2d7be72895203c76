"""The query step of the loop: ``loop_(t+1).json`` from the models of loop ``t``.

Strategies that rank by uncertainty maps go through ``clasp-rs query``'s own code
(:func:`clasp_rs.commands.query.run`) on the per-fold probabilities of the pool; sharded
runs write part files that ``clasp-rs merge``'s code (:func:`clasp_rs.commands.merge.run`)
joins. Random needs only the volume shapes; Random FG needs the ground truth (simulation).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

from clasp_rs.loop.annotation import patches_by_case
from clasp_rs.loop.volumes import image_shape, read_label
from clasp_rs.patches import Patch, write_loop_file

__all__ = ["complete_parts", "query_loop", "query_part"]

_PART = re.compile(r"^part_(\d+)_of_(\d+)$")


def _annotated_file(run: Any, loop: int, cases: list[str]) -> Path:
    """One loop file with every patch annotated through ``loop`` in ``cases`` (the cases
    the query looks at; fully annotated cases are left out of the prediction)."""
    keep = set(cases)
    patches = [p for p in run.annotated_through(loop) if patches_by_case([p]).keys() & keep]
    path = run.exp.loop_folder(loop) / "annotated_for_query.json"
    if path.exists():
        path.unlink()  # derived from the loop files; rewritten identically on a retry
    write_loop_file(path, patches, meta={"loops": list(range(loop + 1))})
    return path


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


def _meta_and_write(run: Any, target: Path, request: Any, result: Any) -> int:
    from clasp_rs.commands.query import build_meta

    write_loop_file(target, result.patches, meta=build_meta(run.strategy, request, result))
    return len(result.patches)


def query_loop(run: Any, loop: int, target: Path) -> int:
    """Write ``target`` (``loop_(t+1).json``) with the experiment's strategy; returns the
    number of patches."""
    from clasp_rs.loop.driver import _nnunet_warnings
    from clasp_rs.strategies.base import QueryRequest, QueryResult, ScoreSet

    exp, strategy = run.exp, run.strategy
    cases = run.unlabelled_pool(loop)
    if run.needs_maps():
        from clasp_rs.commands import merge, query

        parts = complete_parts(run, loop)
        if parts is not None:
            merge.run(argparse.Namespace(parts=[str(p) for p in parts], out=str(target)))
            for part in parts:
                # The merge is written; the shards' large inputs are no longer needed.
                shutil.rmtree(part.parent / "probabilities", ignore_errors=True)
                shutil.rmtree(part.parent / "maps", ignore_errors=True)
        else:
            args = argparse.Namespace(
                probabilities=str(exp.loop_folder(loop) / "pool_probabilities"),
                dataset_json=str(run.dataset / "dataset.json"),
                strategy=strategy.name,
                n=exp.budget,
                loop=loop,
                n_loops=strategy.n_loops,
                patch_size=list(exp.patch_size),
                stride=[1],
                per_volume=None,
                seed=exp.seed,
                annotated=[str(_annotated_file(run, loop, cases))],
                out=str(target),
                device=run.options.device,
                workdir=None,
                num_parts=1,
                part_id=0,
            )
            with _nnunet_warnings():
                query.run(args)
        from clasp_rs.patches import read_loop_file

        return len(read_loop_file(target))

    annotated = {
        c: ps for c, ps in patches_by_case(run.annotated_through(loop)).items() if c in cases
    }
    request = QueryRequest.build(
        exp.budget,
        loop,
        exp.patch_size,
        annotated=annotated,
        files={case: exp.file_of(case) for case in cases},
    )
    strategy.check_loop(request.loop)
    if strategy.needs_labels:
        from clasp_rs.strategies.budget import as_fraction
        from clasp_rs.strategies.random_fg import random_fg_patches

        labels = {case: read_label(exp.ground_truth(case))[0] for case in cases}
        patches: list[Patch] = random_fg_patches(
            labels,
            request.n,
            request,
            share=as_fraction(strategy.share, "share"),
            seed=strategy.seed,
            classes=exp.foreground,
        )
        return _meta_and_write(run, target, request, QueryResult(patches, beta=None))
    shapes = {case: image_shape(run.dataset / "labelsTr" / exp.file_of(case)) for case in cases}
    result = strategy.query_scores({c: ScoreSet(s) for c, s in shapes.items()}, request)
    return _meta_and_write(run, target, request, result)


def query_part(run: Any, loop: int, out: Path) -> Path:
    """Phase 1 of the query over this shard's cases, as ``clasp-rs query --num-parts``
    does, but with the case list of the whole pool (each shard holds only its own
    probabilities). Writes ``out/part.json``; the maps stay in ``out/maps`` for the merge."""
    from rich.console import Console

    from clasp_rs.commands.query import compute_maps
    from clasp_rs.loop.driver import _nnunet_warnings
    from clasp_rs.probabilities import discover_probabilities, read_dataset_json
    from clasp_rs.strategies.base import QueryRequest
    from clasp_rs.strategies.partial import Part, annotated_digest, write_part

    exp, strategy = run.exp, run.strategy
    k, i = run.options.num_parts, run.options.part_id
    all_cases = run.unlabelled_pool(loop)
    mine = sorted(all_cases)[i::k]
    target = out / "part.json"
    if target.exists():
        return target
    annotated = {
        c: ps
        for c, ps in patches_by_case(run.annotated_through(loop)).items()
        if c in set(all_cases)
    }
    request = QueryRequest.build(
        exp.budget,
        loop,
        exp.patch_size,
        annotated=annotated,
        files={case: exp.file_of(case) for case in all_cases},
    )
    strategy.check_loop(request.loop)
    dataset = read_dataset_json(run.dataset / "dataset.json")
    maps = (out / "maps").resolve()
    maps.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with _nnunet_warnings():
        if run.needs_maps():
            export = discover_probabilities(out / "probabilities", n_classes=dataset.n_classes)
            scores = compute_maps(strategy, export, mine, run.options.device, maps, console, [])
        else:
            from clasp_rs.strategies.base import ScoreSet

            scores = {
                c: ScoreSet(image_shape(run.dataset / "labelsTr" / exp.file_of(c))) for c in mine
            }
        local = strategy.select_local(scores, request, partial=True)
    part_request = QueryRequest(
        n=request.n,
        loop=request.loop,
        patch_size=request.patch_size,
        stride=request.stride,
        per_volume=request.per_volume,
        annotated={c: tuple(request.boxes(c)) for c in mine if request.boxes(c)},
        files={c: request.file(c) for c in mine},
    )
    part = Part(
        strategy=strategy.params(),
        request=part_request,
        num_parts=k,
        part_id=i,
        all_cases=list(all_cases),
        digest=annotated_digest(request.annotated),
        local=local,
        meta={"labels": {str(v): name for name, v in dataset.labels.items()}},
    )
    return write_part(target, part)
