"""What every strategy shares: the query request, score sets, per-volume selections, the
cross-volume merge, and the engine calls.

A query runs in two phases so that it can be sharded:

1. **local** (:meth:`Strategy.select_local`): per volume, what only that volume decides;
   one :func:`clasp_rs._clasp_rs.select_strata` call for all volumes of a run or part.
2. **combine** (:meth:`Strategy.combine`): across volumes, in sorted case-name order;
   cheap, in Python, on the patches phase 1 took.

A single run does both; ``clasp-rs query --num-parts K --part-id i`` does phase 1 for every
K-th case and ``clasp-rs merge`` does phase 2 on the union of the parts, which gives exactly
the single run's query (see :mod:`clasp_rs.strategies.partial`).

Ordering across volumes: patches compare by their engine key rounded to float32 (higher
first), then by the case's position in sorted case-name order, then by C-order candidate
index. Within one volume and map this is the engine's own order, so merging per-volume
lists this way is the same as one greedy pass over all volumes' candidates.
"""

from __future__ import annotations

import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from clasp_rs import _clasp_rs as _native
from clasp_rs.exceptions import ClaspError
from clasp_rs.patches import Box, Patch
from clasp_rs.selection import as_annotated_boxes, as_count, as_patch_size, as_seed, as_stride

__all__ = [
    "CaseSelection",
    "EngineFill",
    "FillProvider",
    "QueryRequest",
    "QueryResult",
    "ScoreSet",
    "Strategy",
    "Taken",
    "candidate_index",
    "merge_best_first",
    "run_engine",
]

Taken = tuple[int, int, int, int, int, int, float, float]
"""``(z, y, x, dz, dy, dx, mean, key)`` of a patch the engine took: start, clipped size,
box mean (float64) and ranking key (the mean, or ``ln(mean) + Gumbel / beta``)."""

ScoreSource = Any
"""A ``(Z, Y, X)`` float array or the path of a ``.npy`` file of one."""


def _as_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class QueryRequest:
    """What is asked of a strategy, validated.

    Attributes:
        n: patches wanted in total.
        loop: the training loop after which the query is made (0 = after the starting budget).
        patch_size: ``(dz, dy, dx)``, clipped per volume by the engine.
        stride: candidate grid step ``(sz, sy, sx)``.
        per_volume: ``m`` of the per-volume caps, or None for ``m = n``.
        annotated: case -> boxes ``(z, y, x, dz, dy, dx)`` that must not be overlapped.
        files: case -> the ``Patch.file`` to report (default: the case name).
    """

    n: int
    loop: int
    patch_size: tuple[int, int, int]
    stride: tuple[int, int, int]
    per_volume: int | None = None
    annotated: Mapping[str, tuple[Box, ...]] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        n: int,
        loop: int,
        patch_size: Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        per_volume: int | None = None,
        annotated: Mapping[str, Iterable[Any]] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> QueryRequest:
        """Validate the arguments of ``query``.

        Raises:
            InvalidPatchError: ``n``, ``patch_size``, ``stride`` or an annotated patch is
                invalid.
            ValueError: ``loop`` or ``per_volume`` is invalid, or ``annotated`` is not a dict.
        """
        if annotated is not None and not isinstance(annotated, Mapping):
            raise ValueError(
                "annotated must be a dict case name -> list of Patch (or 6-tuples), got "
                f"{type(annotated).__name__}"
            )
        if per_volume is not None:
            per_volume = _as_int(per_volume, "per_volume", 1)
        boxes = {
            str(case): tuple(as_annotated_boxes(patches))
            for case, patches in (annotated or {}).items()
        }
        return cls(
            n=as_count(n),
            loop=_as_int(loop, "loop", 0),
            patch_size=as_patch_size(patch_size),
            stride=as_stride(stride),
            per_volume=per_volume,
            annotated=boxes,
            files=dict(files or {}),
        )

    @property
    def m(self) -> int:
        """``m`` of the per-volume caps: ``per_volume``, or ``n``."""
        return self.n if self.per_volume is None else self.per_volume

    def boxes(self, case: str) -> list[Box]:
        """Annotated boxes of ``case``."""
        return list(self.annotated.get(case, ()))

    def file(self, case: str) -> str:
        """``Patch.file`` of ``case``."""
        return self.files.get(case, case)


@dataclass(frozen=True)
class ScoreSet:
    """The score maps of one case that strategies rank by; each a float ``(Z, Y, X)`` array
    or the path of a ``.npy`` file (memory-mapped by the engine).

    Attributes:
        shape: ``(Z, Y, X)``.
        classes: ``u_c = p_c u`` for the foreground classes ``c = 1 .. F``, in label order.
        entropy: ``u``, the predictive entropy (stratum -1).
        mutual_information: BALD's mutual information.
    """

    shape: tuple[int, int, int]
    classes: tuple[ScoreSource, ...] = ()
    entropy: ScoreSource | None = None
    mutual_information: ScoreSource | None = None


