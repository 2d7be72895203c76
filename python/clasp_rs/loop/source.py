"""The nnU-Net raw dataset an experiment starts from: checked before anything is written
(:func:`check_source`), and its files linked (or copied) into the experiment."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from clasp_rs.exceptions import DatasetError
from clasp_rs.io.dataset_json import load_dataset_json, read_dataset_json
from clasp_rs.nnunet.labels import SUPPORTED_ENDINGS
from clasp_rs.nnunet.paths import NnUNetPaths, raw_dataset_folder

__all__ = ["SourceDataset", "check_source", "link_or_copy", "resolve_source"]


@dataclass(frozen=True)
class SourceDataset:
    """A checked nnU-Net raw dataset.

    Attributes:
        folder: ``$nnUNet_raw/DatasetXXX_Name``.
        labels: class name -> value (background included).
        channels: ``channel_names`` of dataset.json.
        file_ending: e.g. ``".nii.gz"``.
        cases: case names with a label file, sorted.
    """

    folder: Path
    labels: dict[str, int]
    channels: dict[str, str]
    file_ending: str
    cases: list[str]

    def label_file(self, case: str) -> Path:
        return self.folder / "labelsTr" / f"{case}{self.file_ending}"

    def image_files(self, case: str) -> list[Path]:
        return [
            self.folder / "imagesTr" / f"{case}_{int(c):04d}{self.file_ending}"
            for c in sorted(self.channels, key=int)
        ]


def link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Hard-link ``source`` to ``target`` (no copy of large images), or copy where links
    are impossible (another filesystem)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def resolve_source(dataset: str, paths: NnUNetPaths) -> Path:
    candidate = Path(dataset)
    if candidate.is_dir():
        return candidate.resolve()
    return raw_dataset_folder(dataset, paths).resolve()


def check_source(folder: Path) -> SourceDataset:
    """Check an nnU-Net raw dataset's dataset.json and files (not the label values).

    Raises:
        FileNotFoundError: no dataset.json.
        DatasetError: an ``ignore`` label already, a file ending clasp-rs cannot write, no
            labelsTr, label files with another ending than dataset.json's, missing images.
    """
    info = read_dataset_json(folder / "dataset.json")
    doc = load_dataset_json(folder / "dataset.json")
    if info.ignore_label is not None:
        raise DatasetError(
            f"{folder / 'dataset.json'} already has an 'ignore' label ({info.ignore_label}); "
            "clasp-rs adds its own ignore label for unannotated voxels: start from the fully "
            "labelled dataset"
        )
    ending = info.file_ending
    if ending not in SUPPORTED_ENDINGS:
        raise DatasetError(
            f"{folder / 'dataset.json'}: file_ending {ending!r} is not supported by the loop; "
            f"expected one of {', '.join(SUPPORTED_ENDINGS)}"
        )
    channels = doc.get("channel_names") or doc.get("modality")
    if not isinstance(channels, dict) or not channels:
        raise DatasetError(f'{folder / "dataset.json"} has no "channel_names" (e.g. {{"0": "CT"}})')
    labels_dir = folder / "labelsTr"
    if not labels_dir.is_dir():
        raise DatasetError(
            f"{folder} has no labelsTr folder: the loop simulates annotation and evaluates "
            "from full labels, one <case>" + ending + " per training case"
        )
    names = sorted(
        p.name for p in labels_dir.iterdir() if p.is_file() and not p.name.startswith(".")
    )
    cases = [n[: -len(ending)] for n in names if n.endswith(ending) and len(n) > len(ending)]
    others = [n for n in names if not n.endswith(ending)]
    if others:
        raise DatasetError(
            f"{labels_dir} holds {len(others)} file(s) that do not end with dataset.json's "
            f"file_ending {ending!r}: {', '.join(others[:5])}"
            + (" ..." if len(others) > 5 else "")
            + "; fix file_ending or the files"
        )
    if not cases:
        raise DatasetError(f"{labels_dir} holds no label files (*{ending})")
    source = SourceDataset(
        folder, dict(info.labels), {str(k): str(v) for k, v in channels.items()}, ending, cases
    )
    missing = [str(p) for case in cases for p in source.image_files(case) if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} image file(s) missing in {folder / 'imagesTr'}, e.g. "
            f"{', '.join(Path(m).name for m in missing[:3])}; expected <case>_XXXX{ending} per "
            "channel for every label file"
        )
    return source
