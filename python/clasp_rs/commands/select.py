"""``clasp-rs select``: the best non-overlapping patches of score volumes (.npy files).

Each file is one case, named by its stem (``scores/case_001.npy`` is case ``case_001``).
Patches listed in ``--annotated`` loop files apply to the case whose name matches their
``file`` without extension (``case_001.nii.gz`` and ``case_001.npy`` both name
``case_001``). With ``--out`` the selection is written as a loop file whose ``file`` fields
are the score files' names (``case_001.npy``).
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from clasp_rs.commands import add_stride_option, parse_stride
from clasp_rs.query.score_files import select_score_files

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
    stride = parse_stride(args.stride)
    selected = select_score_files(
        args.scores,
        args.patch_size,
        args.n,
        stride=stride,
        annotated=args.annotated,
        beta=args.beta,
        seed=args.seed,
        out=args.out,
    )
    named = selected.patches

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
        f"selected {len(named)} of {args.n} patches from {len(selected.files)} volume(s) "
        f"(patch {'×'.join(map(str, args.patch_size))}, stride {'×'.join(map(str, stride))}, "
        f"{ranking}, seed {args.seed}; avoiding {selected.avoided} annotated patch(es))"
    )
    if len(named) < args.n:
        console.print(f"only {len(named)} non-overlapping patches fit")
    if selected.ignored:
        console.print(
            f"ignored annotated patches of {len(selected.ignored)} case(s) without a score "
            "file: " + ", ".join(selected.ignored)
        )
    if selected.written is not None:
        console.print(f"wrote {selected.written}")
    return 0
