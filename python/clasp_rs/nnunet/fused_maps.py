"""Fused prediction: every fold's network over a case, straight into its score maps.

The ``.npz`` route (:func:`clasp_rs.nnunet.prediction.predict_probabilities`, then
``clasp-rs query``) writes each fold's probabilities as a compressed archive and decompresses
them again for the maps: zlib work per fold per case and ``M`` probability volumes on disk.
Here a case is preprocessed once, each fold's network predicts it in turn, and its
probabilities, brought back to the raw image's grid exactly as nnU-Net's export does
(resample, softmax, revert the crop, revert the transpose), are added to a
:class:`clasp_rs.uncertainty.FoldAccumulator` (on the GPU when the maps run there). Only the
score maps are written, as uncompressed ``.npy`` files the engine memory-maps.

The same inputs give the same float32 probabilities as the ``.npz`` export, fold by fold, so
the maps equal those computed from the exported files (``tests/test_nnunet_fused_maps.py``).

Output folder of :func:`predict_pool_maps`::

    <case>_c1.npy ... <case>_all.npy, <case>_mi.npy   score maps (as clasp-rs query names them)
    <case>.maps.json                                  written last: the case is complete

so that a shard that died half-way continues with the first case without a manifest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._atomic import write_text_atomic
from clasp_rs.devices import resolve_torch_device
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.dataset_json import load_dataset_json
from clasp_rs.nnunet._runtime import nnunet_ready, nnunet_warnings
from clasp_rs.nnunet.checkpoints import load_checkpoint
from clasp_rs.nnunet.prediction import _fold_predictor, case_image_files

__all__ = [
    "FoldEnsemble",
    "fold_probabilities",
    "load_fold_ensemble",
    "predict_case_maps",
    "predict_ensemble_segmentation",
    "predict_pool_maps",
    "probabilities_on_raw_grid",
    "read_pool_maps",
    "remove_scratch",
]

MANIFEST_SUFFIX = ".maps.json"


@dataclass
class FoldEnsemble:
    """One network and the weights of several folds of a trained nnU-Net model.

    Attributes:
        predictor: an ``nnUNetPredictor`` holding the network (its weights are swapped per
            fold).
        folds: the fold ids, in the order their weights are in ``weights``.
        weights: each fold's state dict, on the CPU.
        dataset_json: the model's dataset.json.
    """

    predictor: Any
    folds: list[int | str]
    weights: list[dict[str, Any]]
    dataset_json: dict[str, Any]

    @property
    def n_classes(self) -> int:
        """C: segmentation outputs (background and every foreground label)."""
        return int(self.predictor.label_manager.num_segmentation_heads)


def load_fold_ensemble(
    model_folder: Path | str,
    folds: Sequence[int | str],
    *,
    device: Any = None,
    checkpoint: str = "checkpoint_final.pth",
    trainer: str | type | None = None,
    use_mirroring: bool = True,
    tile_step_size: float = 0.5,
) -> FoldEnsemble:
    """Build the network once and load every fold's weights.

    Args:
        model_folder: a trained model folder (plans.json, dataset.json, ``fold_N/``).
        folds: folds to ensemble (at least one).
        device: where the network runs (see :func:`clasp_rs.devices.resolve_torch_device`).
        checkpoint: checkpoint file name inside ``fold_N/``.
        trainer: trainer class or name; by default the one stored in the checkpoints.
        use_mirroring, tile_step_size: nnU-Net's sliding-window settings.

    Raises:
        DatasetError: no folds, a missing checkpoint or model file, folds trained with
            different trainers or configurations.
    """
    nnunet_ready()
    if not folds:
        raise DatasetError("no folds to predict with")
    model_folder = Path(model_folder)
    for name in ("plans.json", "dataset.json"):
        if not (model_folder / name).is_file():
            raise DatasetError(f"{model_folder} has no {name}; expected a trained model folder")
    torch_device = resolve_torch_device(device)
    predictor = _fold_predictor(
        model_folder,
        folds[0],
        checkpoint,
        trainer,
        torch_device,
        use_mirroring,
        tile_step_size,
    )
    first = load_checkpoint(model_folder / f"fold_{folds[0]}" / checkpoint)
    weights = [first["network_weights"]]
    for fold in folds[1:]:
        path = model_folder / f"fold_{fold}" / checkpoint
        if not path.is_file():
            raise DatasetError(f"no checkpoint {path}; train fold {fold} first")
        other = load_checkpoint(path)
        for key in ("trainer_name",):
            if other.get(key) != first.get(key):
                raise DatasetError(
                    f"{path}: {key} {other.get(key)!r} differs from fold {folds[0]}'s "
                    f"{first.get(key)!r}; the folds of an ensemble share one network"
                )
        if other["init_args"]["configuration"] != first["init_args"]["configuration"]:
            raise DatasetError(
                f"{path}: configuration {other['init_args']['configuration']!r} differs from "
                f"fold {folds[0]}'s {first['init_args']['configuration']!r}"
            )
        weights.append(other["network_weights"])
    dataset_json = load_dataset_json(model_folder / "dataset.json")
    return FoldEnsemble(predictor, list(folds), weights, dataset_json)


def probabilities_on_raw_grid(
    logits: Any, predictor: Any, properties: dict[str, Any]
) -> np.ndarray:
    """One fold's logits on the preprocessed grid -> its probabilities on the raw grid.

    The steps of nnU-Net's ``convert_predicted_logits_to_segmentation_with_correct_shape``
    with ``return_probabilities=True`` (what ``export_prediction_from_logits`` saves as
    ``.npz``), without the segmentation: resample to the cropped shape, apply the inference
    nonlinearity (softmax), put the crop back into the full image (background 1 outside it),
    revert the axis transpose.

    Args:
        logits: ``(C, *preprocessed shape)`` torch tensor on the CPU (nnU-Net's float16).
        predictor: the ``nnUNetPredictor`` (plans, configuration and label managers).
        properties: nnU-Net's per-case properties from preprocessing.

    Returns:
        float32 ``(C, Z, Y, X)`` on the raw image's grid (a transposed view when the plans
        transpose axes).
    """
    plans_manager = predictor.plans_manager
    configuration_manager = predictor.configuration_manager
    label_manager = predictor.label_manager
    spacing_transposed = [properties["spacing"][i] for i in plans_manager.transpose_forward]
    cropped_shape = properties["shape_after_cropping_and_before_resampling"]
    current_spacing = (
        configuration_manager.spacing
        if len(configuration_manager.spacing) == len(cropped_shape)
        else [spacing_transposed[0], *configuration_manager.spacing]
    )
    resampled = configuration_manager.resampling_fn_probabilities(
        logits, cropped_shape, current_spacing, spacing_transposed
    )
    probabilities = label_manager.apply_inference_nonlin(resampled)
    del resampled
    probabilities = label_manager.revert_cropping_on_probabilities(
        probabilities, properties["bbox_used_for_cropping"], properties["shape_before_cropping"]
    )
    if hasattr(probabilities, "cpu"):
        probabilities = probabilities.cpu().numpy()
    return probabilities.transpose([0] + [i + 1 for i in plans_manager.transpose_backward])


def fold_probabilities(ensemble: FoldEnsemble, images: Sequence[str]) -> Iterator[np.ndarray]:
    """Preprocess one case once, then yield each fold's probabilities on the raw grid.

    Args:
        ensemble: from :func:`load_fold_ensemble`.
        images: the case's channel files, in channel order.

    Yields:
        float32 ``(C, Z, Y, X)``, one array per fold in ``ensemble.folds`` order; each is
        freed when the next is computed (only one fold's probabilities live at a time).
    """
    import torch

    predictor = ensemble.predictor
    preprocessor = predictor.configuration_manager.preprocessor_class(verbose=False)
    with nnunet_warnings():
        data, _, properties = preprocessor.run_case(
            list(images),
            None,
            predictor.plans_manager,
            predictor.configuration_manager,
            ensemble.dataset_json,
        )
    data_tensor = torch.from_numpy(data)
    for weights in ensemble.weights:
        # One fold at a time: nnU-Net's predictor sums the logits of all the parameter sets it
        # holds, and ClaSP PE needs each fold's softmax instead.
        predictor.list_of_parameters = [weights]
        with nnunet_warnings():
            logits = predictor.predict_logits_from_preprocessed_data(data_tensor).cpu()
            probabilities = probabilities_on_raw_grid(logits, predictor, properties)
        del logits
        yield probabilities
        del probabilities


def predict_case_maps(
    ensemble: FoldEnsemble,
    images: Sequence[str],
    *,
    with_mutual_information: bool = False,
    device: str | Any = "auto",
) -> Any:
    """Every fold's network over one case, accumulated into its score maps.

    Args:
        ensemble: from :func:`load_fold_ensemble`.
        images: the case's channel files.
        with_mutual_information: also BALD's mutual information (needs >= 2 folds).
        device: where the maps are computed (``"auto"``: CUDA when present).

    Returns:
        :class:`clasp_rs.uncertainty.CaseMaps` on the CPU: scores float32
        ``(C_fg + 1, Z, Y, X)``, mutual information float32 ``(Z, Y, X)`` or None.
    """
    from clasp_rs.uncertainty import FoldAccumulator

    accumulator = FoldAccumulator(device=device, with_mutual_information=with_mutual_information)
    for fold, probabilities in zip(
        ensemble.folds, fold_probabilities(ensemble, images), strict=True
    ):
        accumulator.add(probabilities, name=f"fold {fold}")
    return accumulator.finish()


def predict_ensemble_segmentation(ensemble: FoldEnsemble, images: Sequence[str]) -> np.ndarray:
    """Argmax of the fold-mean probabilities of one case, as
    :func:`clasp_rs.nnunet.evaluation.ensemble_segmentation` computes it from ``.npz`` files.

    Returns:
        uint8 (uint16 above 256 classes) label map ``(Z, Y, X)`` on the raw grid.
    """
    from clasp_rs.nnunet.evaluation import ensemble_segmentation

    return ensemble_segmentation(fold_probabilities(ensemble, images))


def _manifest(folder: Path, case: str) -> Path:
    return folder / f"{case}{MANIFEST_SUFFIX}"


def _score_set_json(score_set: Any, folder: Path) -> dict[str, Any]:
    def name(source: Any) -> str | None:
        if source is None:
            return None
        path = Path(source)
        if path.parent.resolve() != folder.resolve():
            raise DatasetError(f"score map {path} is not in {folder}")
        return path.name

    return {
        "shape": list(score_set.shape),
        "classes": [name(c) for c in score_set.classes],
        "entropy": name(score_set.entropy),
        "mutual_information": name(score_set.mutual_information),
    }


def _score_set_from_json(doc: Any, folder: Path, where: Path) -> Any:
    from clasp_rs.strategies.base import ScoreSet

    def path(name: Any) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise DatasetError(f"{where}: map name {name!r} is not a file of {folder}")
        file = folder / name
        if not file.is_file() or file.is_symlink():
            raise DatasetError(f"{where}: score map {file} is missing")
        return str(file)

    try:
        shape = tuple(int(s) for s in doc["shape"])
        if len(shape) != 3:
            raise ValueError("shape")
        return ScoreSet(
            shape,  # type: ignore[arg-type]
            tuple(path(c) for c in doc["classes"]),  # type: ignore[misc]
            path(doc["entropy"]),
            path(doc["mutual_information"]),
        )
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{where}: not a score-map manifest written by clasp-rs") from None


def read_pool_maps(folder: Path | str, cases: Iterable[str]) -> dict[str, Any]:
    """The :class:`~clasp_rs.strategies.base.ScoreSet` of each case from the manifests that
    :func:`predict_pool_maps` wrote.

    Raises:
        DatasetError: a case has no (or a malformed) manifest, or a map file is missing.
    """
    folder = Path(folder).resolve()
    out: dict[str, Any] = {}
    for case in cases:
        where = _manifest(folder, case)
        if not where.is_file():
            raise DatasetError(f"no score maps of case {case!r} in {folder} ({where.name})")
        out[case] = _score_set_from_json(json.loads(where.read_text()), folder, where)
    return out


def remove_scratch(folder: Path) -> list[Path]:
    """Remove what a killed writer left in ``folder``: temporary files of atomic writes
    (``.<name>.<random>.tmp``) and maps of cases whose manifest was never written.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    kept: set[str] = set()
    for manifest in folder.glob(f"*{MANIFEST_SUFFIX}"):
        try:
            doc = json.loads(manifest.read_text())
            kept.update(
                n for n in (*doc["classes"], doc["entropy"], doc["mutual_information"]) if n
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # reported by read_pool_maps
    for entry in folder.iterdir():
        if entry.is_symlink() or not entry.is_file():
            continue
        stray_temp = entry.name.startswith(".") and entry.name.endswith(".tmp")
        orphan = entry.suffix == ".npy" and entry.name not in kept
        if stray_temp or orphan:
            entry.unlink()
            removed.append(entry)
    return removed


def predict_pool_maps(
    model_folder: Path | str,
    images_folder: Path | str,
    cases: Iterable[str],
    out: Path | str,
    *,
    folds: Sequence[int | str],
    needs: frozenset[str],
    device: Any = None,
    maps_device: str | Any = "auto",
    checkpoint: str = "checkpoint_final.pth",
    trainer: str | type | None = None,
    use_mirroring: bool = True,
    tile_step_size: float = 0.5,
    dtype: str = "float32",
    on_case: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score maps of ``cases`` from the fold networks, written into ``out``; idempotent.

    Cases whose manifest exists are not predicted again; leftovers of a killed run are
    removed first (see :func:`remove_scratch`).

    Args:
        model_folder: the trained model folder.
        images_folder: ``<case>_XXXX<file_ending>`` images.
        cases: case ids.
        out: output folder (created).
        folds: folds to ensemble.
        needs: what the strategy ranks by (``Strategy.needs``: ``"classes"``,
            ``"entropy"``, ``"mutual_information"``).
        device: where the networks run; ``maps_device``: where the maps are computed.
        checkpoint, trainer, use_mirroring, tile_step_size: as for
            :func:`load_fold_ensemble`.
        dtype: ``.npy`` dtype of the maps.
        on_case: called with each case id once its maps are written (progress).

    Returns:
        case id -> :class:`~clasp_rs.strategies.base.ScoreSet` of ``.npy`` paths.
    """
    from clasp_rs.strategies.scores import score_set_from_maps

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    remove_scratch(out)
    wanted = sorted(set(cases))
    todo = [case for case in wanted if not _manifest(out, case).is_file()]
    if todo:
        ensemble = load_fold_ensemble(
            model_folder,
            folds,
            device=device,
            checkpoint=checkpoint,
            trainer=trainer,
            use_mirroring=use_mirroring,
            tile_step_size=tile_step_size,
        )
        with_mi = "mutual_information" in needs
        for case in todo:
            images = case_image_files(Path(images_folder), case, ensemble.dataset_json)
            maps = predict_case_maps(
                ensemble, images, with_mutual_information=with_mi, device=maps_device
            )
            score_set = score_set_from_maps(case, maps, needs, workdir=out, dtype=dtype)
            del maps
            write_text_atomic(
                _manifest(out, case),
                json.dumps(_score_set_json(score_set, out)) + "\n",
                overwrite=True,
            )
            if on_case is not None:
                on_case(case)
    return read_pool_maps(out, wanted)
