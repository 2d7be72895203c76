"""The ``annotated`` argument, read the same way by every query function.

Two forms are accepted wherever several volumes are queried at once
(:func:`~clasp_rs.select_across_volumes`, :meth:`ClaspPE.query
<clasp_rs.strategies.Strategy.query>`, :func:`~clasp_rs.query_patches`):

* a dict volume name -> patches (:class:`~clasp_rs.Patch` objects or
  ``(z, y, x, dz, dy, dx)`` tuples); the key names the volume, the patches' ``file`` is not
  looked at;
* a flat list of :class:`~clasp_rs.Patch` whose ``file`` names the volume (a loop file's
  patches, or an earlier query's result).

Names are matched through :func:`~clasp_rs.case_id`: ``"case_000"``, ``"case_000.nii.gz"``
and ``"case_000.npy"`` are one case. A key or ``Patch.file`` that names no volume of the
query is an error naming it: an annotation that is silently dropped would let the query
return patches overlapping what is already annotated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from clasp_rs._messages import shown
from clasp_rs.exceptions import InvalidPatchError, InvalidScoresError
from clasp_rs.patches import Patch, case_id

__all__ = ["match_annotated", "volume_ids"]


def volume_ids(names: Iterable[Any]) -> dict[str, str]:
    """``case_id(name) -> name`` of every volume name.

    Raises:
        InvalidScoresError: a name is not a string, or two names are the same case.
    """
    by_id: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str):
            raise InvalidScoresError(f"volume names must be strings (case names), got {name!r}")
        other = by_id.setdefault(case_id(name), name)
        if other != name:
            raise InvalidScoresError(
                f"volumes {other!r} and {name!r} are the same case {case_id(name)!r}"
            )
    return by_id


def _listing(by_id: Mapping[str, str], limit: int = 8) -> str:
    names = sorted(by_id.values())
    if not names:
        return "the query has no volumes"
    shown = ", ".join(repr(n) for n in names[:limit])
    return "volumes: " + shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def match_annotated(annotated: Any, names: Iterable[str]) -> dict[str, list[Any]]:
    """The annotated patches of each volume, keyed by the volume's own name.

    Args:
        annotated: None, a dict name -> patches (``Patch`` or 6-tuples), or a flat list of
            ``Patch`` whose ``file`` names the volume (see the module docstring).
        names: the volume names of the query.

    Returns:
        volume name -> the items given for it (unchecked ``Patch`` objects or tuples; the
        caller converts them to boxes). Volumes without annotations are absent.

    Raises:
        InvalidPatchError: a key or ``Patch.file`` names no volume, a flat list holds
            something other than ``Patch`` objects, or ``annotated`` is of another type.
        InvalidScoresError: two volume names are the same case.
    """
    by_id = volume_ids(names)
    if annotated is None:
        return {}
    out: dict[str, list[Any]] = {}
    if isinstance(annotated, Mapping):
        for key, items in annotated.items():
            if not isinstance(key, (str, os.PathLike)):
                raise InvalidPatchError(
                    f"annotated keys must be volume names (str), got {shown(key)}"
                )
            target = by_id.get(case_id(key))
            if target is None:
                raise InvalidPatchError(
                    f"annotated key {os.fspath(key)!r} names no volume of the query (case "
                    f"{case_id(key)!r}; {_listing(by_id)})"
                )
            if isinstance(items, (Patch, str, bytes)) or not isinstance(items, Iterable):
                raise InvalidPatchError(
                    f"annotated[{os.fspath(key)!r}] must be a list of clasp_rs.Patch or "
                    f"(z, y, x, dz, dy, dx) tuples, got {type(items).__name__}"
                )
            out.setdefault(target, []).extend(items)
        return out
    if isinstance(annotated, (Patch, str, bytes)) or not isinstance(annotated, Iterable):
        raise InvalidPatchError(
            "annotated must be a dict volume name -> patches or a list of clasp_rs.Patch, got "
            f"{type(annotated).__name__}"
        )
    for item in annotated:
        if not isinstance(item, Patch):
            raise InvalidPatchError(
                "a flat annotated list must hold clasp_rs.Patch objects, whose file names the "
                f"volume; got {shown(item)} (give boxes as a dict volume name -> boxes)"
            )
        target = by_id.get(item.case)
        if target is None:
            raise InvalidPatchError(
                f"annotated patch {item.coords}+{item.size} of {item.file!r} names no volume of "
                f"the query (case {item.case!r}; {_listing(by_id)})"
            )
        out.setdefault(target, []).append(item)
    return out
