"""A plain numpy brute-force reference of DESIGN.md's ClaSP PE query and its baselines.

Slow and obviously correct, for small inputs only: score maps are computed in float64 numpy,
every candidate's box mean is a direct float64 sum of its voxels, candidates are sorted in
full, every overlap test compares two boxes, and the whole query (per-volume strata with
caps, the cross-volume merge that releases cut patches, the shortfall fill from stratum -1
across volumes, the output order) is one straight pass over Python lists.

It mirrors the conventions the implementation documents, on purpose:

* ranking: within one map candidates rank by their key rounded to float32 (equal float32
  keys: lower C-order candidate index first); across volumes equal float32 keys go to the
  earlier case in sorted case-name order. The key is the box mean, or under power sampling
  ``ln(mean) + g / beta`` (``-inf`` for a zero mean) with ``g`` the engine's counter-based
  Gumbel draw ``gumbel(seed, stream_id(case, loop, code), [candidate index])``.
* ``Patch.score`` is the ranking value in float64: ``ln(mean) + g / beta``, or ``ln(mean)``
  without noise.
* stream codes (the third argument of ``stream_id``): a foreground class ``c`` uses ``c``,
  the entropy map ``u`` uses ``-1``, the per-volume strata order ``-2`` (draws for the
  positions 0..F of the strata list ``[1, .., F, -1]``; higher draw first), the quota
  remainder ``-3`` with case ``""`` (draws for classes 1..F at indices 0..F-1; the
  remainder goes to the highest draws), random candidates ``-4``, mutual-information noise
  ``-5``, SoftrankBALD noise ``-7``.
* ``floor(alpha * n)`` and the caps are computed on the decimal value of ``alpha`` as
  written (``floor(50 * (1 - 0.66)) == 17``), not on its binary approximation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np

from clasp_rs import _clasp_rs

Triple = tuple[int, int, int]
Box = tuple[int, int, int, int, int, int]

CODE_ENTROPY = -1
CODE_STRATA_ORDER = -2
CODE_REMAINDER = -3
CODE_RANDOM = -4
CODE_MUTUAL_INFORMATION = -5
CODE_SOFTRANK = -7


@dataclass(frozen=True)
class Candidate:
    case: str
    case_rank: int
    index: int
    box: Box
    mean: float
    key: float  # float64 ranking value (mean, or ln(mean) + g / beta)

    @property
    def key32(self) -> float:
        return float(np.float32(self.key))

    def order(self) -> tuple[float, int, int]:
        """Sort key: best float32 key first, then earlier case, then lower candidate index."""
        return (-self.key32, self.case_rank, self.index)


@dataclass(frozen=True)
class RefPatch:
    file: str
    coords: Triple
    size: Triple
    score: float
    stratum: int | None


@dataclass(frozen=True)
class RefResult:
    patches: list[RefPatch]
    beta: float | None
    quotas: dict[int, int]
    shortfall: int  # patches the stratum -1 fill had to provide
    unfilled: int  # n - len(patches)
    released: list[tuple[str, Box]] = field(default_factory=list)  # cut in the merge
    filled: list[tuple[str, Box]] = field(default_factory=list)  # taken by the fill


# ------------------------------------------------------------------------------------------
# Maps (DESIGN steps 1-3), float64
# ------------------------------------------------------------------------------------------


def reference_maps(probabilities: np.ndarray) -> np.ndarray:
    """float64 (F + 1, Z, Y, X): u_1 .. u_F, then u, from (C, Z, Y, X) or (M, C, Z, Y, X)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 5:
        p = p.mean(axis=0)
    u = entropy(p)
    return np.stack([p[c] * u for c in range(1, p.shape[0])] + [u])


