"""The human stop of ``clasp-rs run``: the query handed out in ``to_annotate/loop_NNN/``.

The folder gets everything ``clasp-rs export`` writes (scans, the current label files to
fill, box maps, Slicer ROIs, MITK boxes, ITK-SNAP labels, ``patches.csv``), built under a
temporary name and renamed into place, so it exists only complete. It is written once: a
folder already there (an earlier stop of the same run) is left as it is, since a human may be
working in it. No folder on the way is a symbolic link.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clasp_rs._safe_paths import real_dirs
from clasp_rs.export.bundle import case_files
from clasp_rs.export.readme import viewer_commands
from clasp_rs.loop.experiment import Experiment
from clasp_rs.loop.export import export_experiment
from clasp_rs.patches import patches_by_case, read_loop_file

__all__ = ["hand_out", "waiting_message"]


def hand_out(exp: Experiment, loop: int) -> Path:
    """Export ``loop_(loop+1).json`` into ``to_annotate/loop_NNN/`` (unless it is there).

    Returns:
        The folder.

    Raises:
        OSError: ``to_annotate`` or the loop's folder is a symbolic link.
    """
    folder = exp.annotation_folder(loop + 1)
    parent = real_dirs(exp.root, folder.parent.name)
    if os.path.lexists(folder):
        real_dirs(parent, folder.name)  # refuses a link; an existing folder stays as it is
        return folder
    tmp = parent / f".{folder.name}.export-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        export_experiment(exp.root, tmp, loop=loop + 1)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def waiting_message(exp: Experiment, loop: int, folder: Path) -> str:
    """What the run says when it stops for a human: where the files are, which to open in
    which viewer, and the command that goes on."""
    query = exp.loop_file(loop + 1)
    patches = read_loop_file(query)
    cases = sorted(patches_by_case(patches))
    first = cases[0] if cases else ""
    e = exp.file_ending
    files = case_files(first, e)
    lines = [
        f"waiting for annotation: {query.name} queried {len(patches)} patch(es) in "
        f"{len(cases)} case(s); everything is in",
        f"    {folder}/  (README.txt and patches.csv there list the boxes)",
        f"label every voxel inside the boxes in the label files <case>{e} (ignore="
        f"{exp.ignore_label} outside annotated patches); to see {first}'s boxes in place:",
    ]
    lines += [f"    {viewer}: {how}" for viewer, how in viewer_commands(files).items()]
    lines += [
        f"(run the viewer in {folder}), then run",
        f"    clasp-rs annotate {exp.root} --labels {folder}",
    ]
    return "\n".join(lines)
