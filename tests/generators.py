"""Random class probabilities, label maps and probability exports for tests (plain
functions, usable inside hypothesis strategies).

All return float32 arrays that sum to 1 over the class axis: ``(C, Z, Y, X)`` for one volume
or ``(M, C, Z, Y, X)`` for M folds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clasp_rs import Patch
from clasp_rs.strategies.random_fg import _centred_box

__all__ = [
    "LABELS",
    "gamma_probabilities",
    "is_centred_on",
    "label_volumes",
    "smooth_probabilities",
    "write_dataset",
    "write_export",
]


def gamma_probabilities(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    c: int,
    m: int | None = None,
    *,
    quantized: bool = False,
    floor_background_only: bool = False,
) -> np.ndarray:
    """Spiky probabilities from Gamma(0.4) draws, normalised over C.

    Args:
        shape: ``(Z, Y, X)``.
        c: classes (channel 0 is background).
        m: folds, or None for one ``(C, Z, Y, X)`` volume.
        quantized: few distinct values instead (integers 0..2, background + 1): many exact
            ties between candidates.
        floor_background_only: add the 1e-3 floor to the background channel only (so
            foreground channels can be exactly 0) instead of to every channel.
    """
    full = (c, *shape) if m is None else (m, c, *shape)
    if quantized:
        x = rng.integers(0, 3, size=full).astype(np.float64)
        x[..., 0, :, :, :] += 1
    elif floor_background_only:
        x = rng.gamma(0.4, size=full)
        x[..., 0, :, :, :] += 1e-3
    else:
        x = rng.gamma(0.4, size=full) + 1e-3
    axis = 0 if m is None else 1
    return (x / x.sum(axis=axis, keepdims=True)).astype(np.float32)


def smooth_probabilities(
    rng: np.random.Generator, shape: tuple[int, ...], c: int = 3
) -> np.ndarray:
    """(C, Z, Y, X) float32 softmax of smooth random logits."""
    logits = rng.normal(size=(c, *shape))
    for axis in range(1, 4):
        logits = (logits + np.roll(logits, 1, axis) + np.roll(logits, -1, axis)) / 3
    e = np.exp(3 * logits)
    return (e / e.sum(axis=0)).astype(np.float32)


def label_volumes(seed: int, n_cases: int = 3, shape=(12, 14, 16), classes: int = 3):
    """Integer labels: background with a few blobs of classes 1..classes-1."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n_cases):
        lab = np.zeros(shape, np.uint8)
        for c in range(1, classes):
            for _ in range(2):
                z, y, x = (int(rng.integers(0, s - 3)) for s in shape)
                lab[z : z + 3, y : y + 3, x : x + 3] = c
        out[f"case_{i}"] = lab
    return out


def is_centred_on(patch: Patch, labels: np.ndarray, value: int, patch_size) -> bool:
    """Whether ``patch`` is the patch centred on some voxel of ``labels`` equal to ``value``."""
    for flat in np.flatnonzero(labels.reshape(-1) == value):
        box = _centred_box(int(flat), labels.shape, patch_size)
        if box == (*patch.coords, *patch.size):
            return True
    return False


# -- nnU-Net probability exports on disk ---------------------------------------------------

LABELS = {"background": 0, "liver": 1, "tumor": 2, "ignore": 3}


def write_dataset(folder: Path, labels=None, **extra) -> Path:
    doc = {
        "labels": LABELS if labels is None else labels,
        "file_ending": ".nii.gz",
        "channel_names": {"0": "CT"},
        **extra,
    }
    path = folder / "dataset.json"
    path.write_text(json.dumps(doc))
    return path


def write_export(folder: Path, n_cases=5, folds=2, seed=0, shapes=None) -> dict[str, list[Path]]:
    """``folder/fold_k/case_XXX.npz`` (or ``folder/case_XXX.npz`` with ``folds=0``)."""
    rng = np.random.default_rng(seed)
    sources: dict[str, list[Path]] = {}
    for i in range(n_cases):
        case = f"case_{i:03d}"
        shape = shapes[i] if shapes else (8 + i, 10, 9 + (i % 3))
        for k in range(max(folds, 1)):
            sub = folder / f"fold_{k}" if folds else folder
            sub.mkdir(parents=True, exist_ok=True)
            path = sub / f"{case}.npz"
            np.savez_compressed(path, probabilities=smooth_probabilities(rng, shape))
            sources.setdefault(case, []).append(path)
    return sources
