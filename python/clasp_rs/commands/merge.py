"""``clasp-rs merge``: turn the part files of a sharded ``clasp-rs query`` into its loop file.

The result is exactly the loop file a single run over all cases writes (same patches, same
order, same scores, same ``meta``). The parts must come from the same query (strategy,
parameters, cases, annotated patches) and cover every part id once.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console

from clasp_rs.patches import write_loop_file
from clasp_rs.query import check_out, merge_parts, query_meta
from clasp_rs.summary import print_summary

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``merge`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "merge",
        help="merge the part files of a sharded query into its loop file",
        description=(
            "Merge the part files written by 'clasp-rs query --num-parts K --part-id i' into "
            "the loop file a single run would have written."
        ),
    )
    parser.add_argument("parts", nargs="+", metavar="PART", help="part files, one per part id")
    parser.add_argument(
        "--out", required=True, metavar="FILE", help="loop file to write (never overwritten)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Read, check and merge the parts; write the loop file and print the summary."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    out = check_out(args.out)
    start = time.perf_counter()
    merged = merge_parts(args.parts)
    result, request = merged.result, merged.request
    done_merging = time.perf_counter()
    write_loop_file(out, result.patches, meta=query_meta(merged.strategy, request, result))
    done = time.perf_counter()
    print_summary(
        console,
        f"clasp-rs merge {merged.strategy.name}: {len(result.patches)} of {request.n} patches",
        result.patches,
        result,
        {"read + merge": done_merging - start, "write": done - done_merging},
        merged.label_names,
        len(request.files),
    )
    console.print(f"wrote {out}")
    return 0
