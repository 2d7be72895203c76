"""Per-fold class probabilities from trained nnU-Net v2 models.

nnU-Net's ensemble prediction averages the *logits* of the folds; ClaSP PE needs each fold's
softmax. So every fold predicts on its own, into its own folder::

    output_folder/fold_0/<case>.npz      key "probabilities": float32 (C, Z, Y, X)
    output_folder/fold_0/<case>.nii.gz   the fold's argmax segmentation
    output_folder/fold_0/<case>.pkl      nnU-Net's image properties (never read by clasp-rs)

``C`` counts background and every foreground label (not ``ignore``), in label order; the
spatial axes are in SimpleITK / nnU-Net array order, on the raw image's grid, and the
channels sum to 1 at every voxel. A case counts as done when its ``.npz`` exists: files are
written in a scratch folder and moved into place, ``.npz`` last, so an interrupted run leaves
no partial results behind and a rerun with ``overwrite=False`` continues where it stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clasp_rs.devices import resolve_torch_device
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.dataset_json import load_dataset_json
from clasp_rs.io.json_files import read_json
from clasp_rs.io.probabilities import PROBABILITIES_KEY
from clasp_rs.nnunet._runtime import nnunet_ready, nnunet_warnings
from clasp_rs.nnunet.checkpoints import load_checkpoint
from clasp_rs.nnunet.training import resolve_trainer

__all__ = ["PROBABILITIES_KEY", "predict_probabilities", "case_image_files"]


def case_image_files(images_folder: Path, case: str, dataset_json: dict) -> list[str]:
    """The channel files ``<case>_XXXX<file_ending>`` of one case.

    Raises:
        FileNotFoundError: a channel file is missing.
    """
    ending = dataset_json["file_ending"]
    files = []
    for channel in sorted(int(c) for c in dataset_json["channel_names"]):
        path = Path(images_folder) / f"{case}_{channel:04d}{ending}"
        if not path.is_file():
            raise FileNotFoundError(
                f"image {path} of case {case!r} not found; expected one file per channel "
                f"named <case>_XXXX{ending}"
            )
        files.append(str(path))
    return files


def predict_probabilities(
    model_folder: Path | str,
    images_folder: Path | str,
    output_folder: Path | str,
    cases: Iterable[str],
    *,
    folds: Sequence[int | str] = (0,),
    trainer: str | type | None = None,
    checkpoint: str = "checkpoint_final.pth",
    device: Any = None,
    use_mirroring: bool = True,
    tile_step_size: float = 0.5,
    overwrite: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
) -> dict[str, list[Path]]:
    """Predict class probabilities of ``cases`` with each fold separately.

    Args:
        model_folder: the trained model folder (see ``model_folder``), holding plans.json,
            dataset.json and ``fold_N/<checkpoint>``.
        images_folder: folder with the cases' images ``<case>_XXXX<file_ending>``.
        output_folder: receives ``fold_N/<case>.npz`` (and ``.nii.gz``, ``.pkl``).
        cases: case ids.
        folds: folds to predict with.
        trainer: the trainer class (or name) that built the network; by default the name
            stored in the checkpoint, resolved as in ``resolve_trainer``.
        checkpoint: checkpoint file name inside ``fold_N/``.
        device: ``"cpu"``, ``"cuda"``, a ``torch.device``, or None for CUDA when available.
        use_mirroring: test-time mirroring where the trainer allows it (nnU-Net's default).
        tile_step_size: sliding-window step as a fraction of the patch size.
        overwrite: predict again cases whose ``.npz`` exists.
        num_parts, part_id: shard the sorted cases, as nnU-Net's ``-num_parts/-part_id``:
            this call handles ``sorted(cases)[part_id::num_parts]``.

    Returns:
        case id -> the ``.npz`` paths, one per fold in ``folds`` order, for this part's cases.

    Raises:
        DatasetError: the model folder or a fold's checkpoint is missing.
        FileNotFoundError: an image is missing.
        ValueError: bad sharding arguments, unknown trainer or device.
    """
    nnunet_ready()
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(
            f"part_id {part_id} / num_parts {num_parts}: need 0 <= part_id < num_parts"
        )
    model_folder = Path(model_folder)
    output_folder = Path(output_folder)
    for name in ("plans.json", "dataset.json"):
        if not (model_folder / name).is_file():
            raise DatasetError(f"{model_folder} has no {name}; expected a trained model folder")
    dataset_json = load_dataset_json(model_folder / "dataset.json")
    mine = sorted(set(cases))[part_id::num_parts]
    inputs = {case: case_image_files(Path(images_folder), case, dataset_json) for case in mine}
    torch_device = resolve_torch_device(device)

    results: dict[str, list[Path]] = {case: [] for case in mine}
    for fold in folds:
        fold_out = output_folder / f"fold_{fold}"
        todo = [c for c in mine if overwrite or not (fold_out / f"{c}.npz").is_file()]
        if todo:
            predictor = _fold_predictor(
                model_folder, fold, checkpoint, trainer, torch_device, use_mirroring, tile_step_size
            )
            fold_out.mkdir(parents=True, exist_ok=True)
            with nnunet_warnings():
                for case in todo:
                    ending = dataset_json["file_ending"]
                    _predict_case(predictor, inputs[case], fold_out, case, ending)
        for case in mine:
            results[case].append(fold_out / f"{case}.npz")
    return results


def _fold_predictor(
    model_folder: Path,
    fold: int | str,
    checkpoint_name: str,
    trainer: str | type | None,
    device: Any,
    use_mirroring: bool,
    tile_step_size: float,
) -> Any:
    """An ``nnUNetPredictor`` holding one fold's weights.

    Built like ``nnUNetPredictor.initialize_from_trained_model_folder`` but with the trainer
    class resolved by us, so trainers outside nnunetv2 work without ``nnUNet_extTrainer``.
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    path = model_folder / f"fold_{fold}" / checkpoint_name
    if not path.is_file():
        raise DatasetError(f"no checkpoint {path}; train fold {fold} first")
    checkpoint = load_checkpoint(path)
    trainer_class: Any = resolve_trainer(
        trainer if trainer is not None else checkpoint["trainer_name"]
    )
    dataset_json = load_dataset_json(model_folder / "dataset.json")
    plans_manager = PlansManager(read_json(model_folder / "plans.json", "nnU-Net plans"))
    configuration_manager = plans_manager.get_configuration(
        checkpoint["init_args"]["configuration"]
    )
    if configuration_manager.previous_stage_name is not None:
        raise DatasetError(
            f"{path} is a cascade stage ({checkpoint['init_args']['configuration']}); per-fold "
            f"probabilities are supported for single-stage configurations (2d, 3d_fullres, ...)"
        )
    num_inputs = determine_num_input_channels(plans_manager, configuration_manager, dataset_json)
    num_outputs = plans_manager.get_label_manager(dataset_json).num_segmentation_heads
    network = trainer_class.build_network_architecture(
        plans_manager,
        configuration_manager,
        num_inputs,
        num_outputs,
        enable_deep_supervision=False,
    )
    network.load_state_dict(checkpoint["network_weights"])
    predictor = nnUNetPredictor(
        tile_step_size=tile_step_size,
        use_gaussian=True,
        use_mirroring=use_mirroring,
        perform_everything_on_device=device.type == "cuda",
        device=device,
        verbose=False,
        verbose_preprocessing=False,
        allow_tqdm=False,
    )
    predictor.manual_initialization(
        network,
        plans_manager,
        configuration_manager,
        [checkpoint["network_weights"]],
        dataset_json,
        trainer_class.__name__,
        checkpoint.get("inference_allowed_mirroring_axes"),
    )
    return predictor


def _predict_case(
    predictor: Any, images: list[str], fold_out: Path, case: str, file_ending: str
) -> None:
    scratch = Path(tempfile.mkdtemp(prefix=f".{case}.", dir=fold_out))
    try:
        # predict_from_files_sequential runs preprocessing, sliding window and export in this
        # process (predict_from_files spawns pools sized by nnUNet_def_n_proc).
        predictor.predict_from_files_sequential(
            [images], [str(scratch / case)], save_probabilities=True, overwrite=True
        )
        for suffix in (file_ending, ".pkl", ".npz"):
            produced = scratch / f"{case}{suffix}"
            if produced.is_file():
                os.replace(produced, fold_out / produced.name)
        if not (fold_out / f"{case}.npz").is_file():
            raise DatasetError(f"nnU-Net wrote no probabilities for case {case!r} in {scratch}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
