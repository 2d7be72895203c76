"""``clasp-rs query``: query patches from nnU-Net probability exports with a strategy.

Parses the options and calls :mod:`clasp_rs.query`, which checks everything cheap before any
map is computed (options, the dataset.json labels, the export folder, the loop files of
``--annotated``, that ``--out`` does not exist) and writes nothing on error; then prints the
patches per case and stratum and the time per stage.

With ``--num-parts K --part-id i`` only every K-th case (sorted order, starting at i) is
processed and ``--out`` receives a part file; ``clasp-rs merge`` turns the K parts into the
loop file a single run would have written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from clasp_rs.commands import add_stride_option, parse_stride, parse_triple
from clasp_rs.devices import MAPS_ON_CPU
from clasp_rs.patches import Patch
from clasp_rs.query import Stages, open_export_query, run_export_part, run_export_query
from clasp_rs.selection import as_stride
from clasp_rs.strategies import STRATEGIES, get_strategy
from clasp_rs.strategies.base import Strategy
from clasp_rs.strategies.random_fg import RandomFG
from clasp_rs.summary import MapsProgressBar, print_summary

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``query`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "query",
        help="query patches to annotate from nnU-Net probability exports",
        description=(
            "Query N patches to annotate next from nnU-Net probability exports: a folder of "
            "<case>.npz (key 'probabilities', (C, Z, Y, X)) or of fold_K/ sub-folders of them."
        ),
    )
    parser.add_argument("probabilities", metavar="PROB_DIR", help="probability export folder")
    parser.add_argument(
        "--dataset-json", required=True, metavar="FILE", help="the nnU-Net dataset.json"
    )
    parser.add_argument(
        "--strategy",
        default="clasp-pe",
        metavar="NAME",
        help=f"query strategy (default clasp-pe): {', '.join(STRATEGIES)}",
    )
    parser.add_argument("--n", type=int, required=True, help="number of patches to query")
    parser.add_argument(
        "--loop", type=int, required=True, help="training loop the query follows (0, 1, ...)"
    )
    parser.add_argument(
        "--n-loops", type=int, default=5, help="AL loops of the beta schedule (default 5)"
    )
    parser.add_argument(
        "--patch-size",
        nargs="+",
        type=int,
        required=True,
        metavar="N",
        help="patch size Z Y X in voxels (clipped to each volume)",
    )
    add_stride_option(parser)
    parser.add_argument(
        "--per-volume",
        type=int,
        default=None,
        metavar="M",
        help="m of the per-volume caps (default: --n)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every draw (default 0)")
    parser.add_argument(
        "--annotated",
        nargs="+",
        default=[],
        metavar="LOOP_JSON",
        help="loop files of patches already annotated (never overlapped)",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="loop file to write (a part file with --num-parts); never overwritten",
    )
    parser.add_argument(
        "--device", default="auto", help="where maps are computed: auto, cpu or cuda"
    )
    parser.add_argument(
        "--workdir",
        default=None,
        metavar="DIR",
        help="folder for the memory-mapped score maps (kept); default: a temporary folder",
    )
    parser.add_argument(
        "--num-parts", type=int, default=1, metavar="K", help="split the cases into K parts"
    )
    parser.add_argument(
        "--part-id", type=int, default=0, metavar="I", help="the part to process (0 .. K-1)"
    )
    return parser


def _check_options(strategy: Strategy | RandomFG, num_parts: int, part_id: int) -> Strategy:
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(
            f"--part-id must be in 0 .. --num-parts - 1 with --num-parts >= 1, got part "
            f"{part_id} of {num_parts}"
        )
    if strategy.needs_labels:
        raise ValueError(
            f"strategy {strategy.name} centres patches on ground-truth foreground voxels and "
            "needs the labels (simulation only): use it from the nnU-Net loop "
            "(clasp-rs run --simulate) or clasp_rs.strategies"
        )
    assert isinstance(strategy, Strategy)  # only Random FG needs labels
    if num_parts > 1 and not strategy.shardable:
        raise ValueError(f"strategy {strategy.name} cannot be split into parts (--num-parts)")
    return strategy


def run(args: argparse.Namespace) -> int:
    """Parse, check everything cheap, compute the maps, select, write, summarise."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    stages = Stages()
    chosen = get_strategy(args.strategy, seed=args.seed, n_loops=args.n_loops)
    patch_size = parse_triple(args.patch_size, "--patch-size", allow_one=False)
    stride = as_stride(parse_stride(args.stride))
    strategy = _check_options(chosen, args.num_parts, args.part_id)
    query = open_export_query(
        strategy,
        args.probabilities,
        args.dataset_json,
        n=args.n,
        loop=args.loop,
        patch_size=patch_size,
        out=args.out,
        stride=stride,
        per_volume=args.per_volume,
        annotated=args.annotated,
        device=args.device,
    )
    cases = query.export.cases[args.part_id :: args.num_parts]
    if strategy.needs_maps and str(args.device).startswith("mps"):
        console.print(MAPS_ON_CPU)
    if args.num_parts > 1:
        with MapsProgressBar(console, len(cases)) as bar:
            written = run_export_part(
                query,
                args.out,
                part_id=args.part_id,
                num_parts=args.num_parts,
                device=args.device,
                workdir=args.workdir,
                progress=bar,
                stages=stages,
            )
        console.print(
            f"wrote part {args.part_id} of {args.num_parts} ({len(cases)} case(s)) to "
            f"{written.path}"
            + (f"; keep {written.maps} until the merge" if written.maps_kept else "")
        )
        patches = [
            Patch(written.part.request.file(c), t.start, t.size, stratum=s if s != 0 else None)
            for c, sel in written.part.local.items()
            for s, ts in sel.strata.items()
            for t in ts
        ]
        print_summary(
            console,
            f"clasp-rs query {strategy.name}: part {args.part_id} (taken per volume)",
            patches,
            None,
            stages.seconds,
            query.label_names,
            len(cases),
        )
        return 0
    with MapsProgressBar(console, len(cases)) as bar:
        result = run_export_query(
            query, args.out, device=args.device, workdir=args.workdir, progress=bar, stages=stages
        )
    print_summary(
        console,
        f"clasp-rs query {strategy.name}: {len(result.patches)} of {query.request.n} patches",
        result.patches,
        result,
        stages.seconds,
        query.label_names,
        len(cases),
    )
    console.print(f"wrote {Path(args.out)}")
    return 0
