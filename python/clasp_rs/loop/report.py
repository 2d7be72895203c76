"""``clasp-rs report``: learning-curve numbers, plots and an HTML page for experiments.

Per experiment it reads ``experiment.json``, ``state.json`` (the strategy) and each finished
loop's ``evaluation.json`` and ``annotated.json``, and computes Final Dice, AUBC and FG-Eff
(:mod:`clasp_rs.metrics`). Output folder::

    summary.json        every number below, per experiment and loop
    summary.csv         one row per experiment and loop
    dice_vs_budget.png  mean Dice against annotated voxels and against the annotated share
                        of foreground (with the FG-Eff fits), one line per experiment
    patches_<name>.png  queried patches on axial slices of their scans, coloured by stratum
    report.html         all of it on one self-contained page (images embedded)

An earlier report's files are never replaced unless asked (``--overwrite``).
"""

from __future__ import annotations

import csv
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs._atomic import atomic_path, write_text_atomic
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import read_json, write_json
from clasp_rs.loop.experiment import Experiment, load_experiment
from clasp_rs.loop.html_page import TABLE_CSS, figures_html, table_cell
from clasp_rs.metrics import ExponentialFit, aubc, fg_efficiency
from clasp_rs.patches import Patch, read_loop_file

__all__ = [
    "REPORT_FILES",
    "ExperimentSummary",
    "LoopRecord",
    "build_report",
    "summarise_experiment",
]

REPORT_FILES = ("summary.json", "summary.csv", "dice_vs_budget.png", "report.html")
"""The files of every report (and one ``patches_<experiment>.png`` per experiment)."""


@dataclass(frozen=True)
class LoopRecord:
    """One finished training loop.

    Attributes:
        loop: its index.
        patches: patches annotated for it (cumulative, starting budget included).
        voxels: voxels annotated (cumulative).
        foreground: annotated voxels per foreground class name.
        foreground_fraction: annotated share of the pool's ground-truth foreground.
        dice: mean Dice over the foreground classes (None if undefined).
        dice_per_class: class name -> Dice.
    """

    loop: int
    patches: int
    voxels: int
    foreground: dict[str, int]
    foreground_fraction: float | None
    dice: float | None
    dice_per_class: dict[str, float | None]


@dataclass
class ExperimentSummary:
    """The numbers of one experiment."""

    name: str
    root: Path
    strategy: str
    loops: list[LoopRecord]
    final_dice: float | None
    aubc: float | None
    fit: ExponentialFit | None
    experiment: Experiment = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "experiment": str(self.root),
            "strategy": self.strategy,
            "final_dice": self.final_dice,
            "aubc": self.aubc,
            "fg_eff": None if self.fit is None else self.fit.rate,
            "fg_fit": None if self.fit is None else self.fit.to_json(),
            "patch_size": list(self.experiment.patch_size),
            "budget": self.experiment.budget,
            "loops": [
                {
                    "loop": r.loop,
                    "patches": r.patches,
                    "voxels": r.voxels,
                    "foreground_voxels": r.foreground,
                    "foreground_fraction": r.foreground_fraction,
                    "dice": r.dice,
                    "dice_per_class": r.dice_per_class,
                }
                for r in self.loops
            ],
        }


def summarise_experiment(root: str | os.PathLike[str]) -> ExperimentSummary:
    """Collect an experiment's finished loops and compute its metrics.

    Raises:
        FileNotFoundError: not an experiment folder.
        DatasetError: no loop has been evaluated yet.
    """
    exp = load_experiment(root)
    state = read_json(exp.state_file, "state.json") if exp.state_file.exists() else {}
    strategy = str((state.get("settings") or {}).get("strategy", "?"))
    names = exp.label_names
    records = []
    t = 0
    while (exp.loop_folder(t) / "evaluation.json").is_file() and (
        exp.loop_folder(t) / "annotated.json"
    ).is_file():
        evaluation = read_json(exp.loop_folder(t) / "evaluation.json", "evaluation.json")
        annotated = read_json(exp.loop_folder(t) / "annotated.json", "annotated.json")
        records.append(
            LoopRecord(
                loop=t,
                patches=int(annotated["patches"]),
                voxels=int(annotated["voxels"]),
                foreground={names[int(c)]: int(n) for c, n in annotated["foreground"].items()},
                foreground_fraction=annotated.get("foreground_fraction"),
                dice=evaluation.get("mean"),
                dice_per_class=dict(evaluation.get("per_class", {})),
            )
        )
        t += 1
    if not records:
        raise DatasetError(
            f"experiment {exp.root} has no evaluated loop yet (run clasp-rs run {exp.root})"
        )
    dice = [r.dice for r in records]
    defined = all(d is not None for d in dice)
    fit = None
    if defined and all(r.foreground_fraction is not None for r in records):
        fit = fg_efficiency(
            [float(r.foreground_fraction) for r in records],  # type: ignore[arg-type]
            [float(d) for d in dice],  # type: ignore[arg-type]
        )
    return ExperimentSummary(
        name=exp.root.name,
        root=exp.root,
        strategy=strategy,
        loops=records,
        final_dice=dice[-1],
        aubc=aubc([float(d) for d in dice]) if defined else None,  # type: ignore[arg-type]
        fit=fit,
        experiment=exp,
    )


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _fg_cell(fit: ExponentialFit | None) -> str:
    """FG-Eff with its standard error; a flagged fit is marked, its reasons in the tooltip."""
    if fit is None:
        return "<td>–</td>"
    se = "" if fit.rate_se is None else f" ± {fit.rate_se:.2f}"
    if not fit.flags:
        return f"<td>{fit.rate:.2f}{se}</td>"
    reasons = html.escape("; ".join(fit.flags))
    return f'<td title="{reasons}" style="color:#a05a00">{fit.rate:.2f}{se} ⚠ flagged</td>'


def _text_cell(values: dict[str, str]) -> str:
    return table_cell(", ".join(f"{k} {v}" for k, v in values.items()), cls="text")


