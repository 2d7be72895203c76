"""ClaSP PE: class-stratified power sampling of predictive entropy (DESIGN.md, algorithm).

Per volume the strata (foreground classes 1..F ranked by ``u_c = p_c u``, and -1 ranked by
``u``) run in a seeded random order, each taking up to its per-volume cap of the best
non-overlapping candidates (all strata of all volumes in one engine call). Across volumes
each stratum keeps its best patches up to its quota; patches cut there are released. If the
strata leave the query short, the rest comes from stratum -1 over all volumes (a second
engine call), avoiding everything annotated or kept. ClaP PE (``clap-pe``) keeps
``beta = 1``; ClaPE (``cla-pe``) ranks without noise.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from clasp_rs._engine import MapJob, Noise, ScoreSource, Taken, VolumeJob, merge_best_first, select
from clasp_rs.exceptions import InvalidScoresError
from clasp_rs.patches import Box
from clasp_rs.strategies.base import Strategy, log_score, to_patch
from clasp_rs.strategies.budget import (
    as_fraction,
    beta_schedule,
    finite_positive,
    split_quotas,
    volume_caps,
)
from clasp_rs.strategies.fill import EngineFill, FillProvider, NoiseOf
from clasp_rs.strategies.streams import CODE_STRATA_ORDER, order_by_draws, stream
from clasp_rs.strategies.types import CaseSelection, QueryRequest, QueryResult, ScoreSet

__all__ = ["ClaPE", "ClapPE", "ClaspPE"]


class ClaspPE(Strategy):
    """ClaSP PE, exactly as DESIGN.md's algorithm section describes.

    Args:
        alpha: share of the query for the foreground classes (``floor(alpha n)``).
        beta0: power-sampling exponent of the first query.
        beta_max: exponent at the end of the schedule and after it.
        n_loops: AL loops of the schedule (queries after loops 0 .. n_loops - 2 follow it).
        seed: seed of every random draw.
        noise: False ranks by box mean alone (a deterministic query, for testing).
        shuffle_strata: False processes the strata in ascending label order, stratum -1
            last, and gives the quota remainder to the lowest labels.

    Example:
        >>> strategy = ClaspPE(seed=1)  # doctest: +SKIP
        >>> patches = strategy.query({"case_001": probs}, 20, 0, (32, 64, 64))  # doctest: +SKIP
    """

    name = "clasp-pe"
    needs = frozenset({"classes"})

    def __init__(
        self,
        alpha: float = 0.66,
        beta0: float = 1.0,
        beta_max: float = 100.0,
        n_loops: int = 5,
        seed: int = 0,
        noise: bool = True,
        shuffle_strata: bool = True,
    ) -> None:
        super().__init__(seed=seed, n_loops=n_loops)
        self._alpha = as_fraction(alpha, "alpha")
        self.alpha = float(alpha)
        # Validates beta0 and beta_max.
        beta_schedule(0, self.n_loops, beta0, beta_max)
        self.beta0 = float(beta0)
        self.beta_max = float(beta_max)
        self.noise = bool(noise)
        self.shuffle_strata = bool(shuffle_strata)

    def params(self) -> dict[str, Any]:
        # Key order is the order of the loop file's meta block.
        return {
            **super().params(),
            "alpha": self.alpha,
            "beta0": self.beta0,
            "beta_max": self.beta_max,
            "noise": self.noise,
            "shuffle_strata": self.shuffle_strata,
        }

    def _params_without_schedule(self) -> dict[str, Any]:
        """The parameters of the variants that fix the noise (no beta0/beta_max/noise)."""
        return {**super().params(), "alpha": self.alpha, "shuffle_strata": self.shuffle_strata}

    def beta(self, loop: int) -> float | None:
        """The schedule's exponent at ``loop``, or None without noise."""
        if not self.noise:
            return None
        return beta_schedule(loop, self.n_loops, self.beta0, self.beta_max)

    def quotas(self, n: int, n_fg: int, loop: int) -> dict[int, int]:
        """Each stratum's share of ``n`` (see :func:`~clasp_rs.strategies.budget.split_quotas`)."""
        return split_quotas(
            n, self._alpha, n_fg, seed=self.seed, loop=loop, shuffle=self.shuffle_strata
        )

    def caps(self, request: QueryRequest, n_fg: int) -> dict[int, int]:
        """Per-volume caps of every stratum."""
        return volume_caps(request.m, self._alpha, n_fg)

    def strata_order(self, case: str, n_fg: int, loop: int) -> list[int]:
        """The order the strata of ``case`` are processed in."""
        strata = [*range(1, n_fg + 1), -1]
        if not self.shuffle_strata:
            return strata
        return order_by_draws(strata, self.seed, case, loop, CODE_STRATA_ORDER)

    def noise_for(self, request: QueryRequest) -> NoiseOf:
        """``noise_of(case, stratum)``: the engine noise tuple of a map, or None."""
        beta = self.beta(request.loop)

        def noise_of(case: str, stratum: int) -> Noise | None:
            if beta is None:
                return None
            return (beta, self.seed, stream(case, request.loop, stratum))

        return noise_of

    @staticmethod
    def _n_fg(scores: Mapping[str, ScoreSet]) -> int:
        counts = {case: len(s.classes) for case, s in scores.items()}
        distinct = sorted(set(counts.values()))
        if len(distinct) > 1:
            example = {n: next(c for c in sorted(counts) if counts[c] == n) for n in distinct}
            raise InvalidScoresError(
                "volumes have different numbers of foreground classes: "
                + ", ".join(f"{case!r} has {n}" for n, case in example.items())
            )
        if distinct and distinct[0] < 1:
            raise InvalidScoresError(
                "ClaSP PE needs at least one foreground class (C >= 2 channels)"
            )
        for case, s in scores.items():
            if s.entropy is None:
                raise InvalidScoresError(f"case {case!r} has no entropy map u")
        return distinct[0] if distinct else 0

    @staticmethod
    def _entropy(scores: Mapping[str, ScoreSet], case: str) -> ScoreSource:
        entropy = scores[case].entropy
        if entropy is None:
            raise InvalidScoresError(f"case {case!r} has no entropy map u")
        return entropy

    # -- phase 1 -------------------------------------------------------------------------------

    def select_local(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest, *, partial: bool
    ) -> dict[str, CaseSelection]:
        n_fg = self._n_fg(scores)
        cases = sorted(scores)
        if request.n == 0 or not cases:
            return {case: CaseSelection(scores[case].shape, {}) for case in cases}
        caps = self.caps(request, n_fg)
        noise_of = self.noise_for(request)
        orders = {case: self.strata_order(case, n_fg, request.loop) for case in cases}

        def source(case: str, stratum: int) -> ScoreSource:
            if stratum == -1:
                return self._entropy(scores, case)
            return scores[case].classes[stratum - 1]

        jobs = [
            VolumeJob(
                [MapJob(source(case, s), caps[s], noise_of(case, s)) for s in orders[case]],
                request.boxes(case),
            )
            for case in cases
        ]
        result = select(jobs, request.patch_size, request.stride)
        local = {
            case: CaseSelection(scores[case].shape, dict(zip(orders[case], taken, strict=True)))
            for case, taken in zip(cases, result, strict=True)
        }
        if partial:
            self._prepare_fill(local, scores, request, n_fg)
        return local

    def _prepare_fill(
        self,
        local: dict[str, CaseSelection],
        scores: Mapping[str, ScoreSet],
        request: QueryRequest,
        n_fg: int,
    ) -> None:
        # A shard knows the query cannot fall short when its own volumes already fill every
        # quota. Otherwise it bounds the shortfall by its own deficit and records, per
        # volume, the stratum -1 sequence that the fill would use if nothing of the volume
        # is released in the merge (and the u map's path for when something is).
        quotas = self.quotas(request.n, n_fg, request.loop)
        deficit = sum(
            max(0, q - sum(len(sel.strata.get(s, [])) for sel in local.values()))
            for s, q in quotas.items()
        )
        if deficit == 0:
            return
        noise_of = self.noise_for(request)
        cases = sorted(local)
        jobs = [
            VolumeJob(
                [MapJob(self._entropy(scores, case), deficit, noise_of(case, -1))],
                request.boxes(case) + [t.box for t in local[case].taken()],
            )
            for case in cases
        ]
        result = select(jobs, request.patch_size, request.stride)
        for case, maps in zip(cases, result, strict=True):
            entropy = scores[case].entropy
            local[case].fill = maps[0]
            local[case].fill_quota = deficit
            if isinstance(entropy, (str, os.PathLike)):
                local[case].fill_map = os.fspath(entropy)

    # -- phase 2 -------------------------------------------------------------------------------

    def fill_provider(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest
    ) -> FillProvider | None:
        return EngineFill(scores, request, self.noise_for(request))

    def combine(
        self,
        local: Mapping[str, CaseSelection],
        request: QueryRequest,
        fill: FillProvider | None,
    ) -> QueryResult:
        beta = self.beta(request.loop)
        n_fg = max((s for sel in local.values() for s in sel.strata if s > 0), default=0)
        if request.n == 0 or not local:
            quotas = self.quotas(request.n, max(n_fg, 1), request.loop) if n_fg else None
            return QueryResult([], beta, quotas, 0, request.n)
        quotas = self.quotas(request.n, n_fg, request.loop)
        strata = [*range(1, n_fg + 1), -1]

        kept: dict[int, list[tuple[str, Taken]]] = {}
        kept_boxes: dict[str, list[Box]] = defaultdict(list)
        for s in strata:
            merged = merge_best_first({case: sel.strata.get(s, []) for case, sel in local.items()})
            kept[s] = merged[: quotas[s]]
            for case, t in kept[s]:
                kept_boxes[case].append(t.box)

        shortfall = sum(quotas[s] - len(kept[s]) for s in strata)
        if shortfall > 0:
            if fill is None:
                raise RuntimeError("ClaSP PE combine needs a fill provider for the shortfall")
            released = {
                case: len(sel.taken()) - len(kept_boxes.get(case, []))
                for case, sel in local.items()
            }
            sequences = fill.fill(shortfall, kept_boxes, released)
            filled = merge_best_first(sequences)[:shortfall]
            kept[-1] = merge_best_first(_regroup(kept[-1] + filled))

        noised = beta is not None
        patches = [
            to_patch(case, t, request, log_score(t, noised), s)
            for s in strata
            for case, t in kept[s]
        ]
        return QueryResult(patches, beta, quotas, max(shortfall, 0), request.n - len(patches))

    def check_loop(self, loop: int) -> None:
        beta_schedule(loop, self.n_loops, self.beta0, self.beta_max)


