"""Stock nnU-Net v2 (from PyPI) as the model of the active-learning loop.

Small functions, one per step the loop takes, all on nnU-Net's own APIs:

- :func:`nnunet_paths` reads ``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``;
- :func:`plan_experiment` fingerprints and plans a dataset, :func:`preprocess` preprocesses
  all or some of its cases;
- :func:`train_fold` trains one fold with any trainer class or name (``write_splits`` sets the
  folds);
- :func:`predict_probabilities` writes each fold's class probabilities,
  ``fold_N/<case>.npz`` with key ``probabilities``: float32 (C, Z, Y, X);
- :func:`evaluate_segmentations`, :func:`ensemble_segmentation` and :func:`dice_per_class`
  score predictions;
- :mod:`clasp_rs.nnunet.labels` reads and writes label files and builds the partial labels
  (ground truth inside annotated patches, ``ignore`` elsewhere).

Importing this package imports neither torch nor nnunetv2; the functions load them when
called (a missing one raises ImportError naming ``clasp-rs[nnunet]``). nnU-Net's trainers for
tests live in :mod:`clasp_rs.nnunet.trainers`.
"""

from __future__ import annotations

from pathlib import Path

from clasp_rs.nnunet.evaluation import (
    DiceResult,
    dice_per_class,
    ensemble_segmentation,
    evaluate_segmentations,
)
from clasp_rs.nnunet.paths import NnUNetPaths, dataset_name, nnunet_paths, raw_dataset_folder
from clasp_rs.nnunet.planning import plan_experiment, preprocess, preprocessed_folder, raw_cases
from clasp_rs.nnunet.prediction import PROBABILITIES_KEY, case_image_files, predict_probabilities
from clasp_rs.nnunet.training import model_folder, resolve_trainer, train_fold, write_splits

__all__ = [
    "PROBABILITIES_KEY",
    "DiceResult",
    "NnUNetPaths",
    "case_image_files",
    "dataset_name",
    "dice_per_class",
    "ensemble_segmentation",
    "evaluate_segmentations",
    "external_trainer_folder",
    "model_folder",
    "nnunet_paths",
    "plan_experiment",
    "predict_probabilities",
    "preprocess",
    "preprocessed_folder",
    "raw_cases",
    "raw_dataset_folder",
    "resolve_trainer",
    "train_fold",
    "write_splits",
]


def external_trainer_folder() -> Path:
    """A folder to put in ``nnUNet_extTrainer`` so that nnU-Net's own commands
    (``nnUNetv2_train -tr nnUNetTrainer_clasp_tiny``, ``nnUNetv2_predict``) find clasp-rs's
    trainers by name (nnunetv2 >= 2.6)."""
    return Path(__file__).resolve().parent / "external_trainers"
