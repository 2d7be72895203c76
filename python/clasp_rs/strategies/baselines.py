"""Baselines on one score map per volume: Predictive Entropy (top-k on ``u``), PowerPE
(``u`` with power-sampling noise, beta = 1), BALD and PowerBALD (the same on mutual
information), SoftrankBALD and Random.

Each volume takes up to ``m`` (``per_volume``, default ``n``) non-overlapping patches (one
engine call for all volumes); the query keeps the best ``n`` over all volumes, which is the
same as one greedy pass over every volume's candidates. ``Patch.stratum`` is None and
``Patch.score`` the ranking value: ``ln(box mean)``, plus ``Gumbel / beta`` under noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from clasp_rs._engine import (
    MapJob,
    ScoreSource,
    Taken,
    VolumeJob,
    box_means,
    merge_best_first,
    select,
)
from clasp_rs.exceptions import InvalidScoresError
from clasp_rs.patches import Box
from clasp_rs.strategies.base import NotShardableError, Strategy, log_score, to_patch
from clasp_rs.strategies.fill import FillProvider
from clasp_rs.strategies.streams import (
    CODE_ENTROPY,
    CODE_MUTUAL_INFORMATION,
    CODE_RANDOM,
    CODE_SOFTRANK,
    draws,
    stream,
)
from clasp_rs.strategies.types import CaseSelection, QueryRequest, QueryResult, ScoreSet

__all__ = ["BALD", "PE", "PowerBALD", "PowerPE", "Random", "SoftrankBALD"]


class SingleMapStrategy(Strategy):
    """Top-k (or power sampling with beta = 1) on one map per volume."""

    #: ScoreSet attribute ranked by.
    map_attribute: ClassVar[str] = "entropy"
    #: Stream code of the noise.
    code: ClassVar[int] = CODE_ENTROPY
    #: Power sampling with beta = 1 (else rank by box mean).
    power: ClassVar[bool] = False

    def beta(self, loop: int) -> float | None:
        return 1.0 if self.power else None

    def source(self, case: str, scores: ScoreSet) -> ScoreSource:
        value = getattr(scores, self.map_attribute)
        if value is None:
            raise InvalidScoresError(
                f"{self.name} needs the {self.map_attribute.replace('_', ' ')} map of case {case!r}"
            )
        return value

    def select_local(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest, *, partial: bool
    ) -> dict[str, CaseSelection]:
        cases = sorted(scores)
        if request.n == 0:
            return {case: CaseSelection(scores[case].shape, {}) for case in cases}
        beta = self.beta(request.loop)
        jobs = [
            VolumeJob(
                [
                    MapJob(
                        self.source(case, scores[case]),
                        request.m,
                        None
                        if beta is None
                        else (beta, self.seed, stream(case, request.loop, self.code)),
                    )
                ],
                request.boxes(case),
            )
            for case in cases
        ]
        result = select(jobs, request.patch_size, request.stride)
        return {
            case: CaseSelection(scores[case].shape, {0: maps[0]})
            for case, maps in zip(cases, result, strict=True)
        }

    def combine(
        self,
        local: Mapping[str, CaseSelection],
        request: QueryRequest,
        fill: FillProvider | None,
    ) -> QueryResult:
        beta = self.beta(request.loop)
        merged = merge_best_first({case: sel.strata.get(0, []) for case, sel in local.items()})[
            : request.n
        ]
        patches = [
            to_patch(case, t, request, log_score(t, beta is not None), None) for case, t in merged
        ]
        return QueryResult(patches, beta, None, 0, request.n - len(patches))


class PE(SingleMapStrategy):
    """Predictive Entropy: the best box means of ``u`` (``pe``)."""

    name = "pe"
    needs = frozenset({"entropy"})


class PowerPE(PE):
    """PowerPE: ``ln(box mean of u) + Gumbel`` (beta = 1) (``power-pe``)."""

    name = "power-pe"
    power = True


class BALD(SingleMapStrategy):
    """BALD: the best box means of the mutual information across folds (``bald``)."""

    name = "bald"
    needs = frozenset({"mutual_information"})
    needs_folds = True
    map_attribute = "mutual_information"
    code = CODE_MUTUAL_INFORMATION


class PowerBALD(BALD):
    """PowerBALD: ``ln(box mean of MI) + Gumbel`` (beta = 1) (``power-bald``)."""

    name = "power-bald"
    power = True


class Random(SingleMapStrategy):
    """Random: a uniformly random set of non-overlapping candidates over all volumes
    (every candidate keyed by its own Gumbel draw, stream code -4) (``random``)."""

    name = "random"
    needs = frozenset({"shape"})
    power = True
    code = CODE_RANDOM

    def source(self, case: str, scores: ScoreSet) -> ScoreSource:
        # A constant map: every box mean is 1, so the key is the Gumbel draw alone. A
        # broadcast view costs no memory.
        return np.broadcast_to(np.ones((), dtype=np.float16), scores.shape)


class SoftrankBALD(Strategy):
    """SoftrankBALD: candidates drawn with probability proportional to ``rank^-beta``
    (beta = 1) of their mutual-information box mean among all candidates of all volumes,
    i.e. ranked by ``-ln(rank) + Gumbel / beta`` (stream code -7) (``softrank-bald``).

    Ranks need every volume's box means at once, so this strategy does not shard, and it
    holds one float64 mean and key per candidate of all volumes: meant for coarse strides.
    """

    name = "softrank-bald"
    needs = frozenset({"mutual_information"})
    needs_folds = True
    shardable = False

    def beta(self, loop: int) -> float | None:
        return 1.0

    def select_local(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest, *, partial: bool
    ) -> dict[str, CaseSelection]:
        raise NotShardableError(
            "softrank-bald ranks candidates among all volumes at once and cannot be split "
            "into parts; run it without --num-parts"
        )

    def combine(
        self,
        local: Mapping[str, CaseSelection],
        request: QueryRequest,
        fill: FillProvider | None,
    ) -> QueryResult:
        raise NotShardableError("softrank-bald has no per-volume phase to combine")

    def query_scores(self, scores: Mapping[str, ScoreSet], request: QueryRequest) -> QueryResult:
        beta = 1.0
        cases = sorted(scores)
        if request.n == 0 or not cases:
            return QueryResult([], beta, None, 0, request.n)
        means = []
        for case in cases:
            source = scores[case].mutual_information
            if source is None:
                raise InvalidScoresError(f"softrank-bald needs the mutual information of {case!r}")
            means.append(box_means(source, request.patch_size, request.stride).ravel())
        sizes = [m.size for m in means]
        all_means = np.concatenate(means)
        case_rank = np.repeat(np.arange(len(cases)), sizes)
        index = np.concatenate([np.arange(s) for s in sizes])
        order = np.lexsort((index, case_rank, -all_means.astype(np.float32)))
        rank = np.empty(all_means.size, dtype=np.float64)
        rank[order] = np.arange(1, all_means.size + 1, dtype=np.float64)
        del order
        gumbel = np.concatenate(
            [
                draws(self.seed, case, request.loop, CODE_SOFTRANK, np.arange(s))
                for case, s in zip(cases, sizes, strict=True)
            ]
        )
        keys = -np.log(rank) + gumbel / beta
        del rank, gumbel
        taken = _global_greedy(keys, all_means, case_rank, index, cases, scores, request)
        patches = [to_patch(case, t, request, t.key, None) for case, t in taken]
        return QueryResult(patches, beta, None, 0, request.n - len(patches))


def _global_greedy(
    keys: np.ndarray,
    means: np.ndarray,
    case_rank: np.ndarray,
    index: np.ndarray,
    cases: list[str],
    scores: Mapping[str, ScoreSet],
    request: QueryRequest,
) -> list[tuple[str, Taken]]:
    """Greedy over candidates of all volumes by (float32 key desc, case, index), visiting
    only the best few: the next block of candidates is sorted when the previous runs out."""
    key32 = keys.astype(np.float32)
    grids = {}
    for case in cases:
        shape = scores[case].shape
        size = tuple(min(p, s) for p, s in zip(request.patch_size, shape, strict=True))
        counts = tuple(
            (s - p) // st + 1 for s, p, st in zip(shape, size, request.stride, strict=True)
        )
        grids[case] = (size, counts)
    boxes: dict[str, list[Box]] = {case: request.boxes(case) for case in cases}
    count = dict.fromkeys(cases, 0)
    taken: list[tuple[str, Taken]] = []
    remaining = np.arange(key32.size)
    block = max(64, 4 * request.n)
    while remaining.size and len(taken) < request.n:
        if remaining.size > block:
            threshold = np.partition(key32[remaining], remaining.size - block)[
                remaining.size - block
            ]
            head = remaining[key32[remaining] >= threshold]
            remaining = remaining[key32[remaining] < threshold]
        else:
            head, remaining = remaining, remaining[:0]
        head = head[np.lexsort((index[head], case_rank[head], -key32[head]))]
        for i in head:
            case = cases[int(case_rank[i])]
            if count[case] >= request.m:
                continue
            size, counts = grids[case]
            k = int(index[i])
            kz, rest = divmod(k, counts[1] * counts[2])
            ky, kx = divmod(rest, counts[2])
            box: Box = (
                kz * request.stride[0],
                ky * request.stride[1],
                kx * request.stride[2],
                size[0],
                size[1],
                size[2],
            )
            if any(_overlaps(box, b) for b in boxes[case]):
                continue
            boxes[case].append(box)
            count[case] += 1
            taken.append((case, Taken(box[:3], box[3:], k, float(means[i]), float(keys[i]))))
            if len(taken) == request.n:
                break
    return taken


def _overlaps(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return all(a[i] < b[i] + b[i + 3] and b[i] < a[i] + a[i + 3] for i in range(3))
