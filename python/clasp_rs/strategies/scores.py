"""From probabilities to the score maps strategies rank by (through :mod:`clasp_rs.uncertainty`).

Small inputs keep the maps in memory as float32 arrays; with a ``workdir`` each map is
written as a ``.npy`` file there (named by :func:`clasp_rs.uncertainty.score_volume_names`,
``<case>_mi.npy`` for mutual information) and handed to the engine as a path, so that only
one case's maps are ever held in memory.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs.exceptions import InvalidProbabilitiesError
from clasp_rs.strategies.types import MAP_NEEDS, ScoreSet

__all__ = ["compute_score_sets", "score_set_for_case", "source_shape"]


def _check_case(case: Any) -> str:
    if not isinstance(case, str) or not case or "/" in case or "\\" in case or case in (".", ".."):
        raise ValueError(
            f"case names must be non-empty strings without path separators, got {case!r}"
        )
    return case


def _npy_header_shape(handle: Any, label: str) -> tuple[int, ...]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(handle)
    except ValueError as err:
        raise InvalidProbabilitiesError(f"{label}: not a readable .npy array: {err}") from err
    return tuple(int(s) for s in shape)


def source_shape(source: Any) -> tuple[int, ...]:
    """Shape of probabilities without reading them: an array or tensor, a ``.npy`` path, an
    nnU-Net ``.npz`` path (key ``probabilities``), or a list of folds (the first one's)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"probability file not found: {path}")
        if path.suffix.lower() == ".npz":
            try:
                with zipfile.ZipFile(path) as archive, archive.open("probabilities.npy") as f:
                    return _npy_header_shape(f, str(path))
            except KeyError:
                raise InvalidProbabilitiesError(
                    f"{path} has no array 'probabilities'; expected an nnU-Net export "
                    "(--save_probabilities) of shape (C, Z, Y, X)"
                ) from None
            except zipfile.BadZipFile as err:
                raise InvalidProbabilitiesError(f"{path} is not a readable .npz: {err}") from err
        with open(path, "rb") as f:
            return _npy_header_shape(f, str(path))
    if hasattr(source, "shape"):
        return tuple(int(s) for s in source.shape)
    if isinstance(source, Iterable) and not isinstance(source, (str, bytes)):
        items = list(source)
        if not items:
            raise InvalidProbabilitiesError("an empty list of folds")
        return source_shape(items[0])
    raise TypeError(
        f"expected probabilities as an array, tensor, path or list of folds, got "
        f"{type(source).__name__}"
    )


def score_set_for_case(
    case: str,
    source: Any,
    needs: frozenset[str],
    *,
    device: str = "auto",
    workdir: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
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
    maps = uncertainty.compute_case_maps(source, device=device, with_mutual_information=with_mi)
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
) -> dict[str, ScoreSet]:
    """:func:`score_set_for_case` for every case, in sorted case order.

    ``on_case(case)`` is called after each case (progress reporting).
    """
    out: dict[str, ScoreSet] = {}
    for case in sorted(volumes, key=str):
        out[case] = score_set_for_case(
            case, volumes[case], needs, device=device, workdir=workdir, dtype=dtype
        )
        if on_case is not None:
            on_case(case)
    return out