@dataclass
class CaseSelection:
    """Phase 1 of one volume.

    Attributes:
        shape: ``(Z, Y, X)`` of the volume.
        strata: map key (a stratum, or 0 for single-map strategies) -> patches taken, in the
            order taken; dict order is the order the maps were processed in.
        fill: ClaSP PE in a shard only: the stratum -1 greedy sequence with everything taken
            in this volume blocking (valid while nothing of the volume is released).
        fill_quota: the quota ``fill`` was computed with.
        fill_map: path of the volume's ``u`` map, to recompute the fill when patches of the
            volume are released, or None.
    """

    shape: tuple[int, int, int]
    strata: dict[int, list[Taken]]
    fill: list[Taken] | None = None
    fill_quota: int = 0
    fill_map: str | None = None

    def taken(self) -> list[Taken]:
        return [t for ts in self.strata.values() for t in ts]


@dataclass(frozen=True)
class QueryResult:
    """A finished query.

    Attributes:
        patches: in output order.
        beta: the power-sampling exponent used, or None.
        quotas: stratum -> its share of ``n`` (stratified strategies), else None.
        shortfall: patches the stratum -1 fill had to provide (ClaSP PE).
        unfilled: ``n - len(patches)``: what no valid candidate was left for.
    """

    patches: list[Patch]
    beta: float | None
    quotas: dict[int, int] | None = None
    shortfall: int = 0
    unfilled: int = 0


