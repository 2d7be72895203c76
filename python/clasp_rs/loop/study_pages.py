"""The CSV files and the self-contained HTML page of a study report."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clasp_rs.loop.html_page import TABLE_CSS, figures_html, table_cell
from clasp_rs.metrics import MeanCI

if TYPE_CHECKING:
    from clasp_rs.loop.study_report import StudyReport

__all__ = ["study_html", "write_csvs"]


def _mean(v: MeanCI | None) -> float | None:
    return None if v is None else v.mean


def _half(v: MeanCI | None) -> float | None:
    return None if v is None or math.isnan(v.half_width) else v.half_width


def write_csvs(report: StudyReport, folder: Path) -> None:
    """``study_summary.csv``, ``study_curves.csv``, ``study_experiments.csv`` and
    ``study_ppm.csv`` (header only without a matrix)."""
    from clasp_rs.loop.study_report import write_csv

    names = list(report.rows[0].final_per_class) if report.rows else []
    header = [
        "strategy",
        "n_seeds",
        "final_dice",
        "final_dice_ci95",
        "aubc",
        "aubc_ci95",
        "fg_eff",
        "fg_eff_ci95",
        "fg_eff_fits",
        "fg_eff_flagged",
        "ppm_beaten",
        "ppm_beats",
    ]
    header += [f"final_dice_{n}" for n in names] + [f"final_dice_{n}_ci95" for n in names]
    rows = [
        [
            r.strategy,
            r.n_seeds,
            _mean(r.final_dice),
            _half(r.final_dice),
            _mean(r.aubc),
            _half(r.aubc),
            _mean(r.fg_eff),
            _half(r.fg_eff),
            r.fg_fits,
            r.fg_flagged,
            r.ppm_beaten,
            r.ppm_beats,
        ]
        + [_mean(r.final_per_class[n]) for n in names]
        + [_half(r.final_per_class[n]) for n in names]
        for r in report.rows
    ]
    write_csv(folder / "study_summary.csv", header, rows)

    header = ["strategy", "loop", "patches", "voxels", "n_seeds", "dice", "dice_ci95"]
    header += [f"dice_{n}" for n in names] + [f"dice_{n}_ci95" for n in names]
    rows = []
    for r in report.rows:
        c = r.curve
        if c is None:
            continue
        for t in c.loops:
            rows.append(
                [r.strategy, t, c.patches[t], c.voxels[t], r.n_seeds, c.dice[t].mean]
                + [_half(c.dice[t])]
                + [_mean(c.per_class[n][t]) for n in names]
                + [_half(c.per_class[n][t]) for n in names]
            )
    write_csv(folder / "study_curves.csv", header, rows)

    header = [
        "experiment",
        "strategy",
        "seed",
        "finished",
        "loop",
        "patches",
        "voxels",
        "foreground_fraction",
        "dice",
    ] + [f"dice_{n}" for n in names]
    rows = []
    for e in report.study.by_seed():
        s = report.summaries.get(e.name)
        if s is None:
            continue
        for rec in s.loops:
            rows.append(
                [e.name, e.strategy, e.seed, report.finished[e.name], rec.loop, rec.patches]
                + [rec.voxels, rec.foreground_fraction, rec.dice]
                + [rec.dice_per_class.get(n) for n in names]
            )
    write_csv(folder / "study_experiments.csv", header, rows)

    ppm = report.ppm
    methods = [] if ppm is None else ppm.methods
    rows = []
    if ppm is not None:
        rows = [[m, *ppm.matrix[i].tolist()] for i, m in enumerate(methods)]
        rows.append(["mean", *ppm.mean.tolist()])
    write_csv(folder / "study_ppm.csv", ["penalised \\ than", *methods], rows)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def study_html(report: StudyReport, images: list[Path]) -> str:
    """The report page: tables, the figures embedded as PNG data, no external resources."""
    study = report.study
    names = list(report.rows[0].final_per_class) if report.rows else []
    strategy_rows = "".join(
        "<tr>"
        + table_cell(r.strategy)
        + table_cell(str(r.n_seeds))
        + table_cell(r.final_dice_text)
        + table_cell(r.aubc_text)
        + table_cell(r.fg_eff_text, cls="flagged" if r.fg_flagged else "")
        + table_cell(r.ppm_mean_text)
        + table_cell("–" if r.ppm_beats is None else f"{r.ppm_beats:.2f}")
        + "".join(
            table_cell("–" if r.final_per_class[n] is None else _ci(r.final_per_class[n]))
            for n in names
        )
        + "</tr>"
        for r in report.rows
    )
    experiment_rows = []
    for e in study.by_seed():
        s = report.summaries.get(e.name)
        state = "finished" if report.finished.get(e.name) else "running / not started"
        if s is None:
            experiment_rows.append(
                "<tr>"
                + table_cell(e.name)
                + table_cell(e.strategy)
                + table_cell(str(e.seed))
                + table_cell(state)
                + "<td></td>" * 5
                + "</tr>"
            )
            continue
        fit = s.fit
        if fit is None:
            fg, title, cls = "–", "", ""
        else:
            se = "" if fit.rate_se is None else f" ± {fit.rate_se:.2f} (SE)"
            fg = f"{fit.rate:.2f}{se}" + (" ⚠ flagged" if fit.flags else "")
            title, cls = "; ".join(fit.flags), ("flagged" if fit.flags else "")
        experiment_rows.append(
            "<tr>"
            + table_cell(e.name)
            + table_cell(e.strategy)
            + table_cell(str(e.seed))
            + table_cell(f"{state} ({len(s.loops)} loop(s))")
            + table_cell(_fmt(s.final_dice))
            + table_cell(_fmt(s.aubc))
            + table_cell(fg, title, cls)
            + table_cell(" / ".join(_fmt(r.dice, 3) for r in s.loops))
            + table_cell(str(s.loops[-1].voxels))
            + "</tr>"
        )
    figures = figures_html(images)
    run = study.run or {}
    init = study.init
    correction = report.correction or "none"
    class_headers = "".join(f"<th>Final Dice {html.escape(n)}</th>" for n in names)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>clasp-rs study report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 80em; }}
{TABLE_CSS}
td {{ white-space: nowrap; }} td.flagged {{ color: #a05a00; background: #fff4e0; }}
p.note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>clasp-rs study report: {html.escape(study.root.name)}</h1>
<p>Dataset {html.escape(study.dataset)} ({html.escape(str(init.get("source", "")))}),
strategies {html.escape(", ".join(study.strategies))}, seeds
{html.escape(" ".join(map(str, study.seeds)))}; patch size {init.get("patch_size")},
{init.get("budget")} patches per loop ({init.get("start_budget")} to start);
{run.get("n_loops", "?")} loops, trainer {html.escape(str(run.get("trainer", "?")))},
folds {run.get("folds", "?")}, configuration {html.escape(str(run.get("configuration", "?")))}.
{sum(report.finished.values())} of {len(report.finished)} experiment(s) finished.</p>
<h2>Strategies (mean ± 95 % CI over finished seeds)</h2>
<table><tr><th>strategy</th><th>seeds</th><th>Final Dice</th><th>AUBC</th><th>FG-Eff</th>
<th>PPM: beaten</th><th>PPM: beats (mean row)</th>{class_headers}</tr>{strategy_rows}</table>
<p class="note">CI: 1.96&nbsp;&sigma;/&radic;N over seeds (&sigma; the sample standard
deviation; no interval with one seed). Final Dice: mean foreground Dice of the fold ensemble
on the test split after the last loop. AUBC: trapezoid area under mean Dice over loops spaced
evenly on [0, 1]. FG-Eff: rate <i>b</i> of Dice &asymp; <i>a</i>(1 &minus;
e<sup>&minus;<i>b f</i></sup>), <i>f</i> the annotated share of the pool's foreground;
aggregated over reliable fits only (a fit is flagged when its plateau or rate sits at a bound,
its Dice range is below 0.05, it has no standard error, or its rate's standard error exceeds
the rate). Pairwise penalty matrix over the {len(report.complete_seeds)} seed(s) finished by
every strategy ({html.escape(" ".join(map(str, report.complete_seeds)))}), paired by seed,
two-sided one-sample t-tests of the Dice differences at each budget after the starting one,
&alpha; = {report.alpha}, correction {html.escape(correction)}. Entry (row <i>i</i>, column
<i>j</i>): share of budgets at which <i>i</i> is significantly worse than <i>j</i>.
"PPM: beaten" is the row sum / (methods &minus; 1), how often a strategy is significantly
beaten (lower is better); "beats" is the matrix's mean row, column sum / (methods &minus; 1),
how often it significantly beats the others.</p>
<h2>Experiments</h2>
<table><tr><th>experiment</th><th>strategy</th><th>seed</th><th>state</th><th>Final Dice</th>
<th>AUBC</th><th>FG-Eff</th><th>Dice per loop</th><th>annotated voxels</th></tr>
{"".join(experiment_rows)}</table>
<h2>Figures</h2>{figures}
</body></html>
"""


def _ci(v: MeanCI | None) -> str:
    if v is None:
        return "–"
    if math.isnan(v.half_width):
        return f"{v.mean:.3f}"
    return f"{v.mean:.3f} ± {v.half_width:.3f}"
