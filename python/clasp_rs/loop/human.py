"""``clasp-rs annotate``: take a human's label files for the queried patches.

Every file is found and checked before any is applied: its format (NIfTI, NRRD, MHA, a 3D
Slicer ``.seg.nrrd``, or crops written by ``clasp-rs export --crops``), its geometry
against the case's scan, and its labels (see :func:`clasp_rs.loop.annotation.
check_human_labels`). Files are drawn on the scans annotators see, which for cases resampled
at ``init`` are the originals: their labels go back onto the training grid by nearest
neighbour, inside the queried patches only. Then each case's training label gets the
human's values inside its queried patches, a copy of the human's file(s) is kept in
``EXPERIMENT/annotations/loop_NNN/`` (never through a symbolic link), and the step is
recorded. Applying is idempotent, so an interrupted ``annotate`` is simply run again with
the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clasp_rs._safe_paths import copy_into, is_inside, real_dirs
from clasp_rs.exceptions import DatasetError
from clasp_rs.export.crops import DEFAULT_MARGIN_MM
from clasp_rs.loop.annotation import check_human_labels
from clasp_rs.loop.experiment import Experiment, load_experiment
from clasp_rs.loop.label_files import (
    FoundLabels,
    GeometryMismatchError,
    assemble_labels,
    find_label_files,
)
from clasp_rs.loop.lock import experiment_lock
from clasp_rs.loop.spaces import CaseSpace, case_space
from clasp_rs.loop.state import load_state, step_key
from clasp_rs.nnunet.labels import apply_patches, read_label, write_label_like
from clasp_rs.nnunet.paths import nnunet_paths
from clasp_rs.patches import Patch, patches_by_case, read_loop_file

__all__ = ["annotate_experiment"]


def _human_on_training_grid(
    space: CaseSpace,
    found: FoundLabels,
    folder: Path,
    patches: list[Patch],
    current: np.ndarray,
    names: dict[str, int],
    exp: Experiment,
    crop_margin_mm: float,
) -> np.ndarray:
    """A case's human labels, checked on the grid they were drawn on and brought onto the
    training grid. A resampled case is annotated on its original scan (the export hands
    that out); a full label file on the training grid is accepted too."""
    grids = [(space.annotation, space.patches_to_annotation(patches), True)]
    if not space.same_grid and not found.crops:
        grids.append((space.training, patches, False))
    first: GeometryMismatchError | None = None
    for geometry, boxes, is_annotation in grids:
        handed_out = space.label_to_annotation(current) if is_annotation else current
        try:
            human = assemble_labels(
                found, geometry, boxes, handed_out, names, exp.ignore_label, crop_margin_mm
            )
        except GeometryMismatchError as err:
            first = first or err
            continue
        source = found.files[0] if not found.crops else folder / f"{space.case}_pNN"
        ok = check_human_labels(
            space.case, source, human, handed_out, boxes, len(exp.labels), exp.ignore_label
        )
        return space.label_to_training(ok.labels) if is_annotation else ok.labels
    assert first is not None
    if len(grids) > 1:
        raise GeometryMismatchError(
            f"{first} (nor is it on the resampled training grid, {space.training.describe()})"
        )
    raise first


def annotate_experiment(
    experiment: str | Path,
    labels_dir: str | Path,
    *,
    crop_margin_mm: float = DEFAULT_MARGIN_MM,
) -> tuple[int, int]:
    """Apply a human's labels for the query the run is waiting on.

    Args:
        experiment: the experiment folder.
        labels_dir: folder with one label file per queried case (``<case>.nii.gz``, ``.nii``,
            ``.nrrd``, ``.mha`` or ``.seg.nrrd``), or one crop ``<case>_pNN<ending>`` per
            queried patch.
        crop_margin_mm: the margin the crops were exported with.

    Returns:
        ``(loop, cases)``: the training loop whose query was annotated and the number of
        cases updated.

    Raises:
        DatasetError: the run is not waiting for annotation, a file is missing, lies on
            another grid (size, origin, spacing or direction), leaves a queried voxel
            unlabelled or writes outside its patches (nothing is applied then).
        OSError: a folder of the experiment that annotate writes to is a symbolic link.
    """
    exp = load_experiment(experiment)
    with experiment_lock(exp.root, "clasp-rs annotate"):
        paths = nnunet_paths()
        state = load_state(exp.state_file)
        if state.waiting is None:
            raise DatasetError(
                f"experiment {exp.root} is not waiting for annotation (run clasp-rs run without "
                "--simulate first; it stops after writing a query)"
            )
        loop = int(state.waiting["loop"])
        key = step_key(loop, "annotate")
        if state.is_done(key):
            raise DatasetError(f"the query of loop {loop} is already annotated")
        query = read_loop_file(exp.loop_file(loop + 1))
        by_case = patches_by_case(query)
        folder = Path(labels_dir)
        found = find_label_files(folder, by_case, exp.file_ending, experiment=exp.root)
        dataset = paths.raw / exp.dataset_name
        names = {**exp.labels, "ignore": exp.ignore_label}
        checked = []
        for case, patches in by_case.items():
            space = case_space(exp, dataset, case)
            current, reference = read_label(space.training_label)
            training = _human_on_training_grid(
                space, found[case], folder, patches, current, names, exp, crop_margin_mm
            )
            checked.append((case, training, current, reference, patches))
        keep = real_dirs(exp.root, "annotations", f"loop_{loop + 1:03d}")
        scratch = real_dirs(exp.root, exp.scratch.name)
        for case, training, current, reference, patches in checked:
            write_label_like(
                apply_patches(current, training, patches),
                reference,
                dataset / "labelsTr" / exp.file_of(case),
                scratch,
            )
            item = found[case]
            target = real_dirs(keep, "crops") if item.crops else keep
            for path in item.files:
                copy = target / path.name
                if os.path.realpath(path) != os.path.realpath(copy):
                    copy_into(
                        path,
                        copy,
                        overwrite=True,
                        scratch=scratch,
                        follow_source=not is_inside(path, exp.root),
                    )
        state.waiting = None
        state.mark_done(key, 0.0, cases=len(checked), human=True, labels=str(folder))
        return loop, len(checked)