def entropy(p: np.ndarray) -> np.ndarray:
    """-sum_c p_c ln p_c over axis 0, with 0 ln 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(np.where(p > 0, p * np.log(safe), 0.0), axis=0)


def reference_mutual_information(folds: np.ndarray) -> np.ndarray:
    """float64 (Z, Y, X): H[mean_m p_m] - mean_m H[p_m], clipped at 0."""
    p = np.asarray(folds, dtype=np.float64)
    mi = entropy(p.mean(axis=0)) - np.mean([entropy(f) for f in p], axis=0)
    return np.maximum(mi, 0.0)


# ------------------------------------------------------------------------------------------
# Schedule, budget split, caps, strata order (DESIGN steps 5-7)
# ------------------------------------------------------------------------------------------


def beta_at(loop: int, n_loops: int, beta0: float = 1.0, beta_max: float = 100.0) -> float:
    if loop <= n_loops - 2:
        return beta0 * (beta_max / beta0) ** (loop / (n_loops - 1))
    return beta_max


def floor_times(alpha: float, value: int | Decimal) -> int:
    return int((Decimal(repr(alpha)) * Decimal(value)).to_integral_value(rounding="ROUND_FLOOR"))


def split_quotas(
    n: int, alpha: float, n_fg: int, *, seed: int, loop: int, shuffle: bool
) -> dict[int, int]:
    fg_total = floor_times(alpha, n)
    quotas = {c: fg_total // n_fg for c in range(1, n_fg + 1)}
    remainder = fg_total - n_fg * (fg_total // n_fg)
    classes = list(range(1, n_fg + 1))
    if shuffle:
        draws = _clasp_rs.gumbel(
            seed,
            _clasp_rs.stream_id("", loop, CODE_REMAINDER),
            np.arange(n_fg, dtype=np.uint64),
        )
        classes = sorted(classes, key=lambda c: (-draws[c - 1], c))
    for c in classes[:remainder]:
        quotas[c] += 1
    quotas[-1] = n - fg_total
    return quotas


def volume_caps(m: int, alpha: float, n_fg: int) -> dict[int, int]:
    a = Decimal(repr(alpha))
    fg = max(int((Decimal(m) * a / Decimal(n_fg + 1)).to_integral_value("ROUND_FLOOR")), 1)
    bg = max(int((Decimal(m) * (1 - a)).to_integral_value("ROUND_FLOOR")), 1)
    caps = {c: fg for c in range(1, n_fg + 1)}
    caps[-1] = bg
    return caps


def strata_order(case: str, n_fg: int, *, seed: int, loop: int, shuffle: bool) -> list[int]:
    strata = list(range(1, n_fg + 1)) + [-1]
    if not shuffle:
        return strata
    draws = _clasp_rs.gumbel(
        seed,
        _clasp_rs.stream_id(case, loop, CODE_STRATA_ORDER),
        np.arange(len(strata), dtype=np.uint64),
    )
    positions = sorted(range(len(strata)), key=lambda i: (-draws[i], i))
    return [strata[i] for i in positions]


# ------------------------------------------------------------------------------------------
# Candidates and greedy selection (DESIGN steps 4-5, 7)
# ------------------------------------------------------------------------------------------


def overlaps(a: Sequence[int], b: Sequence[int]) -> bool:
    return all(a[i] < b[i] + b[i + 3] and b[i] < a[i] + a[i + 3] for i in range(3))


def candidates(
    volume: np.ndarray,
    patch_size: Sequence[int],
    stride: Sequence[int],
    *,
    case: str,
    case_rank: int,
    noise: tuple[float, int, int] | None,
) -> list[Candidate]:
    """Every candidate of a (Z, Y, X) map, in C-order of the stride grid.

    ``noise`` is ``(beta, seed, stream)`` or None (rank by the mean).
    """
    values = np.asarray(volume, dtype=np.float64)
    size = [min(int(p), int(s)) for p, s in zip(patch_size, values.shape, strict=True)]
    starts = [
        range(0, s - p + 1, int(st)) for s, p, st in zip(values.shape, size, stride, strict=True)
    ]
    voxels = size[0] * size[1] * size[2]
    out = []
    index = 0
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                block = values[z : z + size[0], y : y + size[1], x : x + size[2]]
                mean = float(np.sum(block, dtype=np.float64)) / voxels
                if noise is None:
                    key = mean
                elif mean <= 0.0:
                    key = -math.inf
                else:
                    beta, seed, stream = noise
                    g = float(_clasp_rs.gumbel(seed, stream, np.array([index], np.uint64))[0])
                    key = math.log(mean) + g / beta
                out.append(Candidate(case, case_rank, index, (z, y, x, *size), mean, key))
                index += 1
    return out


def greedy(ordered: Sequence[Candidate], blockers: list[Box], quota: int | None) -> list[Candidate]:
    """Take candidates in the given order unless they overlap a blocker or an earlier take.

    Taken boxes are appended to ``blockers``. ``quota`` None means no limit.
    """
    taken: list[Candidate] = []
    for cand in ordered:
        if quota is not None and len(taken) >= quota:
            break
        if any(overlaps(cand.box, b) for b in blockers):
            continue
        taken.append(cand)
        blockers.append(cand.box)
    return taken


def _score(cand: Candidate, noised: bool) -> float:
    if noised:
        return cand.key
    return math.log(cand.mean) if cand.mean > 0 else -math.inf


def _boxes(annotated: Mapping[str, Sequence[object]] | None, case: str) -> list[Box]:
    out: list[Box] = []
    for p in (annotated or {}).get(case, []):
        if hasattr(p, "coords"):
            out.append((*p.coords, *p.size))  # type: ignore[attr-defined]
        else:
            out.append(tuple(int(v) for v in p))  # type: ignore[attr-defined]
    return out


# ------------------------------------------------------------------------------------------
# ClaSP PE (DESIGN steps 6-8)
# ------------------------------------------------------------------------------------------


def reference_clasp(
    maps: Mapping[str, np.ndarray],
    n: int,
    loop: int,
    patch_size: Sequence[int],
    *,
    stride: Sequence[int] = (1, 1, 1),
    per_volume: int | None = None,
    annotated: Mapping[str, Sequence[object]] | None = None,
    alpha: float = 0.66,
    beta0: float = 1.0,
    beta_max: float = 100.0,
    n_loops: int = 5,
    seed: int = 0,
    noise: bool = True,
    shuffle_strata: bool = True,
    constant_beta: float | None = None,
) -> RefResult:
    """ClaSP PE on score maps ``case -> (F + 1, Z, Y, X)`` (u_1 .. u_F, then u).

    ``constant_beta`` replaces the schedule (ClaP PE: 1.0).
    """
    cases = sorted(maps)
    n_fg = next(iter(maps.values())).shape[0] - 1 if maps else 0
    stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    beta = None
    if noise:
        beta = (
            constant_beta if constant_beta is not None else beta_at(loop, n_loops, beta0, beta_max)
        )
    quotas = split_quotas(n, alpha, n_fg, seed=seed, loop=loop, shuffle=shuffle_strata)
    caps = volume_caps(per_volume if per_volume is not None else n, alpha, n_fg)
    if n == 0 or not cases:
        return RefResult([], beta, quotas, 0, n)

    def map_index(stratum: int) -> int:
        return n_fg if stratum == -1 else stratum - 1

    all_candidates: dict[tuple[str, int], list[Candidate]] = {}
    for rank, case in enumerate(cases):
        for stratum in [*range(1, n_fg + 1), -1]:
            stream = _clasp_rs.stream_id(case, loop, stratum)
            cands = candidates(
                maps[case][map_index(stratum)],
                patch_size,
                stride,
                case=case,
                case_rank=rank,
                noise=None if beta is None else (beta, seed, stream),
            )
            all_candidates[case, stratum] = sorted(cands, key=Candidate.order)

    # Step 7: per volume, strata in order, caps, no overlaps within the volume.
    per_volume_taken: dict[tuple[str, int], list[Candidate]] = {}
    for case in cases:
        blockers = _boxes(annotated, case)
        for stratum in strata_order(case, n_fg, seed=seed, loop=loop, shuffle=shuffle_strata):
            per_volume_taken[case, stratum] = greedy(
                all_candidates[case, stratum], blockers, caps[stratum]
            )

    # Step 8: merge across volumes, cut to quotas (cut patches are released).
    final: dict[int, list[Candidate]] = {}
    released: list[tuple[str, Box]] = []
    for stratum in [*range(1, n_fg + 1), -1]:
        pool = sorted(
            (c for case in cases for c in per_volume_taken[case, stratum]), key=Candidate.order
        )
        final[stratum] = pool[: quotas[stratum]]
        released += [(c.case, c.box) for c in pool[quotas[stratum] :]]
    shortfall = sum(quotas[s] - len(final[s]) for s in final)

    fill: list[Candidate] = []
    if shortfall > 0:
        in_volume: dict[str, list[Box]] = {case: _boxes(annotated, case) for case in cases}
        for taken in final.values():
            for c in taken:
                in_volume[c.case].append(c.box)
        pool = sorted((c for case in cases for c in all_candidates[case, -1]), key=Candidate.order)
        for cand in pool:
            if len(fill) == shortfall:
                break
            if any(overlaps(cand.box, b) for b in in_volume[cand.case]):
                continue
            fill.append(cand)
            in_volume[cand.case].append(cand.box)
    final[-1] = sorted(final[-1] + fill, key=Candidate.order)

    patches = [
        RefPatch(c.case, c.box[:3], c.box[3:], _score(c, beta is not None), stratum)
        for stratum in [*range(1, n_fg + 1), -1]
        for c in final[stratum]
    ]
    return RefResult(
        patches,
        beta,
        quotas,
        shortfall,
        n - len(patches),
        released,
        [(c.case, c.box) for c in fill],
    )


# ------------------------------------------------------------------------------------------
# Single-map baselines: global greedy over all volumes
# ------------------------------------------------------------------------------------------


def reference_top_k(
    maps: Mapping[str, np.ndarray],
    n: int,
    loop: int,
    patch_size: Sequence[int],
    *,
    stride: Sequence[int] = (1, 1, 1),
    per_volume: int | None = None,
    annotated: Mapping[str, Sequence[object]] | None = None,
    beta: float | None = None,
    seed: int = 0,
    code: int = CODE_ENTROPY,
) -> list[RefPatch]:
    """Best ``n`` non-overlapping candidates of ``case -> (Z, Y, X)`` maps over all volumes,
    at most ``per_volume`` (default ``n``) per volume, best first. ``beta`` adds power
    sampling noise from stream code ``code``."""
    cases = sorted(maps)
    stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    cap = n if per_volume is None else per_volume
    pool: list[Candidate] = []
    for rank, case in enumerate(cases):
        stream = _clasp_rs.stream_id(case, loop, code)
        pool += candidates(
            maps[case],
            patch_size,
            stride,
            case=case,
            case_rank=rank,
            noise=None if beta is None else (beta, seed, stream),
        )
    return _global_greedy(pool, n, cap, annotated, cases, noised=beta is not None)


def _global_greedy(
    pool: list[Candidate],
    n: int,
    cap: int,
    annotated: Mapping[str, Sequence[object]] | None,
    cases: list[str],
    *,
    noised: bool,
) -> list[RefPatch]:
    blockers = {case: _boxes(annotated, case) for case in cases}
    count = dict.fromkeys(cases, 0)
    out: list[RefPatch] = []
    for cand in sorted(pool, key=Candidate.order):
        if len(out) == n:
            break
        if count[cand.case] >= cap or any(overlaps(cand.box, b) for b in blockers[cand.case]):
            continue
        blockers[cand.case].append(cand.box)
        count[cand.case] += 1
        out.append(RefPatch(cand.case, cand.box[:3], cand.box[3:], _score(cand, noised), None))
    return out


def reference_random(
    shapes: Mapping[str, Sequence[int]],
    n: int,
    loop: int,
    patch_size: Sequence[int],
    *,
    stride: Sequence[int] = (1, 1, 1),
    per_volume: int | None = None,
    annotated: Mapping[str, Sequence[object]] | None = None,
    seed: int = 0,
) -> list[RefPatch]:
    """Random: every candidate of every volume keyed by its own Gumbel draw (code -4)."""
    maps = {case: np.ones(tuple(shape)) for case, shape in shapes.items()}
    return reference_top_k(
        maps,
        n,
        loop,
        patch_size,
        stride=stride,
        per_volume=per_volume,
        annotated=annotated,
        beta=1.0,
        seed=seed,
        code=CODE_RANDOM,
    )


def reference_softrank(
    maps: Mapping[str, np.ndarray],
    n: int,
    loop: int,
    patch_size: Sequence[int],
    *,
    stride: Sequence[int] = (1, 1, 1),
    per_volume: int | None = None,
    annotated: Mapping[str, Sequence[object]] | None = None,
    beta: float = 1.0,
    seed: int = 0,
) -> list[RefPatch]:
    """SoftrankBALD: key ``-ln(rank) + g / beta``, rank 1 = best box mean over all volumes
    (float32 means, ties: earlier case, lower index), ``g`` from stream code -7."""
    cases = sorted(maps)
    stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    plain: list[Candidate] = []
    for rank, case in enumerate(cases):
        plain += candidates(maps[case], patch_size, stride, case=case, case_rank=rank, noise=None)
    ranked = sorted(plain, key=Candidate.order)
    pool = []
    for r, cand in enumerate(ranked, start=1):
        stream = _clasp_rs.stream_id(cand.case, loop, CODE_SOFTRANK)
        g = float(_clasp_rs.gumbel(seed, stream, np.array([cand.index], np.uint64))[0])
        key = -math.log(r) + g / beta
        pool.append(Candidate(cand.case, cand.case_rank, cand.index, cand.box, cand.mean, key))
    cap = n if per_volume is None else per_volume
    return _global_greedy(pool, n, cap, annotated, cases, noised=True)
