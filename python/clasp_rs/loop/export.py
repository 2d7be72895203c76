"""The export of an experiment's query: the queried cases of ``loop_NNN.json`` with their
scans and current training labels, written by :func:`clasp_rs.export.export_cases`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np

from clasp_rs.exceptions import DatasetError
from clasp_rs.export.bundle import CaseSource, ExportOptions, ExportResult, export_cases
from clasp_rs.export.crops import DEFAULT_MARGIN_MM
from clasp_rs.loop.experiment import Experiment, load_experiment
from clasp_rs.loop.spaces import CaseSpace, case_space
from clasp_rs.nnunet.labels import read_label
from clasp_rs.nnunet.paths import nnunet_paths
from clasp_rs.patches import patches_by_case, read_loop_file, read_loop_meta

__all__ = ["experiment_sources", "export_experiment", "latest_loop"]

_LOOP_FILE = re.compile(r"^loop_(\d{3,})\.json$")


def latest_loop(exp: Experiment) -> int:
    """The number of the experiment's newest loop file."""
    numbers = [int(m.group(1)) for p in exp.root.iterdir() if (m := _LOOP_FILE.match(p.name))]
    if not numbers:
        raise DatasetError(f"experiment {exp.root} has no loop_NNN.json")
    return max(numbers)


def _reader(space: CaseSpace) -> Callable[[], np.ndarray]:
    return lambda: space.label_to_annotation(read_label(space.training_label)[0])


def experiment_sources(exp: Experiment, loop: int) -> list[CaseSource]:
    """The cases that ``loop_<loop>.json`` queries, on the scans annotators see (the
    originals of resampled cases), with their current training labels on those grids."""
    dataset = exp.dataset_folder(nnunet_paths().raw)
    path = exp.loop_file(loop)
    if not path.is_file():
        raise FileNotFoundError(2, "loop file not found", str(path))
    sources = []
    for case, patches in patches_by_case(read_loop_file(path)).items():
        space = case_space(exp, dataset, case)
        sources.append(
            CaseSource(
                case,
                space.images,
                space.annotation,
                space.patches_to_annotation(patches),
                list(patches),
                _reader(space),
            )
        )
    return sources


def export_experiment(
    experiment: str | os.PathLike[str],
    to: str | os.PathLike[str],
    *,
    loop: int | None = None,
    crops: bool = False,
    crop_margin_mm: float = DEFAULT_MARGIN_MM,
    copy_images: bool = True,
) -> ExportResult:
    """Export the patches of ``loop_<loop>.json`` (default: the newest) into ``to``.

    Raises:
        FileNotFoundError: no such experiment or loop file.
        FileExistsError: ``to`` is not empty.
    """
    exp = load_experiment(experiment)
    number = latest_loop(exp) if loop is None else int(loop)
    meta = read_loop_meta(exp.loop_file(number)) if exp.loop_file(number).is_file() else {}
    options = ExportOptions(
        file_ending=exp.file_ending,
        label_names=exp.label_names,
        ignore_label=exp.ignore_label,
        copy_images=copy_images,
        crops=crops,
        crop_margin_mm=crop_margin_mm,
    )
    return export_cases(
        experiment_sources(exp, number),
        to,
        options,
        meta={
            "experiment": str(exp.root),
            "loop_file": exp.loop_file(number).name,
            "strategy": meta.get("strategy"),
        },
        readme_intro=(
            f"clasp-rs export of {exp.loop_file(number).name} of the experiment {exp.root} "
            f"(dataset {exp.dataset_name})."
        ),
    )
