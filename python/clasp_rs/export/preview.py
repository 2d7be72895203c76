"""A PNG of what an annotator will see: for each patch of one exported case, the axial,
coronal and sagittal slice through its centre, shown as 3D Slicer and ITK-SNAP show them
(radiological convention: patient left on the right; anterior up in axial views, superior up
in coronal and sagittal ones), with the box label map laid over the scan and the outline
of the 3D Slicer ROI read back from the ``.mrk.json``. Where the two disagree, the export
is wrong.

Everything is read from the export folder; scan and box map are brought into LPS index order
with SimpleITK's ``DICOMOrient`` (axis permutations and flips only, as ITK-SNAP picks the
closest anatomical orientation of an oblique scan).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._optional import import_simpleitk
from clasp_rs.export.labels import PALETTE

__all__ = ["render_case_preview"]

_VIEWS = (
    # name, index axis fixed (i, j, k), in-plane (column axis, row axis), labels
    # (left, right, top, bottom) of the screen edges.
    ("axial", 2, (0, 1), ("R", "L", "A", "P")),
    ("coronal", 1, (0, 2), ("R", "L", "S", "I")),
    ("sagittal", 0, (1, 2), ("A", "P", "S", "I")),
)


def _roi_corners(markup: dict[str, Any]) -> np.ndarray:
    rotation = np.asarray(markup["orientation"], dtype=np.float64).reshape(3, 3)
    centre = np.asarray(markup["center"], dtype=np.float64)
    if markup.get("coordinateSystem", "LPS") == "RAS":
        centre = centre * [-1, -1, 1]
        rotation = rotation * np.array([[-1], [-1], [1]])
    half = np.asarray(markup["size"], dtype=np.float64) / 2
    signs = np.array([[1 if (c >> a) & 1 else -1 for a in range(3)] for c in range(8)])
    result: np.ndarray = centre + (signs * half) @ rotation.T
    return result


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2-D slice of an (i, j, k)-indexed volume at ``index`` on ``axis``, as
    (row axis, column axis) of the view."""
    return np.take(volume, index, axis=axis)


def render_case_preview(
    folder: str | Path, case: str, out: str | Path, *, file_ending: str, max_patches: int = 6
) -> Path:
    """Render the preview PNG of ``case`` from an export ``folder``.

    Args:
        folder: a folder written by ``clasp-rs export`` (with the scans).
        case: the case to show.
        out: the PNG to write.
        file_ending: the volumes' ending.
        max_patches: at most this many patches (rows) are drawn.

    Returns:
        ``out``.
    """
    from clasp_rs._optional import import_report_dependency

    matplotlib = import_report_dependency("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    sitk = import_simpleitk()

    root = Path(folder)
    scan = sitk.DICOMOrient(sitk.ReadImage(str(root / f"{case}_0000{file_ending}")), "LPS")
    boxes = sitk.DICOMOrient(sitk.ReadImage(str(root / f"{case}_boxes{file_ending}")), "LPS")
    markups = json.loads((root / f"{case}.mrk.json").read_text(encoding="utf-8"))["markups"]
    # (i, j, k)-indexed arrays: i towards L, j towards P, k towards S after DICOMOrient.
    image = np.transpose(sitk.GetArrayFromImage(scan), (2, 1, 0)).astype(np.float32)
    labels = np.transpose(sitk.GetArrayFromImage(boxes), (2, 1, 0))
    spacing = np.asarray(scan.GetSpacing())
    lo, hi = np.percentile(image, [1, 99.5])
    colours = ListedColormap(
        [(0, 0, 0, 0)] + [(r / 255, g / 255, b / 255, 0.45) for r, g, b in PALETTE]
    )
    shown = markups[:max_patches]
    fig, axes = plt.subplots(
        len(shown), 3, figsize=(11, 3.6 * len(shown)), squeeze=False, constrained_layout=True
    )
    for row, markup in enumerate(shown):
        number = row + 1
        centre = np.asarray(
            scan.TransformPhysicalPointToContinuousIndex([float(v) for v in markup["center"]])
        )
        corners = np.array(
            [
                scan.TransformPhysicalPointToContinuousIndex([float(v) for v in c])
                for c in _roi_corners(markup)
            ]
        )
        colour = np.asarray(markup["display"]["color"])
        for col, (view, fixed, (u, v), edges) in enumerate(_VIEWS):
            ax = axes[row][col]
            at = int(np.clip(np.floor(centre[fixed] + 0.5), 0, image.shape[fixed] - 1))
            # Slices are (u, v) arrays; show v as rows. Axial: rows j grow towards P, shown
            # downwards (anterior up); coronal/sagittal: rows k grow towards S, shown upwards.
            picture = _slice(image, fixed, at).T
            overlay = _slice(labels, fixed, at).T
            origin = "upper" if view == "axial" else "lower"
            extent = (-0.5, picture.shape[1] - 0.5) + (
                (picture.shape[0] - 0.5, -0.5)
                if origin == "upper"
                else (-0.5, picture.shape[0] - 0.5)
            )
            aspect = spacing[v] / spacing[u]
            kw = {"origin": origin, "extent": extent, "aspect": aspect, "interpolation": "nearest"}
            ax.imshow(picture, cmap="gray", vmin=lo, vmax=hi, **kw)
            masked = np.where(overlay > 0, (overlay - 1) % len(PALETTE) + 1, 0)
            ax.imshow(masked, cmap=colours, vmin=0, vmax=len(PALETTE), **kw)
            # The Slicer ROI, read back from the .mrk.json: its extent in this view.
            x0, x1 = corners[:, u].min(), corners[:, u].max()
            y0, y1 = corners[:, v].min(), corners[:, v].max()
            ax.plot([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0], "--", color=colour, lw=1.6)
            top = y1 if origin == "lower" else y0  # the rectangle's upper edge on screen
            ax.text(
                x0,
                top,
                f"#{number}",
                color="white",
                fontsize=8,
                va="top",
                ha="left",
                fontweight="bold",
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.0, "alpha": 0.9},
            )
            # Screen-edge letters outside the slice, as viewers print them.
            for text, (x, y, ha, va) in zip(
                edges,
                (
                    (-0.01, 0.5, "right", "center"),
                    (1.01, 0.5, "left", "center"),
                    (0.5, 1.01, "center", "bottom"),
                    (0.5, -0.01, "center", "top"),
                ),
                strict=True,
            ):
                ax.text(
                    x,
                    y,
                    text,
                    transform=ax.transAxes,
                    color="darkorange",
                    fontsize=9,
                    ha=ha,
                    va=va,
                    fontweight="bold",
                )
            ax.set_title(f"{view} {'ijk'[fixed]}={at}", fontsize=9, pad=14)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row][0].set_ylabel(markup["name"], fontsize=9)
    fig.suptitle(
        f"{case}: box label map (filled) and 3D Slicer ROIs (dashed) through each patch centre",
        fontsize=11,
    )
    target = Path(out)
    fig.savefig(target, dpi=90)
    plt.close(fig)
    return target
