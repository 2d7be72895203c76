"""Dice per class of segmentations and of fold ensembles against reference labels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clasp_rs.exceptions import DatasetError, InvalidProbabilitiesError
from clasp_rs.io.probabilities import PROBABILITIES_KEY

__all__ = [
    "DiceResult",
    "dice_per_class",
    "ensemble_segmentation",
    "evaluate_segmentations",
]


@dataclass(frozen=True)
class DiceResult:
    """Dice scores of a set of cases.

    Attributes:
        per_case: case id -> label -> Dice (NaN where the label is in neither reference nor
            prediction of that case).
        per_class: label -> mean Dice over the cases where it is defined (NaN if nowhere).
        mean: mean of the defined ``per_class`` values (NaN if none).
    """

    per_case: dict[str, dict[int, float]]
    per_class: dict[int, float]
    mean: float


def dice_per_class(
    reference: np.ndarray,
    prediction: np.ndarray,
    labels: Sequence[int],
    ignore_label: int | None = None,
) -> dict[int, float]:
    """Dice ``2 TP / (2 TP + FP + FN)`` of each label.

    Args:
        reference: integer label map (Z, Y, X).
        prediction: integer label map of the same shape.
        labels: the foreground labels to score.
        ignore_label: voxels with this value in ``reference`` are left out.

    Returns:
        label -> Dice in [0, 1], or NaN when the label is absent from both maps (as nnU-Net
        reports it).

    Raises:
        ValueError: the shapes differ.
    """
    if reference.shape != prediction.shape:
        raise ValueError(
            f"reference shape {reference.shape} != prediction shape {prediction.shape}"
        )
    keep = None if ignore_label is None else reference != ignore_label
    scores: dict[int, float] = {}
    for label in labels:
        ref = reference == label
        pred = prediction == label
        if keep is not None:
            ref &= keep
            pred &= keep
        tp = int(np.count_nonzero(ref & pred))
        denominator = int(np.count_nonzero(ref)) + int(np.count_nonzero(pred))
        scores[int(label)] = 2.0 * tp / denominator if denominator else math.nan
    return scores


def ensemble_segmentation(probability_files: Sequence[Path | str]) -> np.ndarray:
    """Argmax of the mean of per-fold class probabilities.

    Args:
        probability_files: ``.npz`` files of one case, one per fold, each with key
            ``probabilities``: float (C, Z, Y, X), channel 0 background.

    Returns:
        uint8 (or uint16 for more than 255 classes) label map (Z, Y, X); channel index =
        label value, as for nnU-Net's non-region datasets.

    Raises:
        InvalidProbabilitiesError: no files, a missing key, or shapes that differ.
    """
    if not probability_files:
        raise InvalidProbabilitiesError("no probability files to ensemble")
    total: np.ndarray | None = None
    for path in probability_files:
        with np.load(path, allow_pickle=False) as data:
            if PROBABILITIES_KEY not in data:
                raise InvalidProbabilitiesError(
                    f"{path} has no 'probabilities' array (has {list(data.keys())})"
                )
            probabilities = data[PROBABILITIES_KEY]
        if probabilities.ndim != 4:
            raise InvalidProbabilitiesError(
                f"{path}: probabilities of shape {probabilities.shape}; expected (C, Z, Y, X)"
            )
        if total is None:
            total = probabilities.astype(np.float64)
        elif total.shape != probabilities.shape:
            raise InvalidProbabilitiesError(
                f"{path}: shape {probabilities.shape} differs from {total.shape} of the other folds"
            )
        else:
            total += probabilities
    assert total is not None
    dtype = np.uint8 if total.shape[0] <= 256 else np.uint16
    return np.argmax(total, axis=0).astype(dtype)


def evaluate_segmentations(
    references: Mapping[str, Path | str | np.ndarray],
    predictions: Mapping[str, Path | str | np.ndarray],
    labels: Iterable[int],
    ignore_label: int | None = None,
) -> DiceResult:
    """Dice per case and class, and the means over cases and classes.

    Args:
        references: case id -> reference label map (array (Z, Y, X) or image file).
        predictions: case id -> predicted label map; must have the same case ids.
        labels: foreground labels to score.
        ignore_label: reference value whose voxels are left out.

    Raises:
        DatasetError: the case ids differ.
        ValueError: a prediction's shape differs from its reference.
    """
    if set(references) != set(predictions):
        missing = sorted(set(references) - set(predictions))
        extra = sorted(set(predictions) - set(references))
        raise DatasetError(f"cases differ: no prediction for {missing}, no reference for {extra}")
    labels = [int(label) for label in labels]
    per_case: dict[str, dict[int, float]] = {}
    for case in sorted(references):
        ref = _as_array(references[case])
        pred = _as_array(predictions[case])
        if ref.shape != pred.shape:
            raise ValueError(f"case {case!r}: prediction {pred.shape} != reference {ref.shape}")
        per_case[case] = dice_per_class(ref, pred, labels, ignore_label)
    per_class = {
        label: _nanmean([scores[label] for scores in per_case.values()]) for label in labels
    }
    return DiceResult(per_case, per_class, _nanmean(list(per_class.values())))


def _as_array(value: Path | str | np.ndarray) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    from clasp_rs.nnunet.labels import read_label

    return read_label(value)[0]


def _nanmean(values: list[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan
