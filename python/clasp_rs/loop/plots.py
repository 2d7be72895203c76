"""PNG figures of a report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._atomic import atomic_path
from clasp_rs.loop.experiment import Experiment
from clasp_rs.patches import Patch, patches_by_case
from clasp_rs.strata import stratum_label

__all__ = ["legend_label", "plot_dice_vs_budget", "plot_patches", "stratum_colour"]


def _pyplot() -> Any:
    from clasp_rs._optional import import_report_dependency

    matplotlib = import_report_dependency("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stratum_colour(stratum: int | None) -> str:
    """Colour of a patch by the stratum that chose it: a class label (tab10 by label), 0
    (background patch of the starting budget), -1 (plain entropy) or None (random)."""
    if stratum is None:
        return "#ffd400"
    if stratum == -1:
        return "#ff00ff"
    if stratum == 0:
        return "#00e5ff"
    palette = [
        "#1f77b4",
        "#2ca02c",
        "#d62728",
        "#ff7f0e",
        "#9467bd",
        "#8c564b",
        "#17becf",
        "#bcbd22",
        "#e377c2",
    ]
    return palette[(stratum - 1) % len(palette)]


def legend_label(stratum: int | None, names: Mapping[int, str]) -> str:
    """A stratum as the figures' legends name it (as the summary tables do), ``random`` for
    patches without one."""
    return "random" if stratum is None else stratum_label(stratum, names)


def _save_and_close(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` atomically and close it (also when writing fails: pyplot
    holds every open figure until it is closed)."""
    import matplotlib.pyplot as plt

    target = Path(path)
    try:
        with atomic_path(target, overwrite=True, suffix=target.suffix) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return target


def plot_dice_vs_budget(summaries: Sequence[Any], path: str | os.PathLike[str]) -> Path:
    """Mean Dice vs annotated voxels (left) and vs annotated foreground share with the FG-Eff
    fits (right), one line per experiment, labelled by strategy."""
    from clasp_rs.metrics import saturating_exponential

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, s in enumerate(summaries):
        colour = f"C{i % 10}"
        label = f"{s.strategy} ({s.name})"
        x = [r.voxels for r in s.loops]
        y = [np.nan if r.dice is None else r.dice for r in s.loops]
        left.plot(x, y, "o-", color=colour, label=label)
        f = [np.nan if r.foreground_fraction is None else r.foreground_fraction for r in s.loops]
        right.plot(f, y, "o", color=colour, label=label)
        if s.fit is not None and np.isfinite(np.nanmax(f)):
            grid = np.linspace(0.0, float(np.nanmax(f)) * 1.1, 100)
            right.plot(
                grid,
                saturating_exponential(grid, s.fit.plateau, s.fit.rate),
                "-",
                color=colour,
                alpha=0.6,
                label=f"fit a={s.fit.plateau:.2f}, FG-Eff b={s.fit.rate:.1f}",
            )
    left.set_xlabel("annotated voxels (cumulative)")
    left.set_ylabel("mean Dice on the test split")
    left.set_title("Dice vs budget")
    right.set_xlabel("annotated share of the pool's foreground voxels")
    right.set_title("Dice vs annotated foreground (FG-Eff fit)")
    for ax in (left, right):
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save_and_close(fig, path)


def _image_file(exp: Experiment, case: str) -> Path | None:
    name = f"{case}_0000{exp.file_ending}"
    candidates = [exp.source_folder / "imagesTr" / name]
    raw = os.environ.get("nnUNet_raw")
    if raw:
        candidates.append(Path(raw) / exp.dataset_name / "imagesTr" / name)
    return next((c for c in candidates if c.is_file()), None)


def _best_slice(patches: Sequence[Patch]) -> int:
    """The axial slice (z) crossed by the most patches (lowest z on ties)."""
    hits: Counter[int] = Counter()
    for p in patches:
        for z in range(p.coords[0], p.end[0]):
            hits[z] += 1
    return min(hits, key=lambda z: (-hits[z], z))


def plot_patches(
    exp: Experiment,
    queried: Mapping[int, Sequence[Patch]],
    path: str | os.PathLike[str],
    *,
    max_cases: int = 4,
    title: str = "",
) -> Path:
    """Queried patches drawn on one axial slice of each of the ``max_cases`` cases with the
    most patches: the slice crossed by the most patches, the scan in grey, each patch
    crossing it a rectangle coloured by stratum (solid: queried by the strategy; dashed: the
    starting budget)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from clasp_rs.nnunet.labels import read_image

    plt = _pyplot()
    loop_of: dict[int, int] = {}
    everything: list[Patch] = []
    for t, patches in sorted(queried.items()):
        for p in patches:
            loop_of[id(p)] = t
            everything.append(p)
    by_case = patches_by_case(everything)
    cases = sorted(by_case, key=lambda c: (-len(by_case[c]), c))[:max_cases]
    fig, axes = plt.subplots(
        1, max(len(cases), 1), figsize=(3.6 * max(len(cases), 1), 4.0), squeeze=False
    )
    names = exp.label_names
    used: set[int | None] = set()
    for ax, case in zip(axes[0], cases, strict=False):
        patches = by_case[case]
        z = _best_slice(patches)
        image_file = _image_file(exp, case)
        if image_file is not None:
            image = read_image(image_file)
            plane = image[min(z, image.shape[0] - 1)]
            lo, hi = np.percentile(plane, [1, 99])
            ax.imshow(
                plane, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest"
            )
        else:
            ax.set_facecolor("black")
        for p in patches:
            if not p.coords[0] <= z < p.end[0]:
                continue
            used.add(p.stratum)
            start = loop_of[id(p)] == 0
            ax.add_patch(
                Rectangle(
                    (p.coords[2] - 0.5, p.coords[1] - 0.5),
                    p.size[2],
                    p.size[1],
                    fill=False,
                    lw=1.4,
                    ls="--" if start else "-",
                    edgecolor=stratum_colour(p.stratum),
                )
            )
        ax.set_title(f"{case}, z = {z}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])

    handles = [
        Line2D([], [], color=stratum_colour(s), lw=2, label=legend_label(s, names))
        for s in sorted(used, key=lambda s: (s is None, s == -1, s or 0))
    ]
    handles.append(Line2D([], [], color="grey", lw=1.4, ls="--", label="starting budget"))
    fig.legend(
        handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False
    )
    fig.suptitle(title or exp.root.name, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save_and_close(fig, path)
