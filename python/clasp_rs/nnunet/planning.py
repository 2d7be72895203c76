"""Fingerprint, plan and preprocess a dataset with stock nnU-Net v2.

``plan_experiment`` runs nnU-Net's own fingerprint extraction and experiment planner (what
``nnUNetv2_plan_and_preprocess`` does before preprocessing). ``preprocess`` runs nnU-Net's
preprocessor case by case, in this process, so that after new annotations only the cases
whose labels changed are preprocessed again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from clasp_rs._atomic import atomic_path
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.dataset_json import load_dataset_json
from clasp_rs.nnunet._runtime import nnunet_ready, nnunet_warnings, scoped_environ
from clasp_rs.nnunet.paths import dataset_name, raw_dataset_folder

__all__ = ["plan_experiment", "preprocess", "raw_cases", "preprocessed_folder"]

DEFAULT_PLANS = "nnUNetPlans"


def raw_cases(dataset: int | str) -> dict[str, dict[str, object]]:
    """The training cases of a raw dataset, as nnU-Net finds them.

    Returns:
        case id -> ``{"images": [channel files...], "label": label file}`` (str paths).

    Raises:
        DatasetError: no dataset.json, no labelsTr, an image channel or label missing.
    """
    folder = raw_dataset_folder(dataset)
    dataset_json = load_dataset_json(folder / "dataset.json")
    for key in ("channel_names", "labels", "file_ending"):
        if key not in dataset_json:
            raise DatasetError(f"{folder / 'dataset.json'} has no {key!r}")
    if not (folder / "labelsTr").is_dir():
        raise DatasetError(f"{folder} has no labelsTr folder; expected one label file per case")
    ending = dataset_json["file_ending"]
    channels = sorted(int(c) for c in dataset_json["channel_names"])
    cases: dict[str, dict[str, object]] = {}
    for label in sorted((folder / "labelsTr").glob("*" + ending)):
        case = label.name[: -len(ending)]
        images = [folder / "imagesTr" / f"{case}_{c:04d}{ending}" for c in channels]
        absent = [str(p) for p in images if not p.is_file()]
        if absent:
            raise DatasetError(f"case {case}: label {label} but no image {', '.join(absent)}")
        cases[case] = {"images": [str(p) for p in images], "label": str(label)}
    if not cases:
        raise DatasetError(f"{folder / 'labelsTr'} holds no *{ending} files")
    return cases


def preprocessed_folder(dataset: int | str) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name``."""
    paths = nnunet_ready()
    return paths.preprocessed / dataset_name(dataset, paths)


def plan_experiment(
    dataset: int | str,
    *,
    verify: bool = True,
    num_processes: int = 1,
    planner: str = "ExperimentPlanner",
    plans_name: str | None = None,
    gpu_memory_target_gb: float | None = None,
) -> str:
    """Extract the dataset fingerprint and plan all configurations (2d, 3d_fullres, ...).

    Args:
        dataset: id or ``DatasetXXX_Name`` in ``$nnUNet_raw``.
        verify: run nnU-Net's dataset integrity check first.
        num_processes: worker processes nnU-Net spawns for fingerprinting.
        planner: an experiment planner class name nnU-Net knows (``ExperimentPlanner``,
            ``nnUNetPlannerResEncM``, ...).
        plans_name: plans identifier to write instead of the planner's default.
        gpu_memory_target_gb: VRAM target passed to the planner (its default when None).

    Returns:
        The plans identifier (``nnUNetPlans`` for the default planner); the plans are in
        ``$nnUNet_preprocessed/DatasetXXX_Name/<identifier>.json``.
    """
    nnunet_ready()
    raw_cases(dataset)  # fail early, with our message, on an incomplete dataset
    import nnunetv2
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprint_dataset,
        plan_experiment_dataset,
    )
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    name = dataset_name(dataset)
    dataset_id = int(name[len("Dataset") : len("Dataset") + 3])
    planner_class = recursive_find_python_class(
        os.path.join(nnunetv2.__path__[0], "experiment_planning"),
        planner,
        current_module="nnunetv2.experiment_planning",
    )
    if planner_class is None:
        raise ValueError(f"nnU-Net has no experiment planner named {planner!r}")
    # The planner sizes its torch thread pool from nnUNet_n_proc_DA, which must then be >= 1
    # (0, which selects in-process data augmentation for training, makes it fail).
    n_proc_da = os.environ.get("nnUNet_n_proc_DA")
    if n_proc_da is not None and int(n_proc_da) < 1:
        n_proc_da = "1"
    with nnunet_warnings():
        extract_fingerprint_dataset(
            dataset_id,
            num_processes=max(1, num_processes),
            check_dataset_integrity=verify,
            clean=True,
            verbose=False,
            show_progress_bar=False,
        )
    with nnunet_warnings(), scoped_environ(nnUNet_n_proc_DA=n_proc_da):
        _, identifier = plan_experiment_dataset(
            dataset_id,
            planner_class,
            gpu_memory_target_in_gb=gpu_memory_target_gb,
            overwrite_plans_name=plans_name,
        )
    return str(identifier)


