"""Markdown tables of a study report, for benches/RESULTS.md.

    python benches/study_tables.py REPORT_DIR

reads ``REPORT_DIR/study_summary.json`` (written by ``clasp-rs study report``) and prints the
per-strategy table (mean ± 95 % CI over seeds of Final Dice, AUBC, FG-Eff, final per-class
Dice), the Dice per loop, and the pairwise penalty matrix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benches/study_tables.py REPORT_DIR")
    main(sys.argv[1])
