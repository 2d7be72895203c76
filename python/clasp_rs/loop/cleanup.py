"""What a killed run leaves behind, removed by the next one.

Every writer of the loop works on temporary names and publishes in one step, so a kill
leaves no half-written result, only hidden leftovers: temporary files of atomic writes
(``.<name>.<random>.tmp``), the query's map folder (``.clasp_rs_maps_<random>/``), nnU-Net's
per-case scratch folders of prediction and preprocessing (``.<case>.<random>/``) and the label
writer's scratch files (``EXPERIMENT/.scratch/``). The driver holds the experiment's lock
when it calls :func:`remove_leftovers`, so no other driver is writing; ``parts/`` folders are
left alone because sharded runs (``--num-parts``) on other machines may be writing there.

Only hidden entries of the experiment folder and of the experiment's own nnU-Net
preprocessed folder are touched; symlinks are removed as links, never followed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from clasp_rs.loop.experiment import Experiment
from clasp_rs.loop.lock import LOCK_FILE

__all__ = ["remove_leftovers"]

# .<name>.<12 hex>.tmp (clasp_rs._atomic) and .<name>.tmp (older writers).
_TEMP_FILE = re.compile(r"^\..+\.tmp(\.npy)?$")
_MAPS_FOLDER = re.compile(r"^\.clasp_rs_maps_")
# tempfile.mkdtemp(prefix=".<case>.") in prediction and preprocessing: 8 random characters.
_CASE_SCRATCH = re.compile(r"^\..+\.[A-Za-z0-9_]{8}$")
_KEEP = {LOCK_FILE, ".scratch"}


def _remove(path: Path, removed: list[Path]) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
    removed.append(path)


def _sweep(root: Path, removed: list[Path], *, case_scratch: bool) -> None:
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if here.name == "parts":
            dirs[:] = []
            continue
        for name in list(dirs):
            path = here / name
            if name in _KEEP:
                continue
            if _MAPS_FOLDER.match(name) or (case_scratch and _CASE_SCRATCH.match(name)):
                _remove(path, removed)
                dirs.remove(name)
            elif path.is_symlink():
                dirs.remove(name)  # os.walk lists links to folders here; never entered
        for name in files:
            if name not in _KEEP and _TEMP_FILE.match(name):
                _remove(here / name, removed)


def remove_leftovers(exp: Experiment, preprocessed: Path | None = None) -> list[Path]:
    """Remove the leftovers of interrupted runs of ``exp``.

    Args:
        exp: the experiment (its folder is swept, ``parts/`` excepted).
        preprocessed: the experiment's ``$nnUNet_preprocessed/DatasetYYY_Name`` folder, for
            nnU-Net's preprocessing scratch folders; None skips it.

    Returns:
        The removed paths.
    """
    removed: list[Path] = []
    _sweep(exp.root, removed, case_scratch=True)
    scratch = exp.scratch
    if scratch.is_dir() and not scratch.is_symlink():
        for entry in scratch.iterdir():
            _remove(entry, removed)
    if preprocessed is not None and preprocessed.is_dir() and not preprocessed.is_symlink():
        _sweep(preprocessed, removed, case_scratch=True)
    return removed
