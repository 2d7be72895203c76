"""Fixtures shared by the whole suite. Tests are grouped as the package is (engine, io,
uncertainty, strategies, query, cli, loop, nnunet); this folder is on ``sys.path``, so the
plain helpers next to it (``reference``, ``reference_clasp``, ``generators``, ``testdata``)
import by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testdata import copy_ct_dataset, set_nnunet_folders


@pytest.fixture
def nnunet_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty nnU-Net folders under ``tmp_path``, in the environment; returns ``tmp_path``."""
    return set_nnunet_folders(monkeypatch, tmp_path)


@pytest.fixture
def ct_dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """nnU-Net folders under ``tmp_path`` with the bundled CT dataset as
    ``Dataset900_clasp_ct``; returns that raw dataset folder."""
    return copy_ct_dataset(monkeypatch, tmp_path)
