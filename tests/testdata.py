"""Where the bundled test data are, and the nnU-Net folders tests run in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

__all__ = ["CT_DATASET", "NNUNET_VARIABLES", "copy_ct_dataset", "set_nnunet_folders"]

#: The bundled CT dataset (12 slabs; see data/ATTRIBUTION.md), an nnU-Net raw dataset.
CT_DATASET = Path(__file__).resolve().parent / "data" / "Dataset_clasp_ct"

#: The environment variables nnU-Net (and clasp-rs) read its folders from.
NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def set_nnunet_folders(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """Create ``root/nnUNet_raw`` & co. and point the nnU-Net variables at them."""
    for name in NNUNET_VARIABLES:
        (root / name).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(root / name))
    return root


def copy_ct_dataset(monkeypatch: pytest.MonkeyPatch, root: Path) -> Path:
    """nnU-Net folders under ``root`` (see :func:`set_nnunet_folders`) with the bundled CT
    dataset copied in as ``Dataset900_clasp_ct``; returns that raw dataset folder."""
    set_nnunet_folders(monkeypatch, root)
    raw = root / "nnUNet_raw" / "Dataset900_clasp_ct"
    shutil.copytree(CT_DATASET, raw)
    return raw
