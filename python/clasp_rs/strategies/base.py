"""What every query strategy is: the :class:`QueryStrategy` protocol the loop and the CLI rely
on, and the :class:`Strategy` base class of the strategies that rank score maps.

A map strategy's query runs in two phases so that it can be sharded:

1. **local** (:meth:`Strategy.select_local`): per volume, what only that volume decides;
   one engine call (:func:`clasp_rs._engine.select`) for all volumes of a run or part.
2. **combine** (:meth:`Strategy.combine`): across volumes, in sorted case-name order;
   cheap, in Python, on the patches phase 1 took.

A single run does both; ``clasp-rs query --num-parts K --part-id i`` does phase 1 for every
K-th case and ``clasp-rs merge`` does phase 2 on the union of the parts, which gives exactly
the single run's query (see :mod:`clasp_rs.query`).

Ordering across volumes: patches compare by their engine key rounded to float32 precision
(higher first), then by the case's position in sorted case-name order, then by C-order
candidate index (:func:`clasp_rs._engine.merge_best_first`).
"""

from __future__ import annotations

import math
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from clasp_rs._engine import Taken
from clasp_rs.annotated import match_annotated
from clasp_rs.arrays import probabilities_for_maps
from clasp_rs.exceptions import ClaspError, InvalidArgumentError, ShortQueryWarning
from clasp_rs.patches import Patch
from clasp_rs.selection import as_seed
from clasp_rs.strategies.fill import FillProvider, NoiseOf
from clasp_rs.strategies.types import (
    MAP_NEEDS,
    CaseSelection,
    QueryRequest,
    QueryResult,
    ScoreSet,
    as_int,
)

__all__ = [
    "NotShardableError",
    "QueryStrategy",
    "SeededStrategy",
    "Strategy",
    "log_score",
    "to_patch",
]


@runtime_checkable
class QueryStrategy(Protocol):
    """What the CLI and the loop ask of any strategy, map-ranking or simulated.

    Attributes:
        name: the CLI name (``"clasp-pe"``, ``"random-fg33"``, ...).
        seed: seed of every draw.
        n_loops: AL loops of the beta schedule.
        needs: the maps it ranks (see :data:`~clasp_rs.strategies.types.MAP_NEEDS`), or
            ``{"shape"}`` for none.
        needs_maps: whether it ranks uncertainty maps (so probabilities must be predicted).
        needs_labels: whether it needs ground-truth labels (simulation only).
        needs_folds: whether it needs per-fold probabilities (M >= 2).
        shardable: whether its first phase is per volume (``--num-parts`` works).
    """

    name: str
    seed: int
    n_loops: int
    needs: frozenset[str]
    needs_labels: bool
    needs_folds: bool
    shardable: bool

    @property
    def needs_maps(self) -> bool: ...

    def params(self) -> dict[str, Any]: ...

    def beta(self, loop: int) -> float | None: ...

    def check_loop(self, loop: int) -> None: ...


def log_score(taken: Taken, noised: bool) -> float:
    """``Patch.score``: the key under noise, else ``ln(mean)`` (``-inf`` for a zero mean)."""
    if noised:
        return taken.key
    return math.log(taken.mean) if taken.mean > 0 else -math.inf


def to_patch(
    case: str, taken: Taken, request: QueryRequest, score: float, stratum: int | None
) -> Patch:
    """The :class:`~clasp_rs.Patch` of a taken candidate of ``case`` (``score`` as the
    strategy documents it; ``mean`` and ``key`` the engine's)."""
    return Patch(
        request.file(case),
        taken.start,
        taken.size,
        score=score,
        stratum=stratum,
        mean=taken.mean,
        key=taken.key,
    )


class SeededStrategy:
    """The part of :class:`QueryStrategy` every strategy implements the same way: its seed,
    schedule length, parameters and capability flags."""

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
        self.n_loops = as_int(n_loops, "n_loops", 1)

    @property
    def needs_maps(self) -> bool:
        """Whether the strategy ranks uncertainty maps (not only the volume shapes)."""
        return bool(self.needs & MAP_NEEDS)

    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters (recorded in ``meta`` and checked by merge)."""
        return {"strategy": self.name, "seed": self.seed, "n_loops": self.n_loops}

    def beta(self, loop: int) -> float | None:
        """The power-sampling exponent at ``loop`` (None: no noise)."""
        return None

    def check_loop(self, loop: int) -> None:
        """Reject a loop the strategy cannot query at (subclasses)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k != "strategy")
        return f"{type(self).__name__}({args})"


