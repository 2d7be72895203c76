"""The cases of any loop file, found in an nnU-Net images folder (``<case>_0000<ending>``),
ready for :func:`clasp_rs.export.bundle.export_cases`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from clasp_rs.exceptions import DatasetError
from clasp_rs.export.bundle import CaseSource
from clasp_rs.geometry import geometry_mismatches, read_geometry
from clasp_rs.nnunet.labels import SUPPORTED_ENDINGS, read_label
from clasp_rs.patches import patches_by_case, read_loop_file

__all__ = ["channel_files", "loop_file_sources"]


def channel_files(images: Path, case: str, ending: str | None) -> tuple[list[Path], str]:
    """``<case>_0000<ending>``, ``_0001``... of a case in ``images``, and the ending.

    Args:
        images: an nnU-Net images folder.
        case: the case name.
        ending: the file ending, or ``None`` to take the one ``<case>_0000.*`` has.

    Raises:
        DatasetError: no (or several, with ``ending=None``) first-channel files.
    """
    endings = [ending] if ending else list(SUPPORTED_ENDINGS)
    found = [e for e in endings if (images / f"{case}_0000{e}").is_file()]
    if not found:
        raise DatasetError(
            f"{images} has no image of case {case!r} (expected {case}_0000"
            f"{ending or '.nii.gz / .nii / .nrrd / .mha'})"
        )
    if len(found) > 1:
        raise DatasetError(
            f"{images} holds case {case!r} as {', '.join(f'{case}_0000{e}' for e in found)}; "
            "pass --file-ending to choose"
        )
    chosen = found[0]
    files = []
    channel = 0
    while (images / f"{case}_{channel:04d}{chosen}").is_file():
        files.append(images / f"{case}_{channel:04d}{chosen}")
        channel += 1
    return files, chosen


def _label_reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:

        return read_label(path)[0]

    return read


def loop_file_sources(
    loop_file: str | os.PathLike[str],
    images: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    file_ending: str | None = None,
) -> tuple[list[CaseSource], str]:
    """The cases of ``loop_file`` with their scans in ``images``.

    The patches are taken as boxes on each scan's voxel grid (as nnActive and clasp-rs
    write them). With ``labels``, ``<labels>/<case><ending>`` is the current label of a case
    (it must lie on the scan's grid).

    Returns:
        ``(sources, file_ending)``.

    Raises:
        DatasetError: a case's scan is missing, or its label has another geometry.
        LoopFileError: the loop file is unreadable.
    """
    folder = Path(images)
    if not folder.is_dir():
        raise FileNotFoundError(2, "images folder not found", str(folder))
    sources = []
    chosen = file_ending
    for case, patches in patches_by_case(read_loop_file(loop_file)).items():
        files, ending = channel_files(folder, case, chosen)
        chosen = ending
        geometry = read_geometry(files[0])
        label = None
        if labels is not None:
            label_file = Path(labels) / f"{case}{ending}"
            if not label_file.is_file():
                raise DatasetError(f"{labels} has no label file {label_file.name} of case {case!r}")
            problems = geometry_mismatches(read_geometry(label_file), geometry)
            if problems:
                raise DatasetError(
                    f"{label_file}: geometry differs from its scan {files[0].name}: "
                    + "; ".join(problems)
                )
            label = _label_reader(label_file)
        sources.append(CaseSource(case, files, geometry, patches, list(patches), label))
    if chosen is None:
        raise DatasetError(f"{loop_file} lists no patches")
    return sources, chosen
