"""PNG figures of a study report: learning curves with 95 % CI bands and the pairwise
penalty matrix (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_rs.loop.plots import _pyplot, _save_and_close
from clasp_rs.metrics import MeanCI

if TYPE_CHECKING:
    from clasp_rs.loop.study_report import StrategyRow, StudyReport

__all__ = ["plot_study_curves", "plot_study_per_class", "plot_study_ppm", "strategy_colours"]


def strategy_colours(strategies: Sequence[str]) -> dict[str, str]:
    """One colour per strategy, by its place in the study (tab10)."""
    return {s: f"C{i % 10}" for i, s in enumerate(strategies)}


def _band(values: Sequence[MeanCI | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.array([np.nan if v is None else v.mean for v in values])
    half = np.array(
        [np.nan if v is None or math.isnan(v.half_width) else v.half_width for v in values]
    )
    return mean, mean - half, mean + half


def _limits(lows: list[np.ndarray], highs: list[np.ndarray]) -> tuple[float, float]:
    """y range around the data (bands included), inside [0, 1]."""
    values = np.concatenate([*lows, *highs]) if lows else np.array([])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    pad = max(0.05 * (hi - lo), 0.01)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def _draw(ax: Any, x: Sequence[float], values: Sequence[MeanCI | None], colour: str, label: str):
    mean, low, high = _band(values)
    ax.plot(x, mean, "o-", color=colour, label=label, lw=1.6, ms=4)
    if np.any(np.isfinite(low)):
        ax.fill_between(x, low, high, color=colour, alpha=0.18, lw=0)
    return low, high, mean


def _legend(fig: Any, axes: Any, rows: Sequence[StrategyRow]) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(rows), 5),
        frameon=False,
        fontsize=9,
    )


def _with_seeds(r: StrategyRow) -> str:
    return f"{r.strategy} (n={r.n_seeds})"


def plot_study_curves(report: StudyReport, path: str | os.PathLike[str]) -> Path:
    """Mean Dice ± 95 % CI over seeds against mean annotated voxels (left) and against the
    budget in annotated patches (right), one colour per strategy."""
    plt = _pyplot()
    colours = strategy_colours(report.study.strategies)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    lows, highs = [], []
    for r in report.rows:
        if r.curve is None:
            continue
        c = r.curve
        low, high, mean = _draw(axes[0], c.voxels, c.dice, colours[r.strategy], _with_seeds(r))
        _draw(axes[1], c.patches, c.dice, colours[r.strategy], _with_seeds(r))
        lows += [low, mean]
        highs += [high, mean]
    lo, hi = _limits(lows, highs)
    axes[0].set_xlabel("annotated voxels (cumulative, mean over seeds)")
    axes[1].set_xlabel("budget: annotated patches (cumulative)")
    for ax in axes:
        ax.set_ylim(lo, hi)
        ax.set_ylabel("mean Dice on the test split")
        ax.grid(alpha=0.3)
    axes[0].set_title("Dice vs annotated voxels")
    axes[1].set_title("Dice vs budget")
    fig.suptitle("mean over seeds, band: 95 % CI", fontsize=10)
    _legend(fig, axes, report.rows)
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    return _save_and_close(fig, path)


def plot_study_per_class(report: StudyReport, path: str | os.PathLike[str]) -> Path:
    """Per-class Dice ± 95 % CI over seeds against the budget, one panel per class."""
    plt = _pyplot()
    colours = strategy_colours(report.study.strategies)
    names = list(report.rows[0].final_per_class) if report.rows else []
    fig, axes = plt.subplots(
        1, max(len(names), 1), figsize=(3.9 * max(len(names), 1), 4.0), squeeze=False
    )
    axes = axes[0]
    for ax, name in zip(axes, names, strict=False):
        lows, highs = [], []
        for r in report.rows:
            if r.curve is None:
                continue
            low, high, mean = _draw(
                ax, r.curve.patches, r.curve.per_class[name], colours[r.strategy], _with_seeds(r)
            )
            lows += [low, mean]
            highs += [high, mean]
        ax.set_ylim(*_limits(lows, highs))
        ax.set_title(f"Dice: {name}")
        ax.set_xlabel("annotated patches")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Dice on the test split")
    _legend(fig, axes, report.rows)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save_and_close(fig, path)


def plot_study_ppm(report: StudyReport, path: str | os.PathLike[str]) -> Path:
    """The pairwise penalty matrix as an annotated heatmap, its mean row (column sums /
    (n − 1)) below it and the "beaten" column (row sums / (n − 1)) at its right."""
    plt = _pyplot()
    ppm = report.ppm
    if ppm is None:
        raise ValueError("the report has no penalty matrix")
    k = len(ppm.methods)
    grid = np.full((k + 1, k + 1), np.nan)
    grid[:k, :k] = ppm.matrix
    np.fill_diagonal(grid[:k, :k], np.nan)
    grid[k, :k] = ppm.mean
    grid[:k, k] = ppm.matrix.sum(axis=1) / (k - 1)
    fig, ax = plt.subplots(figsize=(1.25 * k + 3.4, 1.0 * k + 2.4))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0)
    for i in range(k + 1):
        for j in range(k + 1):
            value = grid[i, j]
            if np.isfinite(value):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=10,
                    color="black" if value > 0.6 else "white",
                )
    ax.axhline(k - 0.5, color="white", lw=3)
    ax.axvline(k - 0.5, color="white", lw=3)
    ax.set_xticks(range(k + 1), [*ppm.methods, "beaten\n(row mean)"], rotation=25, ha="right")
    ax.set_yticks(range(k + 1), [*ppm.methods, "mean\n(column)"])
    ax.set_xlabel("… than this strategy")
    ax.set_ylabel("this strategy is significantly worse …")
    correction = f", {report.correction}" if report.correction else ""
    n_budgets = len(report.rows[0].curve.loops) - 1 if report.rows[0].curve else 0
    ax.set_title(
        f"Pairwise penalty matrix (α = {report.alpha}{correction}; "
        f"{len(report.complete_seeds)} seeds, {n_budgets} budgets)",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of budgets")
    fig.tight_layout()
    return _save_and_close(fig, path)