class Strategy(SeededStrategy, ABC):
    """A query strategy that ranks score maps:
    ``query(volumes, n, loop, patch_size, ...) -> list[Patch]``.

    Subclasses say which maps they need (:attr:`needs`: ``"classes"`` for ``u_c`` and
    ``u``, ``"entropy"``, ``"mutual_information"``, or ``"shape"`` alone) and implement the
    two phases :meth:`select_local` and :meth:`combine`.
    """

    def noise_for(self, request: QueryRequest) -> NoiseOf:
        """``noise_of(case, stratum)`` of the shortfall fill (strategies that fill)."""
        return lambda case, stratum: None

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
        annotated: Mapping[str, Iterable[Any]] | Iterable[Patch] | None = None,
        logits: bool = False,
        device: str = "auto",
        workdir: str | os.PathLike[str] | None = None,
    ) -> list[Patch]:
        """Query ``n`` patches.

        Args:
            volumes: case name -> probabilities: float ``(M, C, Z, Y, X)`` folds or a
                ``(C, Z, Y, X)`` mean, as numpy array or torch tensor, or the path of a
                ``.npy`` / nnU-Net ``.npz`` file, or a list of per-fold arrays or paths.
                float16 / bfloat16 arrays are upcast to float32 and renormalised over C
                (their sums may be off by C times their epsilon; see
                :func:`clasp_rs.arrays.probabilities_for_maps`).
            n: number of patches.
            loop: the training loop after which the query is made (0, 1, ...).
            patch_size: ``(dz, dy, dx)``; clipped to each volume.
            stride: candidate grid step, one integer or ``(sz, sy, sx)``.
            per_volume: ``m`` of the per-volume caps (default ``n``).
            annotated: patches already annotated (never overlapped): a dict case name ->
                patches, or a flat list of ``Patch`` whose ``file`` names the volume; names
                match through ``case_id``, and one that names no volume is an error.
            logits: the inputs are logits (softmax over C is applied per fold).
            device: where the uncertainty maps are computed (``"auto"``, ``"cpu"``,
                ``"cuda"``; ``"mps"`` computes them on the CPU, see
                :func:`clasp_rs.devices.maps_device`).
            workdir: write the maps there as ``.npy`` files that the engine memory-maps
                (for inputs too large to hold every volume's maps in memory).

        Returns:
            The patches; ``Patch.file`` is the key of ``volumes``. Fewer than ``n`` only
            when no valid candidate is left, with a :class:`~clasp_rs.ShortQueryWarning`
            (:meth:`query_result` returns the shortfall instead).
        """
        result = self.query_result(
            volumes,
            n,
            loop,
            patch_size,
            stride=stride,
            per_volume=per_volume,
            annotated=annotated,
            logits=logits,
            device=device,
            workdir=workdir,
        )
        if result.unfilled > 0:
            warnings.warn(
                f"{self.name} returned {len(result.patches)} of the {n} patches asked for: no "
                f"valid candidate is left for the other {result.unfilled} (every candidate "
                "overlaps an annotated or a taken patch)",
                ShortQueryWarning,
                stacklevel=2,
            )
        return result.patches

    def query_result(
        self,
        volumes: Mapping[str, Any],
        n: int,
        loop: int,
        patch_size: Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        per_volume: int | None = None,
        annotated: Mapping[str, Iterable[Any]] | Iterable[Patch] | None = None,
        logits: bool = False,
        device: str = "auto",
        workdir: str | os.PathLike[str] | None = None,
    ) -> QueryResult:
        """:meth:`query`, returning the whole :class:`~clasp_rs.strategies.QueryResult`
        (patches, beta, quotas, shortfall, ``unfilled``) and never warning."""
        from clasp_rs.strategies.scores import compute_score_sets

        if not isinstance(volumes, Mapping):
            raise InvalidArgumentError(
                f"volumes must be a dict case name -> probabilities, got {type(volumes).__name__}"
            )
        request = QueryRequest.build(
            n,
            loop,
            patch_size,
            stride=stride,
            per_volume=per_volume,
            annotated=match_annotated(annotated, volumes),
        )
        self.check_loop(request.loop)
        prepared = {
            case: probabilities_for_maps(value, f"case {case!r}", logits=logits)
            for case, value in volumes.items()
        }
        scores = compute_score_sets(
            prepared, self.needs, device=device, workdir=workdir, logits=logits
        )
        return self.query_scores(scores, request)

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