def _regroup(entries: list[tuple[str, Taken]]) -> dict[str, list[Taken]]:
    out: dict[str, list[Taken]] = defaultdict(list)
    for case, t in entries:
        out[case].append(t)
    return out


class ClaPE(ClaspPE):
    """ClaSP PE without noise: strata ranked by box mean (``cla-pe``)."""

    name = "cla-pe"

    def params(self) -> dict[str, Any]:
        return self._params_without_schedule()

    def __init__(
        self,
        alpha: float = 0.66,
        n_loops: int = 5,
        seed: int = 0,
        shuffle_strata: bool = True,
    ) -> None:
        super().__init__(
            alpha=alpha, n_loops=n_loops, seed=seed, noise=False, shuffle_strata=shuffle_strata
        )


class ClapPE(ClaspPE):
    """ClaSP PE with a constant exponent (``clap-pe``, default ``beta = 1``)."""

    name = "clap-pe"

    def params(self) -> dict[str, Any]:
        return {**self._params_without_schedule(), "beta": self.beta0}

    def __init__(
        self,
        alpha: float = 0.66,
        n_loops: int = 5,
        seed: int = 0,
        shuffle_strata: bool = True,
        beta: float = 1.0,
    ) -> None:
        finite_positive(beta, "beta")
        super().__init__(
            alpha=alpha,
            beta0=beta,
            beta_max=beta,
            n_loops=n_loops,
            seed=seed,
            noise=True,
            shuffle_strata=shuffle_strata,
        )
