"""From probabilities to the score maps strategies rank by (through :mod:`clasp_rs.uncertainty`).

Small inputs keep the maps in memory as float32 arrays; with a ``workdir`` each map is
written as a ``.npy`` file there (named by :func:`clasp_rs.uncertainty.score_volume_names`,
``<case>_mi.npy`` for mutual information) and handed to the engine as a path, so that only
one case's maps are ever held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clasp_rs.arrays import layout_hint
from clasp_rs.exceptions import InvalidArgumentError, InvalidProbabilitiesError
from clasp_rs.io.probabilities import source_shape
from clasp_rs.strategies.types import MAP_NEEDS, ScoreSet

__all__ = ["compute_score_sets", "score_set_for_case", "score_set_from_maps"]


def _check_case(case: Any) -> str:
    if not isinstance(case, str) or not case or "/" in case or "\\" in case or case in (".", ".."):
        raise InvalidArgumentError(
            f"case names must be non-empty strings without path separators, got {case!r}"
        )
    return case


def score_set_for_case(
    case: str,
    source: Any,
    needs: frozenset[str],
    *,
    device: str = "auto",
    workdir: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    logits: bool = False,
) -> ScoreSet:
    """The maps of one case that a strategy needing ``needs`` ranks by.

    Args:
        case: case name (names the files in ``workdir``).
        source: probabilities, as for :func:`clasp_rs.uncertainty.compute_case_maps`.
        needs: ``"classes"`` (``u_c`` and ``u``), ``"entropy"``, ``"mutual_information"``,
            ``"shape"``.
        device: compute device of the maps.
        workdir: write the maps there (``.npy``) and return their paths.
        dtype: ``.npy`` dtype in ``workdir``, ``"float32"`` or ``"float16"``.
        logits: ``source`` holds logits (softmax over C per fold).

    Raises:
        InvalidProbabilitiesError: bad probabilities; the message names the case, and the
            axis that looks wrong when the classes seem to be on another axis.
    """
    case = _check_case(case)
    if not needs & MAP_NEEDS:
        shape = source_shape(source)
        if len(shape) not in (4, 5):
            raise InvalidProbabilitiesError(
                f"case {case!r}: expected probabilities (C, Z, Y, X) or (M, C, Z, Y, X), got "
                f"shape {shape}"
            )
        z, y, x = shape[-3:]
        return ScoreSet((z, y, x))

    from clasp_rs import uncertainty

    with_mi = "mutual_information" in needs
    try:
        maps = uncertainty.compute_case_maps(
            source, device=device, with_mutual_information=with_mi, logits=logits
        )
    except InvalidProbabilitiesError as err:
        hint = "" if logits else layout_hint(source)
        raise InvalidProbabilitiesError(
            f"case {case!r}: " + (f"{hint} ({err})" if hint else str(err))
        ) from None
    return score_set_from_maps(case, maps, needs, workdir=workdir, dtype=dtype)


def score_set_from_maps(
    case: str,
    maps: Any,
    needs: frozenset[str],
    *,
    workdir: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
) -> ScoreSet:
    """The :class:`ScoreSet` of one case from its computed maps.

    Args:
        case: case name (names the files in ``workdir``).
        maps: the case's :class:`clasp_rs.uncertainty.CaseMaps` (on the CPU).
        needs: as for :func:`score_set_for_case`.
        workdir: write the maps there (``.npy``, named by
            :func:`clasp_rs.uncertainty.score_volume_names`, ``<case>_mi.npy``) and return
            their paths; None keeps them in memory.
        dtype: ``.npy`` dtype in ``workdir``, ``"float32"`` or ``"float16"``.
    """
    from clasp_rs import uncertainty

    case = _check_case(case)
    with_mi = "mutual_information" in needs
    scores = maps.scores
    shape = (int(scores.shape[1]), int(scores.shape[2]), int(scores.shape[3]))
    classes: tuple[Any, ...] = ()
    entropy: Any = None
    mi: Any = None
    if workdir is None:
        if "classes" in needs:
            classes = tuple(scores[k] for k in range(scores.shape[0] - 1))
        if needs & {"classes", "entropy"}:
            entropy = scores[-1] if "classes" in needs else scores[-1].copy()
        mi = maps.mutual_information if with_mi else None
        return ScoreSet(shape, classes, entropy, mi)

    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    names = uncertainty.score_volume_names(case, scores.shape[0])
    if "classes" in needs:
        paths = uncertainty.write_score_volumes(scores, folder, case, dtype)  # type: ignore[arg-type]
        classes = tuple(str(p) for p in paths[:-1])
        entropy = str(paths[-1])
    elif "entropy" in needs:
        entropy = str(uncertainty.write_score_volume(scores[-1], folder / names[-1], dtype))
    if with_mi:
        assert maps.mutual_information is not None
        mi = str(
            uncertainty.write_score_volume(
                maps.mutual_information, folder / f"{case}_mi.npy", dtype
            )
        )
    return ScoreSet(shape, classes, entropy, mi)


def compute_score_sets(
    volumes: Mapping[str, Any],
    needs: frozenset[str],
    *,
    device: str = "auto",
    workdir: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    on_case: Callable[[str], None] | None = None,
    logits: bool = False,
) -> dict[str, ScoreSet]:
    """:func:`score_set_for_case` for every case, in sorted case order.

    ``on_case(case)`` is called after each case (progress reporting).
    """
    out: dict[str, ScoreSet] = {}
    for case in sorted(volumes, key=str):
        out[case] = score_set_for_case(
            case, volumes[case], needs, device=device, workdir=workdir, dtype=dtype, logits=logits
        )
        if on_case is not None:
            on_case(case)
    return out
