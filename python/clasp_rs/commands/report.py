"""``clasp-rs report``: metrics, plots and an HTML page for one or more experiments."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="Final Dice, AUBC, FG-Eff, plots and an HTML page for experiments",
        description=(
            "Summarise experiments (e.g. one per strategy): Final Dice, AUBC, FG-Eff and "
            "annotated voxels per loop, PNG plots and a self-contained report.html in --out."
        ),
    )
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT", help="experiment folders")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier report in --out"
    )
    return parser


def _f(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def run(args: argparse.Namespace) -> int:
    from clasp_rs.loop.report import build_report

    summaries = build_report(args.experiments, args.out, overwrite=args.overwrite)
    table = Table(title="clasp-rs report")
    for column in (
        "experiment",
        "strategy",
        "loops",
        "Final Dice",
        "AUBC",
        "FG-Eff",
        "annotated voxels",
    ):
        table.add_column(
            column, justify="left" if column in ("experiment", "strategy") else "right"
        )
    for s in summaries:
        table.add_row(
            s.name,
            s.strategy,
            str(len(s.loops)),
            _f(s.final_dice),
            _f(s.aubc),
            _f(None if s.fit is None else s.fit.rate, 2),
            " / ".join(str(r.voxels) for r in s.loops),
        )
    Console(highlight=False, soft_wrap=True).print(table)
    print(f"wrote {args.out}/report.html")
    return 0