def _html(summaries: list[ExperimentSummary], images: list[Path]) -> str:
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(s.name)}</td><td>{html.escape(s.strategy)}</td>"
        f"<td>{len(s.loops)}</td><td>{_fmt(s.final_dice)}</td><td>{_fmt(s.aubc)}</td>"
        f"{_fg_cell(s.fit)}"
        f"<td>{_fmt(None if s.fit is None else s.fit.plateau)}</td>"
        f"<td>{s.loops[-1].voxels}</td><td>{s.loops[-1].patches}</td>"
        "</tr>"
        for s in summaries
    )
    per_loop = "".join(
        "<tr>"
        f"<td>{html.escape(s.name)}</td><td>{html.escape(s.strategy)}</td><td>{r.loop}</td>"
        f"<td>{r.patches}</td><td>{r.voxels}</td>"
        f"{_text_cell({k: str(v) for k, v in r.foreground.items()})}"
        f"<td>{_fmt(r.foreground_fraction)}</td><td>{_fmt(r.dice)}</td>"
        f"{_text_cell({k: _fmt(v) for k, v in r.dice_per_class.items()})}"
        "</tr>"
        for s in summaries
        for r in s.loops
    )
    figures = figures_html(images)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>clasp-rs report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
{TABLE_CSS}
</style></head><body>
<h1>clasp-rs active-learning report</h1>
<p>Final Dice: mean foreground Dice of the fold ensemble on the test split after the last loop.
AUBC: trapezoid area under mean Dice over loops, loops spaced evenly on [0, 1].
FG-Eff: rate <i>b</i> of the least-squares fit
Dice &asymp; <i>a</i>(1 &minus; e<sup>&minus;<i>b f</i></sup>),
<i>f</i> = annotated share of the pool's foreground voxels (<i>a</i>: plateau), ± its
standard error; &#9888; flagged: a fit whose rate cannot be trusted (hover for why).</p>
<table><tr><th>experiment</th><th>strategy</th><th>loops</th><th>Final Dice</th><th>AUBC</th>
<th>FG-Eff</th><th>plateau a</th><th>annotated voxels</th><th>patches</th></tr>{rows}</table>
<h2>Per loop</h2>
<table><tr><th>experiment</th><th>strategy</th><th>loop</th><th>patches</th><th>voxels</th>
<th class="text">foreground voxels</th><th>FG share</th><th>mean Dice</th>
<th class="text">Dice per class</th></tr>
{per_loop}</table>
<h2>Figures</h2>{figures}
</body></html>
"""


def check_report_folder(folder: Path, files: Sequence[str], overwrite: bool) -> None:
    """Refuse to write a report over the files of an earlier one, before anything is written.

    Raises:
        FileExistsError: some of ``files`` exist in ``folder`` and ``overwrite`` is False.
    """
    existing = [n for n in files if (folder / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            17,
            f"the report folder already holds {', '.join(existing)} (pass --overwrite to "
            "replace them)",
            str(folder),
        )


def build_report(
    experiments: list[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> list[ExperimentSummary]:
    """Write the report of ``experiments`` into the folder ``out`` (created if needed).

    Args:
        experiments: experiment folders.
        out: the report folder.
        overwrite: replace the files of an earlier report there; without it a report file
            that exists already is an error (nothing is written).

    Raises:
        DatasetError: an experiment without evaluated loops, or two experiments with the
            same folder name.
        FileExistsError: a report file exists in ``out`` and ``overwrite`` is False.
    """
    from clasp_rs.loop.plots import plot_dice_vs_budget, plot_patches
    from clasp_rs.loop.preview import query_preview

    summaries = [summarise_experiment(e) for e in experiments]
    names = [s.name for s in summaries]
    if len(set(names)) != len(names):
        raise DatasetError(f"experiments need distinct folder names, got {names}")
    folder = Path(out)
    files = [
        *REPORT_FILES,
        *(f"patches_{n}.png" for n in names),
        *(f"query_{n}.png" for n in names),
    ]
    check_report_folder(folder, files, overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "summary.json", {"experiments": [s.to_json() for s in summaries]})
    with (
        atomic_path(folder / "summary.csv", overwrite=True) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(
            [
                "experiment",
                "strategy",
                "loop",
                "patches",
                "voxels",
                "foreground_fraction",
                "dice",
                "final_dice",
                "aubc",
                "fg_eff",
            ]
        )
        for s in summaries:
            for r in s.loops:
                writer.writerow(
                    [
                        s.name,
                        s.strategy,
                        r.loop,
                        r.patches,
                        r.voxels,
                        r.foreground_fraction,
                        r.dice,
                        s.final_dice,
                        s.aubc,
                        None if s.fit is None else s.fit.rate,
                    ]
                )
    images = [plot_dice_vs_budget(summaries, folder / "dice_vs_budget.png")]
    for s in summaries:
        images.append(
            plot_patches(
                s.experiment,
                _queried(s.experiment, len(s.loops)),
                folder / f"patches_{s.name}.png",
                title=f"{s.name} ({s.strategy})",
            )
        )
    for s in summaries:
        # query_<name>.png: the newest query as an annotator sees it in a viewer
        images.extend(query_preview(s.experiment, folder))
    write_text_atomic(folder / "report.html", _html(summaries, images), overwrite=True)
    return summaries


def _queried(exp: Experiment, n_loops: int) -> dict[int, list[Patch]]:
    """Loop index -> patches of ``loop_NNN.json`` for every loop file that exists."""
    out = {}
    for t in range(n_loops + 1):
        if exp.loop_file(t).is_file():
            out[t] = read_loop_file(exp.loop_file(t))
    return out
