"""``clasp-rs init``: an active-learning experiment from an nnU-Net raw dataset."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

from rich.console import Console

from clasp_rs.exceptions import ClaspWarning
from clasp_rs.patches import read_loop_file

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``init`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "init",
        help="create an active-learning experiment from an nnU-Net raw dataset",
        description=(
            "Split $nnUNet_raw/DatasetXXX_Name (dataset.json, imagesTr, labelsTr) into a pool "
            "(75 %) and a test set (25 %) that both hold every class, create a new nnU-Net "
            "dataset whose labels are 'ignore' outside annotated patches, and write the "
            "starting budget as EXPERIMENT/loop_000.json."
        ),
    )
    parser.add_argument("dataset", metavar="DATASET", help="dataset id, DatasetXXX_Name, or folder")
    parser.add_argument("experiment", metavar="EXPERIMENT", help="experiment folder to create")
    parser.add_argument("--seed", type=int, default=0, help="seed of split and queries (default 0)")
    parser.add_argument(
        "--patch-size",
        nargs="+",
        default=["auto"],
        metavar="N",
        help="query patch size Z Y X, or 'auto' (median largest-component box; default)",
    )
    parser.add_argument(
        "--patch-size-mm",
        nargs=3,
        type=float,
        default=None,
        metavar=("Z", "Y", "X"),
        help="query patch size in mm instead (rounded to voxels of the training spacing)",
    )
    parser.add_argument(
        "--budget",
        default="auto",
        help="patches per loop, or 'auto': 50 per class, 100 per hard class (default)",
    )
    parser.add_argument(
        "--start-budget",
        type=int,
        default=None,
        help="patches of loop_000.json (default: --budget)",
    )
    parser.add_argument(
        "--hard-classes",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="classes (names or values) that get 100 patches under --budget auto",
    )
    parser.add_argument(
        "--dataset-id",
        type=int,
        default=None,
        help="id of the new nnU-Net dataset (default: next free >= 500)",
    )
    parser.add_argument(
        "--name", default=None, help="name of the new dataset (default: <source>_clasp)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from clasp_rs.loop.setup import init_experiment

    patch_size: str | list[int]
    if args.patch_size == ["auto"]:
        patch_size = "auto"
    else:
        try:
            patch_size = [int(v) for v in args.patch_size]
        except ValueError:
            raise ValueError(
                f"--patch-size takes 'auto' or 3 integers Z Y X, got {args.patch_size}"
            ) from None
    budget: str | int = args.budget
    if budget != "auto":
        try:
            budget = int(budget)
        except ValueError:
            raise ValueError(f"--budget takes 'auto' or an integer, got {args.budget!r}") from None
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ClaspWarning)
        exp = init_experiment(
            args.dataset,
            args.experiment,
            seed=args.seed,
            patch_size=patch_size,
            patch_size_mm=args.patch_size_mm,
            budget=budget,
            start_budget=args.start_budget,
            hard_classes=args.hard_classes,
            dataset_id=args.dataset_id,
            name=args.name,
        )
    for warning in caught:
        if issubclass(warning.category, ClaspWarning):
            console.print(f"clasp-rs: warning: {warning.message}")
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    written = len(read_loop_file(exp.loop_file(0)))
    console.print(f"experiment {exp.root}")
    console.print(
        f"  nnU-Net dataset {exp.dataset_name} ({len(exp.pool)} pool cases; "
        f"{len(exp.test)} test cases in imagesTs/labelsTs)"
    )
    if exp.target_spacing is not None:
        console.print(
            f"  cases differ in spacing: {len(exp.resampled)} resampled to nnU-Net's target "
            f"spacing {[round(s, 4) for s in exp.target_spacing]} mm (Z Y X) for training; "
            f"their originals are in {exp.original_folder()} for annotation"
        )
    console.print(
        f"  patch size {list(exp.patch_size)} (Z Y X), {exp.budget} patches per loop, "
        f"{written} in loop_000.json"
        + (f" (of {exp.start_budget} asked; no more fit)" if written < exp.start_budget else "")
        + f", ignore label {exp.ignore_label}"
    )
    console.print(
        f"next: clasp-rs run {exp.root} --simulate   (or without --simulate to annotate by hand)"
    )
    return 0
