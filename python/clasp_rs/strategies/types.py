"""The values a query passes around: what is asked (:class:`QueryRequest`), the maps it ranks
(:class:`ScoreSet`), what each volume took (:class:`CaseSelection`) and the answer
(:class:`QueryResult`). No strategy logic lives here.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clasp_rs._engine import ScoreSource, Taken
from clasp_rs._messages import shown
from clasp_rs.exceptions import InvalidArgumentError
from clasp_rs.patches import Box, Patch
from clasp_rs.selection import as_annotated_boxes, as_count, as_patch_size, as_stride

__all__ = [
    "MAP_NEEDS",
    "CaseSelection",
    "QueryRequest",
    "QueryResult",
    "INT64_MAX",
    "ScoreSet",
    "as_int",
]

#: What a strategy may rank by: the class maps ``u_c`` with ``u``, ``u`` alone, the mutual
#: information; ``"shape"`` alone means no map at all (Random, Random FG).
MAP_NEEDS = frozenset({"classes", "entropy", "mutual_information"})


INT64_MAX = 2**63 - 1
"""The largest loop, count or cap a query takes: the engine keeps them in 64-bit integers."""


def as_int(value: Any, what: str, minimum: int, maximum: int = INT64_MAX) -> int:
    """``value`` as an int, checked to be an integer in ``[minimum, maximum]``.

    Raises:
        InvalidArgumentError: not an integer, or out of range.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or not minimum <= int(value) <= maximum
    ):
        upper = "2**63" if maximum == INT64_MAX else str(maximum + 1)
        raise InvalidArgumentError(
            f"{what} must be an integer in [{minimum}, {upper}), got {shown(value)}"
        )
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
            raise InvalidArgumentError(
                "annotated must be a dict case name -> list of Patch (or 6-tuples), got "
                f"{type(annotated).__name__}"
            )
        if per_volume is not None:
            per_volume = as_int(per_volume, "per_volume", 1)
        boxes = {
            str(case): tuple(as_annotated_boxes(patches))
            for case, patches in (annotated or {}).items()
        }
        return cls(
            n=as_count(n),
            loop=as_int(loop, "loop", 0),
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

    def restricted(self, cases: Iterable[str]) -> QueryRequest:
        """The same request for ``cases`` only (their annotated boxes and file names): what
        one part of a sharded query records."""
        kept = list(cases)
        return QueryRequest(
            n=self.n,
            loop=self.loop,
            patch_size=self.patch_size,
            stride=self.stride,
            per_volume=self.per_volume,
            annotated={c: tuple(self.boxes(c)) for c in kept if self.boxes(c)},
            files={c: self.file(c) for c in kept},
        )


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

    def paths(self) -> list[str]:
        """The maps held as ``.npy`` paths (what a run wrote and may have to remove)."""
        maps = (*self.classes, self.entropy, self.mutual_information)
        return [str(p) for p in maps if isinstance(p, str)]


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
