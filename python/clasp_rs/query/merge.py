"""The merge of a sharded query: its parts (or part files) into exactly the single run's
result."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clasp_rs.exceptions import LoopFileError
from clasp_rs.io.parts import Part, read_part
from clasp_rs.patches import Box
from clasp_rs.strategies import get_strategy
from clasp_rs.strategies.base import Strategy
from clasp_rs.strategies.fill import RecordedFill
from clasp_rs.strategies.types import CaseSelection, QueryRequest, QueryResult

__all__ = ["Merged", "merge_parts"]


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
