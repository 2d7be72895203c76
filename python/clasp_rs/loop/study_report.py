"""``clasp-rs study report``: a study's experiments aggregated over seeds.

Only finished experiments (every loop evaluated) enter the aggregates; running ones are
listed with their progress. Per strategy: mean ± 95 % CI over seeds (:func:`seed_mean_ci`)
of Final Dice, AUBC and FG-Eff (reliable fits only; flagged fits are counted and shown as
flagged), and of the final per-class Dice. The pairwise penalty matrix is computed over the
seeds finished by every strategy, paired by seed. Output folder::

    study_summary.json   every number below
    study_summary.csv    one row per strategy
    study_curves.csv     one row per strategy and loop (mean ± CI of mean and per-class Dice)
    study_experiments.csv one row per experiment and loop
    study_ppm.csv        the penalty matrix with its mean row
    study_curves.png     Dice vs annotated voxels and vs budget (CI bands)
    study_per_class.png  per-class Dice vs budget (CI bands)
    study_ppm.png        the penalty matrix as an annotated heatmap
    report.html          all of it on one self-contained page
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clasp_rs._atomic import atomic_path, write_text_atomic
from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import write_json
from clasp_rs.loop.report import ExperimentSummary, check_report_folder, summarise_experiment
from clasp_rs.loop.study import Study, StudyExperiment, experiment_progress, load_study
from clasp_rs.metrics import (
    MeanCI,
    PenaltySummary,
    combine_penalty_matrices,
    pairwise_penalty_matrix,
    seed_mean_ci,
)

__all__ = ["REPORT_FILES", "StrategyRow", "StudyReport", "build_study_report"]

REPORT_FILES = (
    "study_summary.json",
    "study_summary.csv",
    "study_curves.csv",
    "study_experiments.csv",
    "study_ppm.csv",
    "study_curves.png",
    "study_per_class.png",
    "study_ppm.png",
    "report.html",
)


def _ci_text(value: MeanCI | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if math.isnan(value.half_width):
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} ± {value.half_width:.{digits}f}"


def _ci_json(value: MeanCI | None) -> dict[str, float | None] | None:
    if value is None:
        return None
    half = None if math.isnan(value.half_width) else value.half_width
    return {"mean": value.mean, "ci95": half}


@dataclass
class Curve:
    """Mean ± CI over seeds per loop of one strategy.

    Attributes:
        loops: loop indices.
        patches: annotated patches per loop (the same for every seed).
        voxels: mean annotated voxels per loop.
        dice: mean Dice per loop over seeds.
        per_class: class name -> per loop.
    """

    loops: list[int]
    patches: list[float]
    voxels: list[float]
    dice: list[MeanCI]
    per_class: dict[str, list[MeanCI | None]]


@dataclass
class StrategyRow:
    """The aggregated numbers of one strategy over its finished seeds."""

    strategy: str
    seeds: list[int]
    final_dice: MeanCI | None
    aubc: MeanCI | None
    fg_eff: MeanCI | None
    fg_fits: int
    fg_flagged: int
    final_per_class: dict[str, MeanCI | None]
    ppm_beaten: float | None = None
    ppm_beats: float | None = None
    curve: Curve | None = field(default=None, repr=False)

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def final_dice_text(self) -> str:
        return _ci_text(self.final_dice)

    @property
    def aubc_text(self) -> str:
        return _ci_text(self.aubc)

    @property
    def fg_eff_text(self) -> str:
        if self.fg_fits == 0:
            return "–"
        if self.fg_eff is None:
            return f"flagged ({self.fg_flagged} of {self.fg_fits})"
        text = _ci_text(self.fg_eff, 2)
        return text + (f" ({self.fg_flagged} of {self.fg_fits} flagged)" if self.fg_flagged else "")

    @property
    def ppm_mean_text(self) -> str:
        return "–" if self.ppm_beaten is None else f"{self.ppm_beaten:.2f}"

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "seeds": self.seeds,
            "final_dice": _ci_json(self.final_dice),
            "aubc": _ci_json(self.aubc),
            "fg_eff": _ci_json(self.fg_eff),
            "fg_eff_fits": self.fg_fits,
            "fg_eff_flagged": self.fg_flagged,
            "final_dice_per_class": {k: _ci_json(v) for k, v in self.final_per_class.items()},
            "ppm_beaten": self.ppm_beaten,
            "ppm_beats": self.ppm_beats,
        }


@dataclass
class StudyReport:
    """What :func:`build_study_report` computed.

    Attributes:
        study: the study.
        rows: one per strategy with at least one finished seed, in study order.
        summaries: experiment name -> its summary (every experiment with an evaluated loop).
        finished: experiment name -> whether it ran all its loops.
        complete_seeds: seeds every strategy has finished (those the PPM pairs).
        ppm: the penalty matrix over ``complete_seeds`` (None with fewer than two strategies
            or no complete seed).
        alpha, correction: the PPM's test settings.
    """

    study: Study
    rows: list[StrategyRow]
    summaries: dict[str, ExperimentSummary]
    finished: dict[str, bool]
    complete_seeds: list[int]
    ppm: PenaltySummary | None
    alpha: float
    correction: str | None


def _dice_curve(summary: ExperimentSummary) -> list[float] | None:
    values = [r.dice for r in summary.loops]
    return None if any(v is None for v in values) else [float(v) for v in values]  # type: ignore[arg-type]


def _ci(values: Sequence[float]) -> MeanCI | None:
    return seed_mean_ci(values) if len(values) else None


def _curve(summaries: list[ExperimentSummary], class_names: list[str]) -> Curve | None:
    curves = [c for c in (_dice_curve(s) for s in summaries) if c is not None]
    if not curves:
        return None
    n = min(len(c) for c in curves)
    used = [s for s in summaries if _dice_curve(s) is not None]
    per_class: dict[str, list[MeanCI | None]] = {}
    for name in class_names:
        per_class[name] = []
        for t in range(n):
            values = [s.loops[t].dice_per_class.get(name) for s in used]
            defined = [float(v) for v in values if v is not None]
            per_class[name].append(_ci(defined))
    return Curve(
        loops=list(range(n)),
        patches=[float(np.mean([s.loops[t].patches for s in used])) for t in range(n)],
        voxels=[float(np.mean([s.loops[t].voxels for s in used])) for t in range(n)],
        dice=[seed_mean_ci([c[t] for c in curves]) for t in range(n)],
        per_class=per_class,
    )


def _row(strategy: str, done: list[tuple[StudyExperiment, ExperimentSummary]], names: list[str]):
    summaries = [s for _, s in done]
    curves = [(e.seed, s, _dice_curve(s)) for e, s in done]
    usable = [(seed, s, c) for seed, s, c in curves if c is not None]
    fits = [s.fit for _, s, _ in usable if s.fit is not None]
    reliable = [f.rate for f in fits if f.reliable]
    final_per_class = {}
    for name in names:
        values = [s.loops[-1].dice_per_class.get(name) for _, s, _ in usable]
        final_per_class[name] = _ci([float(v) for v in values if v is not None])
    return StrategyRow(
        strategy=strategy,
        seeds=[seed for seed, _, _ in usable],
        final_dice=_ci([c[-1] for _, _, c in usable]),
        aubc=_ci([float(s.aubc) for _, s, _ in usable if s.aubc is not None]),
        fg_eff=_ci(reliable),
        fg_fits=len(fits),
        fg_flagged=len(fits) - len(reliable),
        final_per_class=final_per_class,
        curve=_curve(summaries, names),
    )


def build_study_report(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    alpha: float = 0.05,
    correction: str | None = None,
) -> StudyReport:
    """Aggregate a study and write its report into the folder ``out`` (created if needed).

    Args:
        root: the study folder.
        out: the report folder.
        overwrite: replace the files of an earlier report there (otherwise refused).
        alpha, correction: the penalty matrix's tests (see
            :func:`clasp_rs.metrics.pairwise_penalty_matrix`).

    Raises:
        DatasetError: no experiment of the study has finished yet.
        FileExistsError: ``out`` holds report files and ``overwrite`` is False.
    """
    from clasp_rs.loop.study_pages import study_html, write_csvs
    from clasp_rs.loop.study_plots import plot_study_curves, plot_study_per_class, plot_study_ppm

    study = load_study(root)
    folder = Path(out)
    check_report_folder(folder, REPORT_FILES, overwrite)
    progress = experiment_progress(study)
    finished = {p.experiment.name: p.finished for p in progress}
    summaries: dict[str, ExperimentSummary] = {}
    for p in progress:
        if p.loops_done:
            summaries[p.experiment.name] = summarise_experiment(p.experiment.root)
    if not any(finished.values()):
        raise DatasetError(
            f"no experiment of study {study.root} has finished yet (clasp-rs study status "
            f"{study.root}); run clasp-rs study run {study.root}"
        )
    some = summaries[next(n for n, f in finished.items() if f)]
    names = [some.experiment.label_names[c] for c in some.experiment.foreground]
    rows = []
    for strategy in study.strategies:
        done = [
            (p.experiment, summaries[p.experiment.name])
            for p in progress
            if p.experiment.strategy == strategy and p.finished
        ]
        if done:
            rows.append(_row(strategy, done, names))
    complete = [s for s in study.seeds if all(s in r.seeds for r in rows)]
    ppm = None
    if len(rows) >= 2 and complete:
        results = {}
        for r in rows:
            by_seed = {
                e.seed: _dice_curve(summaries[e.name])
                for e in study.experiments
                if e.strategy == r.strategy and e.name in summaries and finished[e.name]
            }
            results[r.strategy] = np.array([by_seed[s] for s in complete], dtype=np.float64)
        matrix = pairwise_penalty_matrix(results, alpha=alpha, correction=correction)
        ppm = combine_penalty_matrices([matrix])
        k = len(ppm.methods)
        for i, r in enumerate(rows):
            r.ppm_beaten = float(ppm.matrix[i].sum() / (k - 1))
            r.ppm_beats = float(ppm.mean[i])
    report = StudyReport(study, rows, summaries, finished, complete, ppm, alpha, correction)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "study_summary.json", _json(report))
    write_csvs(report, folder)
    images = [
        plot_study_curves(report, folder / "study_curves.png"),
        plot_study_per_class(report, folder / "study_per_class.png"),
    ]
    if ppm is not None:
        images.append(plot_study_ppm(report, folder / "study_ppm.png"))
    write_text_atomic(folder / "report.html", study_html(report, images), overwrite=True)
    return report


def _json(report: StudyReport) -> dict[str, Any]:
    curves = {}
    for r in report.rows:
        c = r.curve
        if c is None:
            continue
        curves[r.strategy] = {
            "loops": c.loops,
            "patches": c.patches,
            "voxels": c.voxels,
            "dice": [_ci_json(v) for v in c.dice],
            "per_class": {k: [_ci_json(v) for v in vs] for k, vs in c.per_class.items()},
        }
    ppm = report.ppm
    return {
        "study": str(report.study.root),
        "strategies": report.study.strategies,
        "seeds": report.study.seeds,
        "init": report.study.init,
        "run": report.study.run,
        "complete_seeds": report.complete_seeds,
        "rows": [r.to_json() for r in report.rows],
        "curves": curves,
        "ppm": None
        if ppm is None
        else {
            "methods": ppm.methods,
            "matrix": ppm.matrix.tolist(),
            "mean": ppm.mean.tolist(),
            "alpha": report.alpha,
            "correction": report.correction,
            "rows": "penalised method (significantly worse than the column's)",
        },
        "experiments": {
            name: {**s.to_json(), "finished": report.finished[name]}
            for name, s in report.summaries.items()
        },
    }


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """A CSV file, written atomically."""
    with (
        atomic_path(path, overwrite=True) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as f,
    ):
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
