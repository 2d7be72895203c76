"""Train one fold of a stock nnU-Net v2 trainer, any trainer class, in this process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clasp_rs.devices import resolve_torch_device
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.dataset_json import load_dataset_json
from clasp_rs.io.json_files import read_json
from clasp_rs.nnunet._runtime import nnunet_ready, nnunet_warnings, scoped_environ
from clasp_rs.nnunet.checkpoints import load_checkpoint
from clasp_rs.nnunet.paths import dataset_name
from clasp_rs.nnunet.planning import DEFAULT_PLANS, preprocessed_folder

__all__ = ["resolve_trainer", "model_folder", "train_fold", "write_splits"]


def resolve_trainer(trainer: str | type) -> type:
    """The trainer class for a class or a name.

    Names are looked up among clasp-rs's trainers (``clasp_rs.nnunet.trainers``) first, then
    by nnU-Net's own search (its package, and ``nnUNet_extTrainer`` folders).

    Raises:
        ImportError: nnunetv2 is missing.
        ValueError: no trainer of that name, or the class does not derive from
            ``nnUNetTrainer``.
    """
    from clasp_rs._optional import import_nnunetv2

    import_nnunetv2()
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if isinstance(trainer, str):
        from clasp_rs.nnunet.trainers import TRAINERS

        if trainer in TRAINERS:
            return TRAINERS[trainer]
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        try:
            # The search imports every trainer module of nnunetv2; some pull in packages
            # (timm) that warn about deprecated torch APIs on import.
            with nnunet_warnings():
                found = recursive_find_trainer_class_by_name(trainer)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(
                f"no nnU-Net trainer named {trainer!r} (searched clasp-rs trainers "
                f"{sorted(TRAINERS)}, nnunetv2 and nnUNet_extTrainer): {err}"
            ) from None
        return found
    if not (isinstance(trainer, type) and issubclass(trainer, nnUNetTrainer)):
        raise ValueError(f"trainer {trainer!r} is not a subclass of nnUNetTrainer")
    return trainer


def model_folder(
    dataset: int | str,
    trainer: str | type = "nnUNetTrainer",
    configuration: str = "3d_fullres",
    plans: str = DEFAULT_PLANS,
    *,
    results_root: Path | str | None = None,
) -> Path:
    """``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``, as nnU-Net names
    it (``fold_N/`` subfolders hold the checkpoints); ``<results>`` is ``results_root`` or
    ``$nnUNet_results``."""
    paths = nnunet_ready()
    root = paths.results if results_root is None else Path(results_root)
    name = trainer if isinstance(trainer, str) else trainer.__name__
    return root / dataset_name(dataset, paths) / f"{name}__{plans}__{configuration}"


def write_splits(dataset: int | str, splits: list[dict[str, list[str]]]) -> Path:
    """Write nnU-Net's ``splits_final.json``: fold ``i`` trains on ``splits[i]["train"]``
    and validates on ``splits[i]["val"]``. Without it nnU-Net makes a seeded 5-fold split of
    all preprocessed cases on first training.

    Returns:
        The path written (atomically).

    Raises:
        DatasetError: a fold without train or val cases.
    """
    for i, fold in enumerate(splits):
        if not fold.get("train") or not fold.get("val"):
            raise DatasetError(f"fold {i} of the splits needs non-empty 'train' and 'val' lists")
    target = preprocessed_folder(dataset) / "splits_final.json"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(splits, indent=2) + "\n")
    tmp.replace(target)
    return target


def train_fold(
    dataset: int | str,
    fold: int | str,
    trainer: str | type = "nnUNetTrainer",
    *,
    configuration: str = "3d_fullres",
    plans: str = DEFAULT_PLANS,
    device: Any = None,
    continue_training: bool = False,
    validate: bool = False,
    results_root: Path | str | None = None,
) -> Path:
    """Train one fold, as ``nnUNetv2_train DATASET CONFIGURATION FOLD -tr TRAINER`` does.

    Args:
        dataset: id or name; must be planned and preprocessed for ``configuration``.
        fold: 0..4 (nnU-Net's 5-fold split, or the folds of ``splits_final.json``) or "all".
        trainer: a trainer class (any subclass of ``nnUNetTrainer``, wherever it lives) or a
            name (see :func:`resolve_trainer`).
        configuration: e.g. ``"3d_fullres"`` or ``"2d"``.
        plans: plans identifier.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or None for CUDA when available.
            Data augmentation runs in ``nnUNet_n_proc_DA`` background processes (0: in this
            process, best on small CPUs).
        continue_training: resume from the fold's latest checkpoint when there is one.
        validate: afterwards, run nnU-Net's own validation on the fold's validation cases
            (writes ``validation/`` and spawns ``nnUNet_def_n_proc`` export workers).
        results_root: write the model under this folder instead of ``$nnUNet_results``
            (e.g. one folder per active-learning loop); the variable is set to it while
            training.

    Returns:
        The fold's output folder, holding ``checkpoint_final.pth``.

    Raises:
        DatasetError: the dataset is not preprocessed for ``configuration``.
        ValueError: unknown trainer or device.
    """
    if results_root is not None:
        Path(results_root).mkdir(parents=True, exist_ok=True)
        with scoped_environ(nnUNet_results=str(Path(results_root).resolve())):
            return _train_fold(
                dataset, fold, trainer, configuration, plans, device, continue_training, validate
            )
    return _train_fold(
        dataset, fold, trainer, configuration, plans, device, continue_training, validate
    )


def _train_fold(
    dataset: int | str,
    fold: int | str,
    trainer: str | type,
    configuration: str,
    plans: str,
    device: Any,
    continue_training: bool,
    validate: bool,
) -> Path:
    nnunet_ready()
    trainer_class = resolve_trainer(trainer)
    torch_device = resolve_torch_device(device)
    folder = preprocessed_folder(dataset)
    plans_file = folder / f"{plans}.json"
    if not plans_file.is_file():
        raise DatasetError(f"no plans {plans_file}; run plan_experiment({dataset!r}) first")
    plans_dict = read_json(plans_file, "nnU-Net plans")
    if configuration not in plans_dict.get("configurations", {}):
        raise DatasetError(f"configuration {configuration!r} is not in {plans_file}")
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    data_folder = folder / PlansManager(plans_dict).get_configuration(configuration).data_identifier
    if not data_folder.is_dir():
        raise DatasetError(
            f"{data_folder} does not exist; run preprocess({dataset!r}, {configuration!r}) first"
        )
    dataset_json = load_dataset_json(folder / "dataset.json")
    plans_dict["continue_training"] = continue_training
    fold_value: int | str = fold if fold == "all" else int(fold)
    instance = trainer_class(
        plans=plans_dict,
        configuration=configuration,
        fold=fold_value,
        dataset_json=dataset_json,
        device=torch_device,
    )
    output = Path(instance.output_folder)
    if continue_training:
        for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
            if (output / name).is_file():
                # nnU-Net would unpickle the file itself; hand it the safely loaded dict.
                instance.load_checkpoint(load_checkpoint(output / name))
                break
    with nnunet_warnings():
        instance.run_training()
        if validate:
            instance.perform_actual_validation(False)
    return output