def candidate_index(
    taken: Sequence[Any],
    shape: Sequence[int],
    patch_size: Sequence[int],
    stride: Sequence[int],
) -> int:
    """C-order index of a taken patch's start in the volume's stride grid."""
    counts = [
        (int(s) - min(int(p), int(s))) // int(st) + 1
        for s, p, st in zip(shape, patch_size, stride, strict=True)
    ]
    k = [int(taken[i]) // int(stride[i]) for i in range(3)]
    return (k[0] * counts[1] + k[1]) * counts[2] + k[2]


def merge_best_first(
    lists: Mapping[str, Sequence[Taken]],
    shapes: Mapping[str, Sequence[int]],
    request: QueryRequest,
) -> list[tuple[str, Taken]]:
    """All ``(case, taken)`` of ``lists``, best first: float32 key descending, then sorted
    case order, then candidate index."""
    rank = {case: i for i, case in enumerate(sorted(shapes))}
    entries = []
    for case, items in lists.items():
        for t in items:
            index = candidate_index(t, shapes[case], request.patch_size, request.stride)
            entries.append((-float(np.float32(t[7])), rank[case], index, case, t))
    entries.sort(key=lambda e: e[:3])
    return [(e[3], e[4]) for e in entries]


def run_engine(
    jobs: Sequence[tuple[Sequence[ScoreSource], Sequence[int], Sequence[Any], Sequence[Box]]],
    request: QueryRequest,
) -> list[list[list[Taken]]]:
    """One :func:`select_strata` call; ``jobs[v] = (maps, quotas, noise, annotated)``."""
    if not jobs:
        return []
    result = _native.select_strata(
        [list(j[0]) for j in jobs],
        request.patch_size,
        request.stride,
        [[int(q) for q in j[1]] for j in jobs],
        [list(j[2]) for j in jobs],
        [[_box(b) for b in j[3]] for j in jobs],
    )
    return [[[_taken(t) for t in taken] for taken in maps] for maps in result]


def _box(b: Sequence[Any]) -> Box:
    return (int(b[0]), int(b[1]), int(b[2]), int(b[3]), int(b[4]), int(b[5]))


def _taken(t: Sequence[Any]) -> Taken:
    return (
        int(t[0]),
        int(t[1]),
        int(t[2]),
        int(t[3]),
        int(t[4]),
        int(t[5]),
        float(t[6]),
        float(t[7]),
    )


def log_score(taken: Taken, noised: bool) -> float:
    """``Patch.score``: the key under noise, else ``ln(mean)`` (``-inf`` for a zero mean)."""
    if noised:
        return taken[7]
    return math.log(taken[6]) if taken[6] > 0 else -math.inf


def to_patch(
    case: str, taken: Taken, request: QueryRequest, score: float, stratum: int | None
) -> Patch:
    return Patch(request.file(case), taken[:3], taken[3:6], score=score, stratum=stratum)


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
        self,
        scores: Mapping[str, ScoreSet],
        request: QueryRequest,
        noise_of: Any,
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
        jobs = [
            (
                [self.scores[case].entropy],
                [quota],
                [self.noise_of(case, -1)],
                self.request.boxes(case) + list(kept.get(case, [])),
            )
            for case in cases
        ]
        result = run_engine(jobs, self.request)
        return {case: maps[0] for case, maps in zip(cases, result, strict=True)}


class Strategy(ABC):
    """A query strategy: ``query(volumes, n, loop, patch_size, ...) -> list[Patch]``.

    Subclasses say which maps they need (:attr:`needs`: ``"classes"`` for ``u_c`` and
    ``u``, ``"entropy"``, ``"mutual_information"``, or ``"shape"`` alone) and implement the
    two phases :meth:`select_local` and :meth:`combine`.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Whether phase 1 is per volume (``--num-parts`` works).
    shardable: ClassVar[bool] = True
    #: Whether the strategy needs ground-truth labels (simulation only).
    needs_labels: ClassVar[bool] = False
    #: Whether the strategy needs per-fold probabilities (M >= 2).
    needs_folds: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0, n_loops: int = 5) -> None:
        self.seed = as_seed(seed)
        self.n_loops = _as_int(n_loops, "n_loops", 1)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in ``meta`` and checked by merge)."""
        return {"strategy": self.name, "seed": self.seed, "n_loops": self.n_loops}

    def beta(self, loop: int) -> float | None:
        """The power-sampling exponent at ``loop`` (None: no noise)."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "strategy")
        return f"{type(self).__name__}({args})"

    # -- public API ---------------------------------------------------------------------------

    def query(
        self,
        volumes: Mapping[str, Any],
        n: int,
        loop: int,
        patch_size: Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        per_volume: int | None = None,
        annotated: Mapping[str, Iterable[Any]] | None = None,
        device: str = "auto",
        workdir: str | os.PathLike[str] | None = None,
    ) -> list[Patch]:
        """Query ``n`` patches.

        Args:
            volumes: case name -> probabilities: float ``(M, C, Z, Y, X)`` folds or a
                ``(C, Z, Y, X)`` mean, as numpy array or torch tensor, or the path of a
                ``.npy`` / nnU-Net ``.npz`` file, or a list of per-fold arrays or paths.
            n: number of patches.
            loop: the training loop after which the query is made (0, 1, ...).
            patch_size: ``(dz, dy, dx)``; clipped to each volume.
            stride: candidate grid step, one integer or ``(sz, sy, sx)``.
            per_volume: ``m`` of the per-volume caps (default ``n``).
            annotated: case name -> patches already annotated (never overlapped).
            device: where the uncertainty maps are computed (``"auto"``, ``"cpu"``,
                ``"cuda"``).
            workdir: write the maps there as ``.npy`` files that the engine memory-maps
                (for inputs too large to hold every volume's maps in memory).

        Returns:
            The patches; ``Patch.file`` is the key of ``volumes``.
        """
        from clasp_rs.strategies.scores import compute_score_sets

        request = QueryRequest.build(
            n, loop, patch_size, stride=stride, per_volume=per_volume, annotated=annotated
        )
        if not isinstance(volumes, Mapping):
            raise ValueError(
                f"volumes must be a dict case name -> probabilities, got {type(volumes).__name__}"
            )
        self.check_loop(request.loop)
        scores = compute_score_sets(volumes, self.needs, device=device, workdir=workdir)
        return self.query_scores(scores, request).patches

    def check_loop(self, loop: int) -> None:  # noqa: B027 (optional hook)
        """Reject a loop the strategy cannot query at (subclasses)."""

    def query_scores(self, scores: Mapping[str, ScoreSet], request: QueryRequest) -> QueryResult:
        """Both phases on ready score maps."""
        local = self.select_local(scores, request, partial=False)
        return self.combine(local, request, self.fill_provider(scores, request))

    def fill_provider(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest
    ) -> FillProvider | None:
        """How :meth:`combine` gets a shortfall fill in a single run (None: never needed)."""
        return None

    @abstractmethod
    def select_local(
        self, scores: Mapping[str, ScoreSet], request: QueryRequest, *, partial: bool
    ) -> dict[str, CaseSelection]:
        """Phase 1 for the given volumes. ``partial``: this is one shard of a query, so also
        record what phase 2 may need from these volumes alone."""

    @abstractmethod
    def combine(
        self,
        local: Mapping[str, CaseSelection],
        request: QueryRequest,
        fill: FillProvider | None,
    ) -> QueryResult:
        """Phase 2 over all volumes of the query."""


class NotShardableError(ClaspError, ValueError):
    """The strategy cannot be split into parts (its phase 1 needs all volumes)."""
