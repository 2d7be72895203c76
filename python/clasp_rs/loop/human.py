"""``clasp-rs annotate``: take a human's label files for the queried patches.

Every file is checked before any is applied (see
:func:`clasp_rs.loop.annotation.check_human_labels`); then each case's training label gets
the human's values inside its queried patches, a copy of the human's file is kept in
``EXPERIMENT/annotations/loop_NNN/``, and the step is recorded. Applying is idempotent, so an
interrupted ``annotate`` is simply run again with the same files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.annotation import check_human_labels, human_label_files
from clasp_rs.loop.experiment import load_experiment
from clasp_rs.loop.lock import experiment_lock
from clasp_rs.loop.state import load_state, step_key
from clasp_rs.nnunet.labels import apply_patches, read_label, write_label_like
from clasp_rs.nnunet.paths import nnunet_paths
from clasp_rs.patches import patches_by_case, read_loop_file

__all__ = ["annotate_experiment"]


def annotate_experiment(experiment: str | Path, labels_dir: str | Path) -> tuple[int, int]:
    """Apply a human's labels for the query the run is waiting on.

    Args:
        experiment: the experiment folder.
        labels_dir: folder with one ``<case><file_ending>`` per queried case.

    Returns:
        ``(loop, cases)``: the training loop whose query was annotated and the number of
        cases updated.

    Raises:
        DatasetError: the run is not waiting for annotation, a file is missing, has the wrong
            shape, leaves a queried voxel unlabelled or writes outside its patches (nothing
            is applied then).
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
        files = human_label_files(Path(labels_dir), by_case, exp.file_ending)
        dataset = paths.raw / exp.dataset_name
        n_classes = len(exp.labels)
        checked = []
        for case, patches in by_case.items():
            current, reference = read_label(dataset / "labelsTr" / exp.file_of(case))
            human, _ = read_label(files[case])
            checked.append(
                (
                    check_human_labels(
                        case, files[case], human, current, patches, n_classes, exp.ignore_label
                    ),
                    current,
                    reference,
                    patches,
                )
            )
        keep = exp.root / "annotations" / f"loop_{loop + 1:03d}"
        keep.mkdir(parents=True, exist_ok=True)
        exp.scratch.mkdir(exist_ok=True)
        for checked_labels, current, reference, patches in checked:
            target = dataset / "labelsTr" / exp.file_of(checked_labels.case)
            write_label_like(
                apply_patches(current, checked_labels.labels, patches),
                reference,
                target,
                exp.scratch,
            )
            copy = keep / exp.file_of(checked_labels.case)
            if Path(checked_labels.path).resolve() != copy.resolve():
                shutil.copyfile(checked_labels.path, copy)
        state.waiting = None
        state.mark_done(key, 0.0, cases=len(checked), human=True, labels=str(Path(labels_dir)))
        return loop, len(checked)
