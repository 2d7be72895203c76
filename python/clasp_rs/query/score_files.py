"""Selection over ``.npy`` score volumes you computed yourself (``clasp-rs select``'s library
side): each file is one case, named by its stem; patches of annotated loop files apply to the
case of the same name; the patches name the score files.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clasp_rs._engine import __version__
from clasp_rs.exceptions import InvalidScoresError
from clasp_rs.patches import Patch, case_id, read_loop_file, write_loop_file
from clasp_rs.selection import as_stride, select_across_volumes

__all__ = ["ScoreFileSelection", "select_score_files"]


@dataclass(frozen=True)
class ScoreFileSelection:
    """What :func:`select_score_files` selected.

    Attributes:
        patches: best first; ``Patch.file`` is the score file's name (``case_001.npy``).
        files: case -> score file path, in the order given.
        avoided: annotated patches that applied to a score file's case.
        ignored: cases of annotated patches without a score file, sorted.
        meta: the loop file's ``meta`` (strategy ``select``, seed, beta, patch size, stride,
            n, version).
        written: the loop file written, or None.
    """

    patches: list[Patch]
    files: dict[str, str]
    avoided: int
    ignored: list[str]
    meta: dict[str, Any]
    written: Path | None


def select_score_files(
    scores: Sequence[str],
    patch_size: Sequence[int],
    n: int,
    *,
    stride: int | Sequence[int] = 1,
    annotated: Sequence[str | os.PathLike[str]] = (),
    beta: float | None = None,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
) -> ScoreFileSelection:
    """The best ``n`` patches over the score files ``scores`` (see
    :func:`clasp_rs.select_across_volumes`), written to ``out`` as a loop file when given.

    Raises:
        FileExistsError: ``out`` exists (loop files are never overwritten).
        InvalidScoresError: two files name the same case; as the selection raises.
        LoopFileError: an annotated loop file is bad.
    """
    step = as_stride(stride)
    if out is not None and os.path.lexists(out):
        raise FileExistsError(
            17, "output loop file already exists; loop files are never overwritten", str(out)
        )
    files: dict[str, str] = {}
    for path in scores:
        case = case_id(path)
        if case in files:
            raise InvalidScoresError(
                f"two score files name case {case!r}: {files[case]} and {path}"
            )
        files[case] = path
    by_case: dict[str, list[Patch]] = defaultdict(list)
    for loop_file in annotated:
        for patch in read_loop_file(loop_file):
            by_case[case_id(patch.file)].append(patch)
    # Loop files may list other cases: those are reported (ignored), not an error.
    patches = select_across_volumes(
        files,
        patch_size,
        n,
        stride=step,
        annotated={case: v for case, v in by_case.items() if case in files},
        beta=beta,
        seed=seed,
    )
    named = [
        Patch(os.path.basename(files[p.file]), p.coords, p.size, p.score, p.stratum)
        for p in patches
    ]
    meta = {
        "strategy": "select",
        "seed": seed,
        "beta": beta,
        "patch_size": list(patch_size),
        "stride": list(step),
        "n": n,
        "version": __version__,
    }
    written = None if out is None else write_loop_file(out, named, meta=meta)
    return ScoreFileSelection(
        patches=named,
        files=files,
        avoided=sum(len(v) for case, v in by_case.items() if case in files),
        ignored=sorted(case for case in by_case if case not in files),
        meta=meta,
        written=written,
    )
