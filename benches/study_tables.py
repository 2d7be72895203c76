"""Markdown tables of a study report, for benches/RESULTS.md.

    python benches/study_tables.py REPORT_DIR

reads ``REPORT_DIR/study_summary.json`` (written by ``clasp-rs study report``) and prints the
per-strategy table (mean ± 95 % CI over seeds of Final Dice, AUBC, FG-Eff, final per-class
Dice), the Dice per loop, the pairwise penalty matrix, each experiment's Dice per loop, and
for every pair of strategies the paired Dice difference per budget over the seeds both
finished with its two-sided one-sample t-test p-value (the tests behind the matrix).
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats


def _ci(value: dict | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if value["ci95"] is None:
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} ± {value['ci95']:.{digits}f}"


def main(folder: str) -> None:
    doc = json.loads((Path(folder) / "study_summary.json").read_text())
    rows = doc["rows"]
    classes = list(rows[0]["final_dice_per_class"]) if rows else []
    print(
        "| strategy | seeds | Final Dice | AUBC | FG-Eff | PPM beaten | "
        + " | ".join(f"Final {c}" for c in classes)
        + " |"
    )
    print("|---" * (5 + 1 + len(classes)) + "|")
    for r in rows:
        fg = _ci(r["fg_eff"], 2)
        if r["fg_eff_flagged"]:
            fg += f" ({r['fg_eff_flagged']} of {r['fg_eff_fits']} flagged)"
        beaten = "–" if r["ppm_beaten"] is None else f"{r['ppm_beaten']:.2f}"
        cells = [r["strategy"], str(len(r["seeds"])), _ci(r["final_dice"]), _ci(r["aubc"]), fg]
        cells += [beaten] + [_ci(r["final_dice_per_class"][c]) for c in classes]
        print("| " + " | ".join(cells) + " |")
    print()
    curves = doc["curves"]
    if curves:
        first = next(iter(curves.values()))
        print("| strategy | " + " | ".join(f"{int(p)} patches" for p in first["patches"]) + " |")
        print("|---" * (1 + len(first["patches"])) + "|")
        for name, c in curves.items():
            print(f"| {name} | " + " | ".join(_ci(d) for d in c["dice"]) + " |")
        print()
    ppm = doc["ppm"]
    if ppm:
        methods = ppm["methods"]
        print("| worse \\ than | " + " | ".join(methods) + " |")
        print("|---" * (1 + len(methods)) + "|")
        for m, row in zip(methods, ppm["matrix"], strict=True):
            print(f"| {m} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        print("| mean (column) | " + " | ".join(f"{v:.2f}" for v in ppm["mean"]) + " |")
        print(
            f"\nα = {ppm['alpha']}, correction {ppm['correction']}; seeds {doc['complete_seeds']}"
        )
    dice = _dice_by_seed(Path(folder))
    _per_experiment(dice)
    _paired_tests(dice, int(doc["run"]["n_loops"]))


def _dice_by_seed(folder: Path) -> dict[str, dict[int, list[float]]]:
    """Strategy → seed → mean Dice per loop, from ``study_experiments.csv``."""
    out: dict[str, dict[int, list[float]]] = {}
    with (folder / "study_experiments.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            loops = out.setdefault(row["strategy"], {}).setdefault(int(row["seed"]), [])
            assert int(row["loop"]) == len(loops), row
            loops.append(float(row["dice"]))
    return out


def _per_experiment(dice: dict[str, dict[int, list[float]]]) -> None:
    strategies = list(dice)
    print("\n| seed | " + " | ".join(strategies) + " |")
    print("|---" * (1 + len(strategies)) + "|")
    for seed in sorted({s for d in dice.values() for s in d}):
        cells = [", ".join(f"{v:.3f}" for v in dice[m].get(seed, [])) or "–" for m in strategies]
        print(f"| {seed} | " + " | ".join(cells) + " |")


def _paired_tests(dice: dict[str, dict[int, list[float]]], n_loops: int) -> None:
    print("\n| pair (a − b) | " + " | ".join(f"loop {k}" for k in range(1, n_loops)) + " |")
    print("|---" * n_loops + "|")
    for a, b in itertools.combinations(dice, 2):
        seeds = sorted(
            s
            for s in set(dice[a]) & set(dice[b])
            if len(dice[a][s]) == n_loops and len(dice[b][s]) == n_loops
        )
        cells = []
        for k in range(1, n_loops):
            z = np.array([dice[a][s][k] - dice[b][s][k] for s in seeds])
            p = stats.ttest_1samp(z, 0.0).pvalue if len(z) > 1 else float("nan")
            cells.append(f"{z.mean():+.3f} (p {p:.3f})")
        print(f"| {a} − {b} ({len(seeds)} seeds) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benches/study_tables.py REPORT_DIR")
    main(sys.argv[1])
