"""Noise streams of the strategies: every random choice is a counter-based draw.

A draw is ``gumbel(seed, stream_id(case, loop, code), index)`` from the native engine: a pure
function of the seed, the case name, the AL loop, a stream code and a counter, so a query
does not depend on the order volumes arrive in, on thread counts or on sharding. No global
RNG state is used anywhere.

Stream codes (the third argument of ``stream_id``):

==========================  ======  =======================================================
what                        code    counter
==========================  ======  =======================================================
noise of class map ``u_c``  ``c``   candidate index (C-order over the stride grid)
noise of the entropy ``u``  ``-1``  candidate index
strata order of a volume    ``-2``  position in the strata list ``[1, .., F, -1]``
quota remainder             ``-3``  class ``c - 1``; case ``""``
random candidates           ``-4``  candidate index
mutual-information noise    ``-5``  candidate index
random-FG class choice      ``-6``  ``attempt * F + (c - 1)``; case ``""``
SoftrankBALD noise          ``-7``  candidate index
random-FG voxels of ``c``   ``-(1000 + c)``  flat voxel index (C-order over (Z, Y, X))
start: voxels of label l    ``-(2000 + l)``  flat voxel index
start: case of label l      ``-(3000 + l)``  0
==========================  ======  =======================================================

The starting budget's Random 33 % FG part uses the random-FG and random codes minus 10000
(``-10004``, ``-10006``, ``-(11000 + c)``), so that it never repeats the draws of a
``random-fg33`` query of the same loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from clasp_rs import _engine

__all__ = [
    "CODE_ENTROPY",
    "CODE_FG_CLASS",
    "CODE_MUTUAL_INFORMATION",
    "CODE_RANDOM",
    "CODE_REMAINDER",
    "CODE_SOFTRANK",
    "CODE_STRATA_ORDER",
    "START_OFFSET",
    "code_fg_voxels",
    "code_start_case",
    "code_start_voxels",
    "draws",
    "order_by_draws",
    "stream",
]

CODE_ENTROPY = -1
CODE_STRATA_ORDER = -2
CODE_REMAINDER = -3
CODE_RANDOM = -4
CODE_MUTUAL_INFORMATION = -5
CODE_FG_CLASS = -6
CODE_SOFTRANK = -7
START_OFFSET = -10000


def code_fg_voxels(label: int) -> int:
    """Stream code of the random-FG voxel draws of class ``label``."""
    return -(1000 + label)


def code_start_voxels(label: int) -> int:
    """Stream code of the starting budget's voxel draws of ``label``."""
    return -(2000 + label)


def code_start_case(label: int) -> int:
    """Stream code of the starting budget's case draws for ``label``."""
    return -(3000 + label)


def stream(case: str, loop: int, code: int) -> int:
    """The 64-bit stream key of ``(case, loop, code)``."""
    return _engine.stream_id(case, loop, code)


def draws(seed: int, case: str, loop: int, code: int, counters: npt.ArrayLike) -> np.ndarray:
    """float64 Gumbel(0, 1) draws for ``counters`` (any shape of non-negative integers)."""
    return _engine.gumbel(seed, stream(case, loop, code), counters)


def order_by_draws(items: Sequence[int], seed: int, case: str, loop: int, code: int) -> list[int]:
    """``items`` in a seeded random order: position ``i`` draws counter ``i``, higher first
    (equal draws: lower position first)."""
    g = draws(seed, case, loop, code, np.arange(len(items)))
    positions = sorted(range(len(items)), key=lambda i: (-g[i], i))
    return [items[i] for i in positions]
