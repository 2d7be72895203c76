"""Regenerate the bundled example nnU-Net probability exports (examples/probabilities/).

They imitate what `nnUNetv2_predict --save_probabilities` writes for a two-fold ensemble:
`fold_K/<case>.npz` with key `probabilities`, float32 (C, Z, Y, X) softmax outputs. The
organs come from the real CT labels bundled for the tests (tests/data/, from the
TotalSegmentator sdist, CC BY 4.0): each fold's logits are the blurred one-hot labels plus
a smooth per-fold disturbance, so the folds agree inside organs and disagree at their
borders, which is where an ensemble's entropy lives.

Run from the repository root: `python examples/make_example_probabilities.py`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT.parent / "tests" / "data" / "Dataset_clasp_ct"
OUT = ROOT / "probabilities"
CASES = ["case_000", "case_002", "case_008", "case_010"]
FOLDS = 2


def fold_probabilities(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    one_hot = np.stack([(labels == c).astype(np.float32) for c in range(n_classes)])
    logits = 6.0 * gaussian_filter(one_hot, sigma=(0, 1.0, 1.5, 1.5))
    logits += gaussian_filter(rng.normal(0, 4.0, one_hot.shape), sigma=(0, 2, 3, 3))
    logits -= logits.max(axis=0, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=0, keepdims=True)
    # On a 2^-12 grid, with background = 1 - the rest (exact in float32), the files compress
    # ~10x and still sum to 1 exactly.
    p[1:] = np.floor(p[1:] * 4096) / 4096
    p[0] = 1.0 - p[1:].sum(axis=0)
    return p.astype(np.float32)


def main() -> None:
    dataset = json.loads((SOURCE / "dataset.json").read_text())
    n_classes = len(dataset["labels"])
    tmp = OUT.with_name(OUT.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(2026)
    for fold in range(FOLDS):
        (tmp / f"fold_{fold}").mkdir(parents=True)
        for case in CASES:
            label_file = SOURCE / "labelsTr" / f"{case}.nii.gz"
            labels = sitk.GetArrayFromImage(sitk.ReadImage(str(label_file)))
            probabilities = fold_probabilities(labels, n_classes, rng)
            np.savez_compressed(tmp / f"fold_{fold}" / f"{case}.npz", probabilities=probabilities)
    example_json = {k: dataset[k] for k in ("name", "channel_names", "labels", "file_ending")}
    (tmp / "dataset.json").write_text(json.dumps(example_json, indent=4) + "\n")
    shutil.rmtree(OUT, ignore_errors=True)
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
