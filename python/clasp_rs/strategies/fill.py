"""ClaSP PE's shortfall fill: when the strata leave a query short, stratum -1 fills it over all
volumes. A single run computes the fill with the engine (:class:`EngineFill`); a merge of
sharded parts takes it from what the parts recorded (:class:`RecordedFill`, see
:mod:`clasp_rs.io.parts`), recomputing it only for volumes whose patches were cut.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Protocol

from clasp_rs._engine import MapJob, Noise, Taken, VolumeJob, select
from clasp_rs.exceptions import ClaspError
from clasp_rs.patches import Box
from clasp_rs.strategies.types import CaseSelection, QueryRequest, ScoreSet

__all__ = ["EngineFill", "FillProvider", "NoiseOf", "RecordedFill"]

NoiseOf = Callable[[str, int], "Noise | None"]
"""``noise_of(case, stratum)``: the engine noise of a map, or None (rank by box mean)."""


class FillProvider(Protocol):
    """Supplies ClaSP PE's shortfall fill: for every case, the stratum -1 greedy sequence
    (up to ``quota`` patches) avoiding its annotated patches and ``kept[case]``."""

    def fill(
        self,
        quota: int,
        kept: Mapping[str, list[Box]],
        released: Mapping[str, int],
    ) -> dict[str, list[Taken]]: ...


class EngineFill:
    """The fill computed by the engine from the ``u`` maps (one call for all volumes)."""

    def __init__(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest, noise_of: NoiseOf
    ) -> None:
        self.scores = scores
        self.request = request
        self.noise_of = noise_of

    def fill(
        self,
        quota: int,
        kept: Mapping[str, list[Box]],
        released: Mapping[str, int],
    ) -> dict[str, list[Taken]]:
        cases = sorted(self.scores)
        jobs = []
        for case in cases:
            entropy = self.scores[case].entropy
            assert entropy is not None  # checked when the strata were selected
            jobs.append(
                VolumeJob(
                    [MapJob(entropy, quota, self.noise_of(case, -1))],
                    self.request.boxes(case) + list(kept.get(case, [])),
                )
            )
        result = select(jobs, self.request.patch_size, self.request.stride)
        return {case: maps[0] for case, maps in zip(cases, result, strict=True)}


class RecordedFill:
    """The shortfall fill from what the parts of a sharded query recorded.

    A volume none of whose patches was cut in the merge uses its recorded sequence, when the
    part recorded enough of it; any other volume is recomputed from its ``u`` map, whose
    path its part recorded.
    """

    def __init__(
        self, local: Mapping[str, CaseSelection], request: QueryRequest, noise_of: NoiseOf
    ) -> None:
        self.local = local
        self.request = request
        self.noise_of = noise_of

    def fill(
        self,
        quota: int,
        kept: Mapping[str, list[Box]],
        released: Mapping[str, int],
    ) -> dict[str, list[Taken]]:
        out: dict[str, list[Taken]] = {}
        recompute: dict[str, ScoreSet] = {}
        for case, sel in self.local.items():
            recorded = sel.fill is not None and (
                sel.fill_quota >= quota or len(sel.fill) < sel.fill_quota
            )
            if recorded and released.get(case, 0) == 0:
                assert sel.fill is not None
                out[case] = sel.fill[:quota]
            elif sel.fill_map is not None and os.path.isfile(sel.fill_map):
                recompute[case] = ScoreSet(sel.shape, entropy=sel.fill_map)
            else:
                why = (
                    f"{released.get(case, 0)} of its patches were cut in the merge"
                    if recorded
                    else "its part recorded no fill"
                )
                where = f": {sel.fill_map} is gone" if sel.fill_map else ""
                raise ClaspError(
                    f"the query falls {quota} patch(es) short and the stratum -1 fill needs the "
                    f"entropy map of case {case!r} ({why}){where}; re-run its part with "
                    "--workdir DIR and keep DIR until the merge"
                )
        if recompute:
            engine = EngineFill(recompute, self.request, self.noise_of)
            out.update(engine.fill(quota, kept, released))
        return out
