"""Subcommands of the ``clasp-rs`` console script, one module each.

Every command module exposes ``add_parser(subparsers) -> argparse.ArgumentParser`` (which
registers the subcommand and its options) and ``run(args: argparse.Namespace) -> int``
(which does the work and returns the exit status). :mod:`clasp_rs.cli` lists the modules.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from clasp_rs.exceptions import InvalidPatchError

__all__ = ["add_stride_option", "parse_stride", "parse_triple"]


def add_stride_option(parser: argparse.ArgumentParser) -> None:
    """``--stride S`` or ``--stride Z Y X`` (default 1), as ``select`` and ``query`` take it."""
    parser.add_argument(
        "--stride",
        nargs="+",
        type=int,
        default=[1],
        metavar="S",
        help="candidate grid step: one value or Z Y X (default 1)",
    )


def parse_triple(values: Sequence[int], option: str, *, allow_one: bool) -> tuple[int, int, int]:
    """(z, y, x) from an option's 3 values (or 1, repeated, when ``allow_one``).

    Raises:
        InvalidPatchError: a wrong number of values, or a value below 1.
    """
    if len(values) == 3 or (allow_one and len(values) == 1):
        items = [int(v) for v in values] * (3 if len(values) == 1 else 1)
        if min(items) < 1:
            raise InvalidPatchError(f"{option} must be positive on every axis, got {list(values)}")
        return items[0], items[1], items[2]
    expected = "1 or 3 integers (Z Y X)" if allow_one else "3 integers (Z Y X)"
    raise InvalidPatchError(f"{option} takes {expected}, got {len(values)}: {list(values)}")


def parse_stride(values: Sequence[int]) -> tuple[int, int, int]:
    """The (z, y, x) stride of ``--stride`` values (see :func:`parse_triple`)."""
    return parse_triple(values, "--stride", allow_one=True)
