"""``clasp-rs export``: a query's patches as files for 3D Slicer, ITK-SNAP and MITK."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``export`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "export",
        help="write a query's patches as box maps, Slicer ROIs, MITK boxes and a table",
        description=(
            "Write, per queried case and in the scan's own geometry: a box label map (patch k "
            "= k) and its outline, 3D Slicer ROIs (.mrk.json), MITK boxes (.mitkgeometry), an "
            "ITK-SNAP label description, optional crops, and patches.csv/patches.json with "
            "voxel, viewer and LPS/RAS coordinates. SOURCE is an experiment folder (its newest "
            "loop file, or --loop N) or a loop file with --images."
        ),
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="experiment folder, or a loop_NNN.json with --images"
    )
    parser.add_argument("--to", required=True, metavar="DIR", help="new or empty folder")
    parser.add_argument(
        "--loop", type=int, default=None, metavar="N", help="export loop_N.json (experiments)"
    )
    parser.add_argument(
        "--images", default=None, metavar="DIR", help="nnU-Net images folder (loop files)"
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="DIR",
        help="current labels <case><ending> on the scans' grids (loop files; for --crops)",
    )
    parser.add_argument(
        "--file-ending", default=None, help="image ending (loop files; default: found)"
    )
    parser.add_argument(
        "--dataset-json",
        default=None,
        metavar="FILE",
        help="class names for the patch names (loop files; default: next to --images)",
    )
    parser.add_argument(
        "--crops", action="store_true", help="also write each patch plus a margin as small files"
    )
    parser.add_argument(
        "--crop-margin", type=float, default=None, metavar="MM", help="crop margin (default 10)"
    )
    parser.add_argument(
        "--no-images", action="store_true", help="do not copy the scans into the export"
    )
    return parser


def _dataset_labels(args: argparse.Namespace) -> tuple[dict[int, str], int | None, str | None]:
    """Class names, ignore value and file ending from --dataset-json (or the dataset.json
    next to --images, when there is one); the ending --file-ending gives wins."""
    from clasp_rs.io.dataset_json import read_dataset_json

    path = args.dataset_json
    if path is None:
        beside = Path(args.images).parent / "dataset.json"
        if not beside.is_file():
            return {}, None, args.file_ending
        path = beside
    info = read_dataset_json(path)
    names = {v: k for k, v in info.labels.items()}
    return names, info.ignore_label, args.file_ending or info.file_ending


def run(args: argparse.Namespace) -> int:
    from clasp_rs.export import ExportOptions, export_cases, loop_file_sources
    from clasp_rs.export.crops import DEFAULT_MARGIN_MM
    from clasp_rs.export.readme import viewer_commands

    margin = DEFAULT_MARGIN_MM if args.crop_margin is None else args.crop_margin
    source = Path(args.source)
    if source.is_dir():
        if args.images or args.labels or args.file_ending or args.dataset_json:
            raise ValueError(
                "--images, --labels, --file-ending and --dataset-json are for loop files; an "
                "experiment knows its scans"
            )
        from clasp_rs.loop.export import export_experiment

        result = export_experiment(
            source,
            args.to,
            loop=args.loop,
            crops=args.crops,
            crop_margin_mm=margin,
            copy_images=not args.no_images,
        )
    else:
        if args.images is None:
            raise ValueError(
                f"{source} is not an experiment folder: exporting a loop file needs --images DIR"
            )
        if args.loop is not None:
            raise ValueError("--loop is for experiments; a loop file is one loop")
        names, ignore, ending = _dataset_labels(args)
        sources, ending = loop_file_sources(
            source, args.images, labels=args.labels, file_ending=ending
        )
        result = export_cases(
            sources,
            args.to,
            ExportOptions(
                file_ending=ending,
                label_names=names,
                ignore_label=ignore,
                copy_images=not args.no_images,
                crops=args.crops,
                crop_margin_mm=margin,
            ),
            meta={"loop_file": str(source)},
            readme_intro=f"clasp-rs export of {source} (scans from {args.images}).",
        )
    print(
        f"exported {len(result.rows)} patch(es) of {len(result.files)} case(s) to {result.folder}"
    )
    if result.files:
        case = sorted(result.files)[0]
        print(f"open {case} (see {result.folder / 'README.txt'}):")
        for viewer, how in viewer_commands(result.files[case]).items():
            print(f"  {viewer}: {how}")
    return 0
