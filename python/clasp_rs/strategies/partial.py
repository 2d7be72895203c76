"""Sharded queries: what one part records, and how the parts merge into the single run's query.

A part runs phase 1 (:meth:`Strategy.select_local`) on every K-th case in sorted order and
records, per case, the patches each map took (start, size, box mean and the float64 key, so
that phase 2 ranks exactly as a single run would). Phase 2 needs nothing else, except for
ClaSP PE's shortfall fill, which depends on which patches of a volume survive the merge:

* a part whose own volumes already meet every stratum's quota knows the query cannot fall
  short, and records nothing more;
* otherwise it bounds the shortfall by its own deficit ``D`` and records, per volume, the
  first ``D`` patches of the stratum -1 greedy with everything the volume took blocking. In
  the merge this is exactly the volume's fill sequence when none of its patches is cut
  (released); for a volume with released patches the merge recomputes the sequence from the
  volume's ``u`` map, whose path the part records (keep ``--workdir`` until the merge).

Part files are JSON (``"clasp_rs_partial": 1``), written atomically and never overwritten.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clasp_rs import __version__
from clasp_rs._atomic import write_text_atomic
from clasp_rs.exceptions import ClaspError, LoopFileError
from clasp_rs.patches import Box
from clasp_rs.strategies.base import (
    CaseSelection,
    EngineFill,
    QueryRequest,
    QueryResult,
    ScoreSet,
    Strategy,
    Taken,
)

__all__ = [
    "FORMAT",
    "Part",
    "RecordedFill",
    "annotated_digest",
    "merge_parts",
    "read_part",
    "write_part",
]

FORMAT = 1


def annotated_digest(annotated: Mapping[str, Sequence[Box]]) -> str:
    """A digest of all annotated boxes (order-independent), so parts can prove they avoided
    the same patches."""
    canonical = sorted(
        (case, sorted(tuple(b) for b in boxes)) for case, boxes in annotated.items() if boxes
    )
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def _taken_json(t: Taken) -> list[Any]:
    key = t[7] if math.isfinite(t[7]) else None  # JSON has no -inf (zero mean under noise)
    return [*t[:6], t[6], key]


def _taken_from_json(item: Any, where: str) -> Taken:
    if not isinstance(item, list) or len(item) != 8:
        raise LoopFileError(f"{where}: expected [z, y, x, dz, dy, dx, mean, key], got {item!r}")
    key = -math.inf if item[7] is None else float(item[7])
    return (
        int(item[0]),
        int(item[1]),
        int(item[2]),
        int(item[3]),
        int(item[4]),
        int(item[5]),
        float(item[6]),
        key,
    )


class Part:
    """One part of a sharded query, as read from (or written to) a part file."""

    def __init__(
        self,
        *,
        strategy: dict[str, Any],
        request: QueryRequest,
        num_parts: int,
        part_id: int,
        all_cases: list[str],
        digest: str,
        local: dict[str, CaseSelection],
        meta: dict[str, Any],
    ) -> None:
        self.strategy = strategy
        self.request = request
        self.num_parts = num_parts
        self.part_id = part_id
        self.all_cases = all_cases
        self.digest = digest
        self.local = local
        self.meta = meta

    def to_json(self) -> dict[str, Any]:
        r = self.request
        return {
            "clasp_rs_partial": FORMAT,
            "version": __version__,
            "strategy": self.strategy,
            "request": {
                "n": r.n,
                "loop": r.loop,
                "patch_size": list(r.patch_size),
                "stride": list(r.stride),
                "per_volume": r.per_volume,
            },
            "num_parts": self.num_parts,
            "part_id": self.part_id,
            "all_cases": self.all_cases,
            "annotated_digest": self.digest,
            "cases": {
                case: {
                    "file": r.file(case),
                    "shape": list(sel.shape),
                    "annotated": [list(b) for b in r.boxes(case)],
                    "strata": [[s, [_taken_json(t) for t in ts]] for s, ts in sel.strata.items()],
                    "fill": None if sel.fill is None else [_taken_json(t) for t in sel.fill],
                    "fill_quota": sel.fill_quota,
                    "fill_map": sel.fill_map,
                }
                for case, sel in sorted(self.local.items())
            },
            "meta": self.meta,
        }


def write_part(path: str | os.PathLike[str], part: Part) -> Path:
    """Write a part file atomically; never overwrite one.

    Raises:
        FileExistsError: ``path`` exists.
        FileNotFoundError: its folder does not exist.
    """
    dest = Path(path)
    if not dest.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "output folder does not exist", str(dest.parent))
    text = json.dumps(part.to_json(), indent=1, allow_nan=False) + "\n"
    return write_text_atomic(
        dest, text, overwrite=False, exists_message="output file already exists (never overwritten)"
    )


def read_part(path: str | os.PathLike[str]) -> Part:
    """Read a part file written by :func:`write_part`.

    Raises:
        FileNotFoundError: no such file.
        LoopFileError: not a clasp-rs part file, or a malformed one.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(errno.ENOENT, "part file not found", str(file))
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LoopFileError(f"part file {file}: not valid JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("clasp_rs_partial") != FORMAT:
        raise LoopFileError(
            f"{file} is not a clasp-rs part file (written by clasp-rs query --num-parts K "
            f"--part-id i; format {FORMAT})"
        )
    try:
        req = doc["request"]
        files = {case: c["file"] for case, c in doc["cases"].items()}
        annotated = {
            case: tuple(tuple(int(v) for v in b) for b in c["annotated"])
            for case, c in doc["cases"].items()
        }
        request = QueryRequest(
            n=int(req["n"]),
            loop=int(req["loop"]),
            patch_size=tuple(int(v) for v in req["patch_size"]),  # type: ignore[arg-type]
            stride=tuple(int(v) for v in req["stride"]),  # type: ignore[arg-type]
            per_volume=None if req["per_volume"] is None else int(req["per_volume"]),
            annotated=annotated,  # type: ignore[arg-type]
            files=files,
        )
        local = {}
        for case, c in doc["cases"].items():
            where = f"part file {file}, case {case!r}"
            local[case] = CaseSelection(
                shape=tuple(int(v) for v in c["shape"]),  # type: ignore[arg-type]
                strata={int(s): [_taken_from_json(t, where) for t in ts] for s, ts in c["strata"]},
                fill=None if c["fill"] is None else [_taken_from_json(t, where) for t in c["fill"]],
                fill_quota=int(c["fill_quota"]),
                fill_map=c["fill_map"],
            )
        return Part(
            strategy=dict(doc["strategy"]),
            request=request,
            num_parts=int(doc["num_parts"]),
            part_id=int(doc["part_id"]),
            all_cases=[str(c) for c in doc["all_cases"]],
            digest=str(doc["annotated_digest"]),
            local=local,
            meta=dict(doc.get("meta", {})),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise LoopFileError(f"part file {file} is malformed: {type(err).__name__} {err}") from None


class RecordedFill:
    """The shortfall fill from what the parts recorded (see the module docstring)."""

    def __init__(
        self, local: Mapping[str, CaseSelection], request: QueryRequest, noise_of: Any
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


def merge_parts(parts: Sequence[Part], strategy: Strategy) -> tuple[QueryResult, QueryRequest]:
    """Phase 2 over all parts: exactly the query of a single run over all cases.

    Raises:
        LoopFileError: parts of different queries, missing or repeated parts, or cases not
            covered exactly once.
    """
    if not parts:
        raise LoopFileError("no part files given")
    first = parts[0]
    for p in parts[1:]:
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
    ids = sorted(p.part_id for p in parts)
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
    for p in parts:
        for case, sel in p.local.items():
            if case in local:
                raise LoopFileError(f"case {case!r} appears in more than one part")
            local[case] = sel
            files[case] = p.request.file(case)
            annotated[case] = tuple(p.request.boxes(case))
    if sorted(local) != sorted(first.all_cases):
        uncovered = sorted(set(first.all_cases) - set(local))
        raise LoopFileError(f"the parts do not cover the cases {uncovered}")
    request = QueryRequest(
        n=first.request.n,
        loop=first.request.loop,
        patch_size=first.request.patch_size,
        stride=first.request.stride,
        per_volume=first.request.per_volume,
        annotated=annotated,
        files=files,
    )
    noise_for = getattr(strategy, "noise_for", None)
    fill = RecordedFill(local, request, noise_for(request) if noise_for else None)
    return strategy.combine(local, request, fill), request


def _request_key(r: QueryRequest) -> tuple[Any, ...]:
    return (r.n, r.loop, r.patch_size, r.stride, r.per_volume)
