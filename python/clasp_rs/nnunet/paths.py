"""nnU-Net's three data folders, read from the environment through one helper.

nnU-Net v2 finds its data through the environment variables ``nnUNet_raw``,
``nnUNet_preprocessed`` and ``nnUNet_results``; clasp-rs uses the same ones so that a user's
existing set-up just works. Nothing here imports nnunetv2.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from clasp_rs.exceptions import DatasetError

__all__ = ["NnUNetPaths", "nnunet_paths", "dataset_name", "raw_dataset_folder"]

ENV_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
_SETUP_DOC = "https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/setting_up_paths.md"
_DATASET_NAME = re.compile(r"^Dataset(\d{3})_.+$")


@dataclass(frozen=True)
class NnUNetPaths:
    """The folders nnU-Net reads and writes.

    Attributes:
        raw: ``$nnUNet_raw``, holding ``DatasetXXX_Name/`` with imagesTr, labelsTr, dataset.json.
        preprocessed: ``$nnUNet_preprocessed``, plans and preprocessed arrays.
        results: ``$nnUNet_results``, trained models (one folder per trainer, plans and
            configuration, with ``fold_N/`` inside).
    """

    raw: Path
    preprocessed: Path
    results: Path


def nnunet_paths() -> NnUNetPaths:
    """Read the nnU-Net folders from the environment.

    Returns:
        The three folders; ``preprocessed`` and ``results`` are created when missing.

    Raises:
        DatasetError: a variable is unset or empty (the message lists the ``export`` lines to
            run), or ``nnUNet_raw`` is not an existing folder.
    """
    values = {name: os.environ.get(name, "").strip() for name in ENV_VARIABLES}
    missing = [name for name, value in values.items() if not value]
    if missing:
        exports = "\n".join(f"    export {name}=/path/to/{name}" for name in missing)
        raise DatasetError(
            f"nnU-Net environment variable(s) not set: {', '.join(missing)}. nnU-Net v2 and "
            f"clasp-rs need all of {', '.join(ENV_VARIABLES)} to point at folders, e.g.\n"
            f"{exports}\n(see {_SETUP_DOC})"
        )
    paths = NnUNetPaths(*(Path(values[name]).expanduser() for name in ENV_VARIABLES))
    if not paths.raw.is_dir():
        raise DatasetError(
            f"nnUNet_raw={values['nnUNet_raw']} is not an existing folder; expected the folder "
            f"that holds your DatasetXXX_Name datasets"
        )
    paths.preprocessed.mkdir(parents=True, exist_ok=True)
    paths.results.mkdir(parents=True, exist_ok=True)
    return paths


def dataset_name(dataset: int | str, paths: NnUNetPaths | None = None) -> str:
    """Resolve a dataset id or name to nnU-Net's folder name ``DatasetXXX_Name``.

    Args:
        dataset: the numeric id (``901`` or ``"901"``) or the full name ``"Dataset901_Name"``.
        paths: the nnU-Net folders; read from the environment when None.

    Returns:
        The folder name, as found in ``nnUNet_raw`` (or, failing that, ``nnUNet_preprocessed``
        or ``nnUNet_results``).

    Raises:
        DatasetError: no folder or several folders carry the id, or the name is malformed.
    """
    paths = nnunet_paths() if paths is None else paths
    if isinstance(dataset, str) and dataset.startswith("Dataset"):
        if _DATASET_NAME.match(dataset) is None:
            raise DatasetError(
                f"dataset name {dataset!r} does not follow nnU-Net's pattern DatasetXXX_Name "
                f"(three digits)"
            )
        return dataset
    try:
        dataset_id = int(dataset)
    except (TypeError, ValueError):
        raise DatasetError(
            f"dataset {dataset!r} is neither an integer id nor a name like Dataset001_Name"
        ) from None
    if not 0 <= dataset_id <= 999:
        raise DatasetError(f"dataset id {dataset_id} is outside nnU-Net's range 0..999")
    prefix = f"Dataset{dataset_id:03d}_"
    for base in (paths.raw, paths.preprocessed, paths.results):
        found = sorted(p.name for p in base.glob(prefix + "*") if p.is_dir())
        if len(found) > 1:
            raise DatasetError(f"several datasets with id {dataset_id} in {base}: {found}")
        if found:
            return found[0]
    raise DatasetError(
        f"no dataset with id {dataset_id} ({prefix}*) in nnUNet_raw={paths.raw}, "
        f"nnUNet_preprocessed={paths.preprocessed} or nnUNet_results={paths.results}"
    )


def raw_dataset_folder(dataset: int | str, paths: NnUNetPaths | None = None) -> Path:
    """The raw dataset folder ``$nnUNet_raw/DatasetXXX_Name``.

    Raises:
        DatasetError: as :func:`dataset_name`, or the folder has no dataset.json.
    """
    paths = nnunet_paths() if paths is None else paths
    folder = paths.raw / dataset_name(dataset, paths)
    if not (folder / "dataset.json").is_file():
        raise DatasetError(f"{folder} has no dataset.json; expected an nnU-Net v2 raw dataset")
    return folder
