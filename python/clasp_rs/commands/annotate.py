"""``clasp-rs annotate``: a human's labels for the queried patches, then the run goes on."""

from __future__ import annotations

import argparse
from typing import Any

from clasp_rs.devices import DEVICE_CHOICES

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``annotate`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "annotate",
        help="apply a human's labels for the queried patches and continue the run",
        description=(
            "Read one label file per case of the query the run waits on from --labels: "
            "<case>.nii.gz, .nii, .nrrd, .mha or a 3D Slicer <case>.seg.nrrd (segments named "
            "after dataset.json's labels), or the crops <case>_pNN of clasp-rs export --crops. "
            "Each file must lie on its case's scan (size, origin, spacing, direction). Inside "
            "the queried patches every voxel needs a class; outside them the file must keep the "
            "label it was handed out with (or the ignore value). Checks all files first, "
            "applies them, then continues the run with the experiment's settings."
        ),
    )
    parser.add_argument("experiment", metavar="EXPERIMENT", help="folder made by clasp-rs init")
    parser.add_argument("--labels", required=True, metavar="DIR", help="the human's label files")
    parser.add_argument(
        "--crop-margin",
        type=float,
        default=None,
        metavar="MM",
        help="the margin crops were exported with (default 10)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICE_CHOICES,
        help="for the continued run",
    )
    parser.add_argument(
        "--no-continue", action="store_true", help="only apply the labels; do not continue the run"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from clasp_rs.export.crops import DEFAULT_MARGIN_MM
    from clasp_rs.loop.driver import run_experiment
    from clasp_rs.loop.human import annotate_experiment
    from clasp_rs.loop.settings import RunOptions

    margin = DEFAULT_MARGIN_MM if args.crop_margin is None else args.crop_margin
    loop, cases = annotate_experiment(args.experiment, args.labels, crop_margin_mm=margin)
    print(f"annotated the query of loop {loop} in {cases} case(s)")
    if args.no_continue:
        return 0
    outcome = run_experiment(args.experiment, RunOptions(device=args.device, resume=True))
    print(outcome.message)
    return 0
