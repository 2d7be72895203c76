"""Fixtures shared by the whole suite. Tests are grouped as the package is (engine, io,
uncertainty, strategies, query, cli, loop, nnunet); this folder is on ``sys.path``, so the
plain helpers next to it (``reference``, ``reference_clasp``, ``generators``, ``testdata``)
import by name.
"""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture
def nnunet_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """:func:`ct_dataset`'s folders set up for training on small CPU machines: augmentation
    and export in-process, no compilation, one torch thread here and in spawned processes
    (tiny networks gain nothing from a second thread, and two threads on two busy cores make
    every step several times slower). Yields ``tmp_path``."""
    pytest.importorskip("nnunetv2")
    import torch

    copy_ct_dataset(monkeypatch, tmp_path)
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    monkeypatch.setenv("nnUNet_compile", "false")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tmp_path
    finally:
        torch.set_num_threads(threads)