def preprocess(
    dataset: int | str,
    configuration: str = "3d_fullres",
    *,
    cases: Iterable[str] | None = None,
    plans: str = DEFAULT_PLANS,
) -> list[str]:
    """Preprocess cases for one configuration with nnU-Net's preprocessor, in this process.

    Each case goes through the configuration's preprocessor class (``run_case_save``, the
    same call nnU-Net's own worker processes make); its label is also copied to
    ``gt_segmentations/`` as nnU-Net does, for nnU-Net's own validation.

    Args:
        dataset: id or name.
        configuration: a configuration of the plans, e.g. ``"3d_fullres"`` or ``"2d"``.
        cases: case ids to (re)process; all training cases when None. Cases no longer in the
            raw dataset are not removed.
        plans: plans identifier.

    Returns:
        The case ids processed, sorted.

    Raises:
        DatasetError: the plans file or the configuration does not exist, or a case is not
            in the raw dataset.
    """
    nnunet_ready()
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = preprocessed_folder(dataset)
    plans_file = folder / f"{plans}.json"
    if not plans_file.is_file():
        raise DatasetError(f"no plans {plans_file}; run plan_experiment({dataset!r}) first")
    plans_manager = PlansManager(str(plans_file))
    if configuration not in plans_manager.available_configurations:
        raise DatasetError(
            f"configuration {configuration!r} is not in {plans_file}; it has "
            f"{list(plans_manager.available_configurations)}"
        )
    configuration_manager = plans_manager.get_configuration(configuration)
    dataset_json = load_dataset_json(folder / "dataset.json")
    available = raw_cases(dataset)
    wanted = sorted(available) if cases is None else sorted(set(cases))
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise DatasetError(f"cases not in the raw dataset: {unknown}")

    output = folder / configuration_manager.data_identifier
    output.mkdir(parents=True, exist_ok=True)
    gt_folder = folder / "gt_segmentations"
    gt_folder.mkdir(exist_ok=True)
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    with nnunet_warnings():
        for case in wanted:
            label = str(available[case]["label"])
            images = available[case]["images"]
            assert isinstance(images, list)
            _preprocess_case(
                preprocessor,
                output,
                case,
                images,
                label,
                plans_manager,
                configuration_manager,
                dataset_json,
            )
            _copy_atomic(Path(label), gt_folder / Path(label).name)
    return wanted


def _preprocess_case(
    preprocessor: object,
    output: Path,
    case: str,
    images: list[str],
    label: str,
    plans_manager: object,
    configuration_manager: object,
    dataset_json: dict,
) -> None:
    """Preprocess one case into a scratch folder, then move its files into ``output``.

    nnU-Net's blosc2 writer refuses to overwrite (its own preprocessing empties the folder
    first), and moving finished files makes an interrupted run leave the old case intact. The
    image array (``<case>.b2nd``, or ``<case>.npz`` for nnU-Net's numpy format), by which
    nnU-Net lists cases, moves last.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f".{case}.", dir=output))
    try:
        preprocessor.run_case_save(  # type: ignore[attr-defined]
            str(scratch / case), images, label, plans_manager, configuration_manager, dataset_json
        )
        markers = {f"{case}.b2nd", f"{case}.npz"}
        produced = sorted(scratch.iterdir(), key=lambda p: p.name in markers)
        if not produced or produced[-1].name not in markers:
            names = [p.name for p in produced]
            raise DatasetError(f"nnU-Net's preprocessor wrote {names} for case {case!r}")
        for path in produced:
            os.replace(path, output / path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target, overwrite=True) as tmp:
        shutil.copyfile(source, tmp)
