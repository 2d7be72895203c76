"""``clasp-rs init``: an experiment from an nnU-Net raw dataset.

Everything is checked before anything is written (nnU-Net environment, dataset.json, files,
label values, split, budgets); the experiment folder and the new nnU-Net dataset are built
under temporary names and renamed into place at the end, so a failed init leaves nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs.exceptions import DatasetError, InvalidPatchError
from clasp_rs.io.dataset_json import write_dataset_json
from clasp_rs.io.json_files import write_json
from clasp_rs.loop.autosize import auto_budget, auto_patch_size, largest_component_box
from clasp_rs.loop.experiment import EXPERIMENT_FILE, Experiment
from clasp_rs.loop.grids import (
    DatasetGrids,
    check_grids,
    patch_size_from_mm,
    training_label,
    warn_clipped_axes,
    write_training_image,
)
from clasp_rs.loop.source import SourceDataset, check_source, link_or_copy, resolve_source
from clasp_rs.loop.split import split_cases
from clasp_rs.nnunet.labels import (
    label_dtype,
    partial_labels,
    patch_mask,
    read_label,
    write_label_like,
)
from clasp_rs.nnunet.paths import NnUNetPaths, nnunet_paths
from clasp_rs.patches import write_loop_file

__all__ = ["init_experiment", "next_dataset_id"]

_DATASET_ID = re.compile(r"^Dataset(\d{3})_")


def next_dataset_id(paths: NnUNetPaths, minimum: int = 500) -> int:
    """The smallest unused nnU-Net dataset id >= ``minimum`` above every id in use."""
    used = {
        int(m.group(1))
        for base in (paths.raw, paths.preprocessed, paths.results)
        if base.is_dir()
        for entry in base.iterdir()
        if (m := _DATASET_ID.match(entry.name))
    }
    candidate = max([minimum - 1, *used]) + 1
    if candidate > 999:
        raise DatasetError("no free nnU-Net dataset id left (ids go up to 999); pass --dataset-id")
    return candidate


def _id_in_use(paths: NnUNetPaths, dataset_id: int) -> list[str]:
    prefix = f"Dataset{dataset_id:03d}_"
    return sorted(
        str(entry)
        for base in (paths.raw, paths.preprocessed, paths.results)
        if base.is_dir()
        for entry in base.iterdir()
        if entry.name.startswith(prefix)
    )


def _hard_classes(items: Iterable[int | str], labels: dict[str, int]) -> list[int]:
    out = set()
    for item in items:
        text = str(item)
        value = int(text) if text.lstrip("-").isdigit() else labels.get(text)
        if value is None or value <= 0 or value not in labels.values():
            names = ", ".join(f"{k}={v}" for k, v in labels.items() if v > 0)
            raise DatasetError(
                f"--hard-classes {text!r} is not a foreground class (by name or value: {names})"
            )
        out.add(value)
    return sorted(out)


def _as_patch_size(value: str | Sequence[int]) -> tuple[int, int, int] | None:
    if isinstance(value, str):
        if value != "auto":
            raise InvalidPatchError(f"--patch-size takes 'auto' or Z Y X, got {value!r}")
        return None
    items = [int(v) for v in value]
    if len(items) != 3 or min(items) < 1:
        raise InvalidPatchError(
            f"--patch-size takes 'auto' or 3 positive integers Z Y X, got {list(value)}"
        )
    return items[0], items[1], items[2]


# Shares of the pool above which a budget leaves the loop little to choose.
START_FOREGROUND_SHARE = 0.25
LOOP_VOXEL_SHARE = 0.10


def _warn_about_budget(
    ground_truth: dict[str, tuple[np.ndarray, Any]],
    start_patches: Sequence[Any],
    per_loop: int,
    size: tuple[int, int, int],
    counts: dict[str, dict[str, int]],
) -> None:
    """Warn (:class:`~clasp_rs.exceptions.BudgetWarning`) when the starting budget annotates
    more than :data:`START_FOREGROUND_SHARE` of the pool's foreground, or one loop's budget
    covers more than :data:`LOOP_VOXEL_SHARE` of its voxels."""
    import warnings

    from clasp_rs.exceptions import BudgetWarning
    from clasp_rs.patches import case_id

    total_fg = sum(sum(c.values()) for c in counts.values())
    annotated_fg = 0
    by_case: dict[str, list[Any]] = {}
    for patch in start_patches:
        by_case.setdefault(case_id(patch.file), []).append(patch)
    for case, patches in by_case.items():
        gt = ground_truth[case][0]
        annotated_fg += int(np.count_nonzero(patch_mask(gt.shape, patches, case) & (gt > 0)))
    pool_voxels = sum(int(gt.size) for gt, _ in ground_truth.values())
    loop_voxels = per_loop * int(np.prod(size))
    if total_fg and annotated_fg / total_fg > START_FOREGROUND_SHARE:
        warnings.warn(
            f"the starting budget ({len(start_patches)} patches of {list(size)}) annotates "
            f"{100 * annotated_fg / total_fg:.0f} % of the pool's foreground voxels before any "
            "query: the loop has little left to choose; give a smaller --start-budget/--budget "
            "or --patch-size",
            BudgetWarning,
            stacklevel=3,
        )
    if pool_voxels and loop_voxels / pool_voxels > LOOP_VOXEL_SHARE:
        warnings.warn(
            f"one loop's budget ({per_loop} patches of {list(size)}) covers up to "
            f"{100 * loop_voxels / pool_voxels:.0f} % of the pool's {pool_voxels} voxels: a few "
            "loops annotate the whole pool; give a smaller --budget or --patch-size",
            BudgetWarning,
            stacklevel=3,
        )


def _label_file(
    source: SourceDataset,
    case: str,
    labels: np.ndarray,
    reference: Any,
    grids: DatasetGrids,
    folder: Path,
    tmp_root: Path,
) -> None:
    """A full label file into ``folder``: a link to the source, or the resampled labels."""
    target = folder / f"{case}{source.file_ending}"
    if case in grids.resampled:
        write_label_like(labels, reference, target, tmp_root / ".scratch")
    else:
        link_or_copy(source.label_file(case), target)


def init_experiment(
    dataset: str,
    experiment: str | os.PathLike[str],
    *,
    seed: int = 0,
    patch_size: str | Sequence[int] = "auto",
    patch_size_mm: Sequence[float] | None = None,
    budget: int | str = "auto",
    start_budget: int | None = None,
    hard_classes: Iterable[int | str] = (),
    dataset_id: int | None = None,
    name: str | None = None,
) -> Experiment:
    """Create an experiment folder and its nnU-Net dataset from a raw dataset.

    Args:
        dataset: id (``900``), name (``Dataset900_X``) in ``$nnUNet_raw``, or a folder path.
        experiment: the experiment folder to create (must not exist, or be empty).
        seed: seed of the split and every query.
        patch_size: ``"auto"`` (computed in mm, see :mod:`clasp_rs.loop.autosize`) or
            ``(dz, dy, dx)`` voxels of the training grid.
        patch_size_mm: ``(z, y, x)`` in mm instead (rounded to training voxels).
        budget: patches per loop, or ``"auto"`` (50 per class, 100 per hard class).
        start_budget: patches of ``loop_000.json`` (default: ``budget``).
        hard_classes: foreground labels (values or names) that get 100 patches under
            ``--budget auto``.
        dataset_id: id of the new nnU-Net dataset (default: the next free id >= 500).
        name: its name after ``DatasetYYY_`` (default: the source's name + ``_clasp``).

    Returns:
        The experiment. Its ``loop_000.json`` may hold fewer patches than ``start_budget``
        when not that many fit without overlapping.

    Raises:
        DatasetError: the environment, dataset or options are unusable (nothing written).

    Warns:
        BudgetWarning: the starting budget annotates more than a quarter of the pool's
            foreground, or a loop's budget covers more than a tenth of its voxels.
    """
    paths = nnunet_paths()
    root = Path(experiment).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"experiment folder {root} already exists and is not empty")
    source = check_source(resolve_source(dataset, paths))
    size = _as_patch_size(patch_size)
    if patch_size_mm is not None and size is not None:
        raise DatasetError("--patch-size and --patch-size-mm exclude each other: give one")
    grids = check_grids(
        source.cases,
        {c: source.image_files(c) for c in source.cases},
        {c: source.label_file(c) for c in source.cases},
    )
    if patch_size_mm is not None:
        size = patch_size_from_mm(patch_size_mm, grids.spacing(source.cases[0]))
    if seed < 0:
        raise DatasetError(f"--seed must be >= 0, got {seed}")

    # -- new dataset name ----------------------------------------------------------------------
    new_id = next_dataset_id(paths) if dataset_id is None else int(dataset_id)
    if not 1 <= new_id <= 999:
        raise DatasetError(f"--dataset-id must be in 1..999, got {new_id}")
    taken = _id_in_use(paths, new_id)
    if taken:
        raise DatasetError(f"nnU-Net dataset id {new_id} is already used by {', '.join(taken)}")
    suffix = (
        name
        or (
            source.folder.name.split("_", 1)[1] if "_" in source.folder.name else source.folder.name
        )
        + "_clasp"
    )
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", suffix):
        raise DatasetError(f"--name {suffix!r} may hold only letters, digits, '_' and '-'")
    new_name = f"Dataset{new_id:03d}_{suffix}"

    # -- labels: values, classes, boxes --------------------------------------------------------
    values = set(source.labels.values())
    foreground = sorted(v for v in values if v > 0)
    hard = _hard_classes(hard_classes, source.labels)
    present: dict[str, set[int]] = {}
    counts: dict[str, dict[str, int]] = {}
    boxes: dict[int, list[tuple[float, ...]]] = {c: [] for c in foreground}
    training_labels: dict[str, tuple[np.ndarray, Any]] = {}
    for case in source.cases:
        labels, image = read_label(source.label_file(case))
        found = {int(v) for v in np.unique(labels)}
        unknown = sorted(found - values)
        if unknown:
            raise DatasetError(
                f"{source.label_file(case)} holds label value(s) {unknown} that dataset.json "
                f"does not list (it lists {sorted(values)})"
            )
        if size is None:
            # Boxes measured in mm on the original grid, then counted in training voxels.
            scale = np.asarray(grids.original[case].spacing[::-1]) / np.asarray(grids.spacing(case))
            for c in sorted(found & set(foreground)):
                box = largest_component_box(labels == c)
                if box is not None:
                    boxes[c].append(tuple(float(v) for v in np.asarray(box) * scale))
        if case in grids.resampled:
            labels, image = training_label(image, grids, case)
        training_labels[case] = (labels, image)
        present[case] = {int(v) for v in np.unique(labels)} & set(foreground)
        counts[case] = {str(c): int(np.count_nonzero(labels == c)) for c in foreground}
    absent = [c for c in foreground if not any(c in p for p in present.values())]
    if absent:
        names = {v: k for k, v in source.labels.items()}
        raise DatasetError(
            f"foreground class(es) {', '.join(f'{c} ({names[c]})' for c in absent)} occur in no "
            "label file"
        )
    pool, test = split_cases(present, seed=seed)
    if len(pool) < 5:
        raise DatasetError(
            f"the pool would hold {len(pool)} case(s); nnU-Net's 5-fold cross-validation needs at "
            "least 5 training cases (the dataset needs at least 7)"
        )
    if size is None:
        size = auto_patch_size(boxes)
    per_loop = auto_budget(foreground, hard) if budget == "auto" else int(budget)
    start = per_loop if start_budget is None else int(start_budget)
    needed = 2 * len(values)
    for what, value in (("--budget", per_loop), ("--start-budget", start)):
        if value < needed:
            raise DatasetError(
                f"{what} {value} is too small: every class needs two patches ({len(values)} "
                f"labels, background included, need at least {needed})"
            )

    # -- starting budget -----------------------------------------------------------------------
    from clasp_rs.loop.starting_budget import starting_budget

    ending = source.file_ending
    ground_truth = {case: training_labels[case] for case in pool}
    warn_clipped_axes(size, {case: gt.shape for case, (gt, _) in ground_truth.items()})
    start_patches = starting_budget(
        {case: gt for case, (gt, _) in ground_truth.items()},
        start,
        size,
        seed=seed,
        classes=sorted(values),
        files={case: f"{case}{ending}" for case in pool},
    )

    _warn_about_budget(ground_truth, start_patches, per_loop, size, counts)

    # -- write, under temporary names ------------------------------------------------------------
    ignore = max(values) + 1
    dtype = label_dtype(ignore)
    exp = Experiment(
        root=root,
        seed=seed,
        source_name=source.folder.name,
        source_folder=source.folder,
        dataset_id=new_id,
        dataset_name=new_name,
        labels=dict(sorted(source.labels.items(), key=lambda kv: kv[1])),
        ignore_label=ignore,
        channels=source.channels,
        file_ending=ending,
        pool=pool,
        test=test,
        patch_size=size,
        budget=per_loop,
        start_budget=start,
        hard_classes=hard,
        foreground_voxels={case: counts[case] for case in pool},
        target_spacing=grids.target,
        resampled=list(grids.resampled),
    )
    tmp_root = root.parent / f".{root.name}.init-{os.getpid()}"
    tmp_data = paths.raw / f".{new_name}.init-{os.getpid()}"
    try:
        for folder in (
            tmp_root,
            tmp_root / "ground_truth",
            tmp_root / "loops",
            tmp_root / ".scratch",
            *(
                (tmp_root / "original" / "imagesTr", tmp_root / "original" / "labelsTr")
                if grids.resampled
                else ()
            ),
        ):
            folder.mkdir(parents=True)
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (tmp_data / sub).mkdir(parents=True)
        for case in grids.resampled:
            for image in source.image_files(case):
                link_or_copy(image, tmp_root / "original" / "imagesTr" / image.name)
            link_or_copy(
                source.label_file(case), tmp_root / "original" / "labelsTr" / f"{case}{ending}"
            )
        for case in pool:
            for image in source.image_files(case):
                write_training_image(image, tmp_data / "imagesTr" / image.name, grids, case)
            gt, reference = ground_truth[case]
            _label_file(source, case, gt, reference, grids, tmp_root / "ground_truth", tmp_root)
            mine = [p for p in start_patches if p.file == f"{case}{ending}"]
            write_label_like(
                partial_labels(gt, mine, ignore, dtype),
                reference,
                tmp_data / "labelsTr" / f"{case}{ending}",
                tmp_root / ".scratch",
            )
        for case in test:
            for image in source.image_files(case):
                write_training_image(image, tmp_data / "imagesTs" / image.name, grids, case)
            gt, reference = training_labels[case]
            _label_file(source, case, gt, reference, grids, tmp_data / "labelsTs", tmp_root)
        dataset_json = {
            "name": suffix,
            "description": f"clasp-rs active learning on {source.folder.name}: labels are "
            f"'ignore' ({ignore}) outside annotated patches; test cases in imagesTs/labelsTs",
            "channel_names": source.channels,
            "labels": {**exp.labels, "ignore": ignore},
            "numTraining": len(pool),
            "file_ending": ending,
        }
        write_dataset_json(tmp_data / "dataset.json", dataset_json)
        write_json(tmp_root / EXPERIMENT_FILE, exp.to_json())
        from clasp_rs import __version__

        write_loop_file(
            tmp_root / "loop_000.json",
            start_patches,
            meta={
                "strategy": "starting-budget",
                "seed": seed,
                "loop": 0,
                "n": start,
                "patch_size": list(size),
                "version": __version__,
            },
        )
        tmp_data.rename(paths.raw / new_name)
        if root.exists():
            root.rmdir()
        try:
            tmp_root.rename(root)
        except BaseException:
            shutil.rmtree(paths.raw / new_name, ignore_errors=True)
            raise
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        shutil.rmtree(tmp_data, ignore_errors=True)
        raise
    return exp
