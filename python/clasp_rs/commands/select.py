"""``clasp-rs select``: the best non-overlapping patches of score volumes (.npy files).

Each file is one case, named by its stem (``scores/case_001.npy`` is case ``case_001``).
Patches listed in ``--annotated`` loop files apply to the case whose name matches their
``file`` without extension (``case_001.nii.gz`` and ``case_001.npy`` both name
``case_001``). With ``--out`` the selection is written as a loop file whose ``file`` fields
are the score files' names (``case_001.npy``).
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table

from clasp_rs import __version__
from clasp_rs.commands import add_stride_option, parse_stride
from clasp_rs.exceptions import InvalidScoresError
from clasp_rs.patches import Patch, case_id, read_loop_file, write_loop_file
from clasp_rs.selection import as_stride, select_across_volumes

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``select`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "select",
        help="select the best non-overlapping patches of score volumes (.npy)",
        description=(
            "Select the N best non-overlapping patches over score volumes (float16/32/64 "
            ".npy files in (Z, Y, X) order), ranked by box mean or, with --beta, by "
            "power sampling. Each file is one case, named by its stem."
        ),
    )
    parser.add_argument("scores", nargs="+", metavar="SCORES.npy", help="score volumes")
    parser.add_argument(
        "--patch-size",
        nargs=3,
        type=int,
        required=True,
        metavar=("Z", "Y", "X"),
        help="patch size in voxels (clipped to each volume)",
    )
    parser.add_argument("--n", type=int, required=True, help="number of patches in total")
    add_stride_option(parser)
    parser.add_argument(
        "--annotated",
        nargs="+",
        default=[],
        metavar="LOOP_JSON",
        help="loop files of patches already annotated (never overlapped)",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="power sampling: rank by ln(box mean) + Gumbel/BETA (default: box mean)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument(
        "--out",
        default=None,
        metavar="FILE.json",
        help="write the selection as a loop file (never overwrites)",
    )
    return parser


def _format_score(score: float | None) -> str:
    return "" if score is None else f"{score:.6g}"


def run(args: argparse.Namespace) -> int:
    """Select, print a table and a summary, and write ``--out`` when given."""
    stride = as_stride(parse_stride(args.stride))
    if args.out is not None and os.path.lexists(args.out):
        raise FileExistsError(
            17, "output loop file already exists; loop files are never overwritten", args.out
        )

    file_of_case: dict[str, str] = {}
    for path in args.scores:
        case = case_id(path)
        if case in file_of_case:
            raise InvalidScoresError(
                f"two score files name case {case!r}: {file_of_case[case]} and {path}"
            )
        file_of_case[case] = path

    annotated: dict[str, list[Patch]] = defaultdict(list)
    for loop_file in args.annotated:
        for patch in read_loop_file(loop_file):
            annotated[case_id(patch.file)].append(patch)
    unknown = sorted(case for case in annotated if case not in file_of_case)
    n_avoided = sum(len(v) for case, v in annotated.items() if case in file_of_case)

    patches = select_across_volumes(
        file_of_case,
        args.patch_size,
        args.n,
        stride=stride,
        annotated=annotated,
        beta=args.beta,
        seed=args.seed,
    )
    named = [
        Patch(os.path.basename(file_of_case[p.file]), p.coords, p.size, p.score, p.stratum)
        for p in patches
    ]

    # soft_wrap: summary lines hold paths that must stay intact when output is piped.
    console = Console(highlight=False, soft_wrap=True)
    table = Table(title="clasp-rs select")
    table.add_column("#", justify="right")
    table.add_column("file", overflow="fold")
    table.add_column("coords (z, y, x)", no_wrap=True)
    table.add_column("size", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    for i, p in enumerate(named, start=1):
        table.add_row(
            str(i),
            p.file,
            "({}, {}, {})".format(*p.coords),
            "{}×{}×{}".format(*p.size),
            _format_score(p.score),
        )
    console.print(table)

    ranking = "box mean" if args.beta is None else f"power sampling, beta {args.beta:g}"
    console.print(
        f"selected {len(named)} of {args.n} patches from {len(file_of_case)} volume(s) "
        f"(patch {'×'.join(map(str, args.patch_size))}, stride {'×'.join(map(str, stride))}, "
        f"{ranking}, seed {args.seed}; avoiding {n_avoided} annotated patch(es))"
    )
    if len(named) < args.n:
        console.print(f"only {len(named)} non-overlapping patches fit")
    if unknown:
        console.print(
            f"ignored annotated patches of {len(unknown)} case(s) without a score file: "
            + ", ".join(unknown)
        )
    if args.out is not None:
        meta = {
            "strategy": "select",
            "seed": args.seed,
            "beta": args.beta,
            "patch_size": list(args.patch_size),
            "stride": list(stride),
            "n": args.n,
            "version": __version__,
        }
        written = write_loop_file(args.out, named, meta=meta)
        console.print(f"wrote {written}")
    return 0
