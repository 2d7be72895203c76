"""The one progress line per step (issue 10 fault 11): loop i of N, the step, elapsed time and
an estimate for the rest from the recorded steps."""

from __future__ import annotations

from clasp_rs.loop.progress import ProgressLine, format_seconds, step_kind


def test_step_kinds_and_time_format():
    assert step_kind("001/train/fold_3") == "train"
    assert step_kind("000/maps/part_1_of_2") == "maps"
    assert step_kind("000/query/part_0_of_2") == "query part"
    assert step_kind("000/query") == "query"
    assert format_seconds(3725.4) == "1:02:05"


def test_the_estimate_appears_once_every_kind_ran_and_counts_parallel_rounds():
    recorded: list[dict] = [{"step": "000/plan", "seconds": 10.0}]
    line = ProgressLine("exp", 2, recorded, parallel=2)
    rest = ["000/train/fold_1", "000/evaluate", "001/train/fold_0", "001/train/fold_1"]
    text = line.line("000/train/fold_0", rest)
    assert text.startswith("clasp-rs run exp: loop 1 of 2 · train/fold_0 · 0:00:0")
    assert "left" not in text  # no fold trained yet
    recorded += [
        {"step": "000/train/fold_0", "seconds": 100.0},
        {"step": "000/train/fold_1", "seconds": 60.0},
        {"step": "000/evaluate", "seconds": 4.0},
    ]
    # Two folds a loop, two at a time: one round of the mean fold (80 s) per loop, plus evaluate.
    assert line.estimate(["001/train/fold_0", "001/train/fold_1", "001/evaluate"]) == 84.0
    assert "about 0:01:24 left" in line.line(
        "001/train/fold_0", ["001/train/fold_1", "001/evaluate"]
    )
    sequential = ProgressLine("exp", 2, recorded, parallel=1)
    assert sequential.estimate(["001/train/fold_0", "001/train/fold_1"]) == 160.0
