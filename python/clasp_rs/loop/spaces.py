"""Where a case is trained and where it is annotated.

The loop queries patches on the training grid (the nnU-Net dataset's ``imagesTr`` /
``labelsTr``). An annotator works on the scan as it came: for a case that ``clasp-rs init``
resampled to the dataset's target spacing, that is ``EXPERIMENT/original/``; for every other
case the two grids are the same. :class:`CaseSpace` maps between them in physical space:
patches to the original voxels that cover them, label maps by nearest neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clasp_rs.export.sources import channel_files
from clasp_rs.geometry import ImageGeometry, covering_box, read_geometry
from clasp_rs.loop.experiment import Experiment
from clasp_rs.patches import Patch

__all__ = ["CaseSpace", "case_space"]


@dataclass(frozen=True)
class CaseSpace:
    """The training and the annotation grid of one case.

    Attributes:
        case: case name.
        training: the grid of the training label (``labelsTr``).
        annotation: the grid of the scan annotators see.
        images: the channel files on the annotation grid.
        training_label: the training label file.
    """

    case: str
    training: ImageGeometry
    annotation: ImageGeometry
    images: list[Path]
    training_label: Path

    @property
    def same_grid(self) -> bool:
        """True when annotation and training grid are one (the case was not resampled)."""
        return self.training == self.annotation

    def patches_to_annotation(self, patches: Sequence[Patch]) -> list[Patch]:
        """The annotation-grid boxes covering the training-grid ``patches``."""
        if self.same_grid:
            return list(patches)
        return [covering_box(p, self.training, self.annotation, name=self.case) for p in patches]

    def label_to_annotation(self, labels: np.ndarray) -> np.ndarray:
        """A training-grid label map on the annotation grid (nearest neighbour)."""
        if self.same_grid:
            return labels
        from clasp_rs.resample import resample_array

        return resample_array(labels, self.training, self.annotation, labels=True)

    def label_to_training(self, labels: np.ndarray) -> np.ndarray:
        """An annotation-grid label map on the training grid (nearest neighbour)."""
        if self.same_grid:
            return labels
        from clasp_rs.resample import resample_array

        return resample_array(labels, self.annotation, self.training, labels=True)


def case_space(exp: Experiment, dataset: Path, case: str) -> CaseSpace:
    """The grids of a pool case of ``exp``, whose nnU-Net dataset folder is ``dataset``."""
    label = dataset / "labelsTr" / exp.file_of(case)
    training = read_geometry(label)
    if case in exp.resampled:
        images, _ = channel_files(exp.original_folder() / "imagesTr", case, exp.file_ending)
        annotation = read_geometry(images[0])
    else:
        images, _ = channel_files(dataset / "imagesTr", case, exp.file_ending)
        annotation = training
    return CaseSpace(case, training, annotation, images, label)
