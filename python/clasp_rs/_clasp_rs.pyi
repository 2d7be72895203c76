"""Type stub of the native engine module (Rust, PyO3). Kept honest by mypy.stubtest.

Only :mod:`clasp_rs._engine` imports this module. Array conventions: score volumes are
(Z, Y, X) float16/float32/float64 arrays in any memory layout, or paths of ``.npy`` files that
the engine memory-maps itself. Boxes are ``(z, y, x, dz, dy, dx)`` tuples of voxel starts and
sizes. Errors are ``clasp_rs.exceptions`` classes (``InvalidScoresError``,
``InvalidPatchError``, ``NpyFormatError``), ``FileNotFoundError``/``OSError`` for files, and
``KeyboardInterrupt`` when Ctrl-C cancels a call.
"""

from collections.abc import Sequence
from os import PathLike

import numpy as np
import numpy.typing as npt

__all__ = [
    "__version__",
    "box_means",
    "gumbel",
    "num_threads",
    "select_strata",
    "stream_id",
]

_ScoreSource = npt.NDArray[np.floating] | str | PathLike[str]
_Box = tuple[int, int, int, int, int, int]
_Triple = tuple[int, int, int]
# (start, size, index, mean, key): start (z, y, x), clipped size, C-order index of the
# candidate in the stride grid, exact box mean (float64) and the ranking key (the mean, or
# ln(mean) + Gumbel/beta under power sampling).
_Taken = tuple[_Triple, _Triple, int, float, float]
# (beta, seed, stream): power sampling with Gumbel(0, 1)/beta noise drawn from the
# counter-based generator keyed by (seed, stream, candidate index). None ranks by the mean.
_Noise = tuple[float, int, int] | None

__version__: str

def select_strata(
    volumes: Sequence[Sequence[_ScoreSource]],
    patch_size: tuple[int, int, int],
    stride: tuple[int, int, int],
    quotas: Sequence[Sequence[int]],
    noise: Sequence[Sequence[_Noise]],
    annotated: Sequence[Sequence[_Box]],
    names: Sequence[Sequence[str]] | None = None,
) -> list[list[list[_Taken]]]:
    """Greedy, overlap-free selection for several volumes, in parallel, GIL released.

    For volume ``v`` the maps ``volumes[v][k]`` are processed in the given order ``k``; map
    ``k`` takes up to ``quotas[v][k]`` candidates, best key first (ties: lower C-order
    candidate index first), skipping every candidate that overlaps ``annotated[v]`` or a patch
    already taken for volume ``v`` by this call (any map). All maps of a volume share its
    shape. Error messages name an array map ``names[v][k]`` (default ``volumes[v][k]``) and
    a ``.npy`` map by its path. Returns ``result[v][k]`` = the patches taken for map ``k``,
    in the order taken.
    """

def box_means(
    scores: _ScoreSource,
    patch_size: tuple[int, int, int],
    stride: tuple[int, int, int],
) -> npt.NDArray[np.float64]:
    """Box mean of every candidate, float64 (nz, ny, nx) over the stride grid."""

def stream_id(case: str, loop: int, stratum: int) -> int:
    """Stable 64-bit noise stream key for (case, loop, stratum)."""

def gumbel(seed: int, stream: int, indices: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    """Gumbel(0, 1) draws of the counter-based generator for the given candidate indices."""

def num_threads() -> int:
    """Threads in the engine's pool (``CLASP_RS_NUM_THREADS``, default: all cores)."""
