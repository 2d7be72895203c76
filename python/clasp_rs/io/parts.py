"""Part files of a sharded query (``"clasp_rs_partial": 1``), written atomically and never
overwritten.

A part runs phase 1 (:meth:`~clasp_rs.strategies.Strategy.select_local`) on every K-th case
in sorted order and records, per case, the patches each map took (start, size, box mean and
the float64 key, so that phase 2 ranks exactly as a single run would). Phase 2 needs nothing
else, except for ClaSP PE's shortfall fill, which depends on which patches of a volume
survive the merge:

* a part whose own volumes already meet every stratum's quota knows the query cannot fall
  short, and records nothing more;
* otherwise it bounds the shortfall by its own deficit ``D`` and records, per volume, the
  first ``D`` patches of the stratum -1 greedy with everything the volume took blocking. In
  the merge this is exactly the volume's fill sequence when none of its patches is cut
  (released); for a volume with released patches the merge recomputes the sequence from the
  volume's ``u`` map, whose path the part records (keep ``--workdir`` until the merge).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clasp_rs._atomic import write_text_atomic
from clasp_rs._engine import Taken, __version__, candidate_index
from clasp_rs._messages import escaped
from clasp_rs.exceptions import LoopFileError
from clasp_rs.io.json_files import parse_json_file
from clasp_rs.patches import Box
from clasp_rs.strategies.types import CaseSelection, QueryRequest

__all__ = ["FORMAT", "Part", "annotated_digest", "read_part", "write_part"]

FORMAT = 1


def annotated_digest(annotated: Mapping[str, Sequence[Box]]) -> str:
    """A digest of all annotated boxes (order-independent), so parts can prove they avoided
    the same patches."""
    canonical = sorted(
        (case, sorted(tuple(b) for b in boxes)) for case, boxes in annotated.items() if boxes
    )
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


@dataclass
class Part:
    """One part of a sharded query, as read from (or written to) a part file.

    Attributes:
        strategy: the strategy's parameters (:meth:`~clasp_rs.strategies.Strategy.params`).
        request: the request restricted to this part's cases.
        num_parts: K.
        part_id: this part, ``0 .. K-1``.
        all_cases: every case of the query, sorted.
        digest: :func:`annotated_digest` of the whole query's annotated boxes.
        local: case -> what phase 1 took there.
        meta: extra JSON for the merge (e.g. the label names, for its summary).
    """

    strategy: dict[str, Any]
    request: QueryRequest
    num_parts: int
    part_id: int
    all_cases: list[str]
    digest: str
    local: dict[str, CaseSelection]
    meta: dict[str, Any]

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


def _taken_json(t: Taken) -> list[Any]:
    key = t.key if math.isfinite(t.key) else None  # JSON has no -inf (zero mean under noise)
    return [*t.start, *t.size, t.mean, key]


def _taken_from_json(item: Any, where: str, shape: Sequence[int], request: QueryRequest) -> Taken:
    if not isinstance(item, list) or len(item) != 8:
        raise LoopFileError(f"{where}: expected [z, y, x, dz, dy, dx, mean, key], got {item!r}")
    key = -math.inf if item[7] is None else float(item[7])
    start = (int(item[0]), int(item[1]), int(item[2]))
    index = candidate_index(start, shape, request.patch_size, request.stride)
    return Taken(start, (int(item[3]), int(item[4]), int(item[5])), index, float(item[6]), key)


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
        doc = parse_json_file(file)
    except ValueError as err:
        raise LoopFileError(f"part file {escaped(str(file))}: {err}") from None
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
            shape = (int(c["shape"][0]), int(c["shape"][1]), int(c["shape"][2]))

            def taken(items: Any, where: str = where, shape: Any = shape) -> list[Taken]:
                return [_taken_from_json(t, where, shape, request) for t in items]

            local[case] = CaseSelection(
                shape=shape,
                strata={int(s): taken(ts) for s, ts in c["strata"]},
                fill=None if c["fill"] is None else taken(c["fill"]),
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
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise LoopFileError(f"part file {file} is malformed: {type(err).__name__} {err}") from None
