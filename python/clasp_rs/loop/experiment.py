"""The experiment folder: ``experiment.json`` (written once by ``clasp-rs init``) and the
paths of everything a run writes.

``experiment.json`` holds::

    {"version": 1, "clasp_rs": "0.1.0", "seed": 0,
     "source": {"name": "Dataset900_X", "folder": "/abs/nnUNet_raw/Dataset900_X"},
     "dataset": {"id": 901, "name": "Dataset901_X_clasp"},   # the nnU-Net dataset trained on
     "labels": {"background": 0, "liver": 1, ...}, "ignore_label": 4,
     "channels": {"0": "CT"}, "file_ending": ".nii.gz",
     "split": {"pool": [...], "test": [...]},
     "patch_size": [dz, dy, dx], "budget": 150, "start_budget": 150, "hard_classes": [],
     "foreground_voxels": {"case": {"1": n, ...}, ...},     # ground-truth counts of the pool
     "resampling": {"spacing": [z, y, x], "cases": [...]}}  # only when spacings differed

With ``resampling``, the listed cases were resampled to that spacing for training (nnU-Net's
3d_fullres target spacing); their original scans and labels are kept in
``original/imagesTr`` and ``original/labelsTr``, where annotators see them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs.io.json_files import malformed_json, read_folder_json

__all__ = ["EXPERIMENT_FILE", "Experiment", "load_experiment"]

EXPERIMENT_FILE = "experiment.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Experiment:
    """A loaded ``experiment.json`` and the folder it lives in."""

    root: Path
    seed: int
    source_name: str
    source_folder: Path
    dataset_id: int
    dataset_name: str
    labels: dict[str, int]
    ignore_label: int
    channels: dict[str, str]
    file_ending: str
    pool: list[str]
    test: list[str]
    patch_size: tuple[int, int, int]
    budget: int
    start_budget: int
    hard_classes: list[int] = field(default_factory=list)
    foreground_voxels: dict[str, dict[str, int]] = field(default_factory=dict)
    target_spacing: tuple[float, float, float] | None = None
    resampled: list[str] = field(default_factory=list)

    # -- names ---------------------------------------------------------------------------------

    @property
    def foreground(self) -> list[int]:
        """Foreground label values, ascending (``ignore`` excluded)."""
        return sorted(v for v in self.labels.values() if v > 0)

    @property
    def label_names(self) -> dict[int, str]:
        return {v: k for k, v in self.labels.items()}

    def file_of(self, case: str) -> str:
        """``<case><file_ending>``: the label file name and ``Patch.file`` of a case."""
        return f"{case}{self.file_ending}"

    # -- paths ---------------------------------------------------------------------------------

    def dataset_folder(self, raw: Path) -> Path:
        """``$nnUNet_raw/DatasetYYY_Name`` of the dataset the loop trains on."""
        return raw / self.dataset_name

    def loop_file(self, loop: int) -> Path:
        """``loop_NNN.json``: the starting budget (0) or the query made after loop - 1."""
        return self.root / f"loop_{loop:03d}.json"

    def loop_folder(self, loop: int) -> Path:
        """Outputs of training loop ``loop``."""
        return self.root / "loops" / f"loop_{loop:03d}"

    def ground_truth(self, case: str) -> Path:
        """Full ground-truth label file of a pool case."""
        return self.root / "ground_truth" / self.file_of(case)

    def original_folder(self) -> Path:
        """``original/``: the scans (``imagesTr``) and labels (``labelsTr``) of the cases that
        were resampled for training, as they came."""
        return self.root / "original"

    def annotation_folder(self, loop: int) -> Path:
        """Where a human finds the label files to complete for ``loop_NNN.json``."""
        return self.root / "to_annotate" / f"loop_{loop:03d}"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def scratch(self) -> Path:
        """Temporary files of atomic writes (same filesystem as the experiment)."""
        return self.root / ".scratch"

    # -- serialisation -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        from clasp_rs import __version__

        return {
            "version": FORMAT_VERSION,
            "clasp_rs": __version__,
            "seed": self.seed,
            "source": {"name": self.source_name, "folder": str(self.source_folder)},
            "dataset": {"id": self.dataset_id, "name": self.dataset_name},
            "labels": self.labels,
            "ignore_label": self.ignore_label,
            "channels": self.channels,
            "file_ending": self.file_ending,
            "split": {"pool": self.pool, "test": self.test},
            "patch_size": list(self.patch_size),
            "budget": self.budget,
            "start_budget": self.start_budget,
            "hard_classes": self.hard_classes,
            "foreground_voxels": self.foreground_voxels,
            **(
                {
                    "resampling": {
                        "spacing": list(self.target_spacing),
                        "cases": list(self.resampled),
                    }
                }
                if self.target_spacing is not None
                else {}
            ),
        }


def load_experiment(root: str | os.PathLike[str]) -> Experiment:
    """Read ``EXPERIMENT/experiment.json``.

    Raises:
        FileNotFoundError: the folder or its experiment.json does not exist.
        DatasetError: the file is not an experiment written by ``clasp-rs init``.
    """
    hint = "; expected the file clasp-rs init writes"
    folder, doc = read_folder_json(
        root,
        EXPERIMENT_FILE,
        kind="experiment",
        command="clasp-rs init",
        version=FORMAT_VERSION,
        hint=hint,
    )
    with malformed_json(folder / EXPERIMENT_FILE, hint):
        return Experiment(
            root=folder,
            seed=int(doc["seed"]),
            source_name=str(doc["source"]["name"]),
            source_folder=Path(doc["source"]["folder"]),
            dataset_id=int(doc["dataset"]["id"]),
            dataset_name=str(doc["dataset"]["name"]),
            labels={str(k): int(v) for k, v in doc["labels"].items()},
            ignore_label=int(doc["ignore_label"]),
            channels={str(k): str(v) for k, v in doc["channels"].items()},
            file_ending=str(doc["file_ending"]),
            pool=[str(c) for c in doc["split"]["pool"]],
            test=[str(c) for c in doc["split"]["test"]],
            patch_size=tuple(int(s) for s in doc["patch_size"]),  # type: ignore[arg-type]
            budget=int(doc["budget"]),
            start_budget=int(doc["start_budget"]),
            hard_classes=[int(c) for c in doc.get("hard_classes", [])],
            foreground_voxels={
                str(case): {str(k): int(v) for k, v in counts.items()}
                for case, counts in doc.get("foreground_voxels", {}).items()
            },
            target_spacing=(
                tuple(float(v) for v in doc["resampling"]["spacing"])  # type: ignore[arg-type]
                if "resampling" in doc
                else None
            ),
            resampled=[str(c) for c in doc.get("resampling", {}).get("cases", [])],
        )
