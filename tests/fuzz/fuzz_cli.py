"""Fuzzing ``clasp-rs select``, ``query`` and ``merge`` argument lists: a working command
line with options dropped, repeated, swapped for others or given odd values (edge numbers,
text with newlines, missing, existing and wrong-kind paths). Every run must exit 0, or 2
with its error as the last line of stderr and no traceback.

The batch runs in a scratch folder (its current directory) that holds copies of the bundled
examples, so relative ``--out``/``--workdir`` values land there.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from fuzz_inputs import rarely
from fuzz_targets import STATS
from hypothesis import strategies as st

from clasp_rs.cli import main

ROOT = Path(__file__).resolve().parents[2]
_ERROR_LINE = re.compile(r"^clasp-rs( [a-z]+)?: error: \S")

_VALUES = [
    "0", "1", "2", "3", "4", "-1", "8", "16", "2.5", "nan", "inf", "1e400", "", " ",
    str(2**62), str(2**63), str(2**64), "9" * 5000, "a\nb", "--", "-", "clasp-pe", "random",
    "bald", "nope", "cpu", "cuda", "mps", "auto", "cuda:9",
]  # fmt: skip


def prepare(scratch: Path) -> dict[str, list[str]]:
    """Copy the examples into ``scratch``, make part and loop files there, and return the
    token pools the arguments are drawn from."""
    shutil.copytree(ROOT / "examples" / "scores", scratch / "scores")
    shutil.copytree(ROOT / "examples" / "probabilities", scratch / "probs")
    probs = ["probs", "probs/fold_0"]
    dataset = "probs/dataset.json"
    query = ["query", "probs", "--dataset-json", dataset, "--n", "4", "--loop", "0"]
    query += ["--patch-size", "4", "8", "8", "--device", "cpu", "--num-parts", "2"]
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        for part in (0, 1):
            assert main([*query, "--part-id", str(part), "--out", f"part_{part}.json"]) == 0
        select = ["select", "scores/case_001.npy", "--patch-size", "8", "8", "8", "--n", "3"]
        assert main([*select, "--out", "loop_000.json"]) == 0
    (scratch / "bad_loop.json").write_text('{"patches": [{"file": "a", "coords": [0]}]}')
    (scratch / "deep.json").write_text("[" * 50_000 + "]" * 50_000)
    (scratch / "two\nlines.json").write_text("{}")
    return {
        "scores": ["scores/case_001.npy", "scores/case_002.npy", "probs/fold_0/case_000.npz"][:2]
        * 2
        + ["probs/fold_0/case_000.npz"],
        "probs": probs,
        "dataset": [dataset, "probs", "deep.json"],
        "loops": ["loop_000.json", "bad_loop.json", "deep.json", "two\nlines.json", "none.json"],
        "parts": ["part_0.json", "part_1.json", "loop_000.json", "none.json"],
        "any": ["scores", "missing/x.json", "/", "probs/fold_0", *_VALUES],
    }


_FRESH = itertools.count()

_OPTIONS = {
    "select": ["--patch-size", "--n", "--stride", "--annotated", "--beta", "--seed", "--out"],
    "query": [
        "--dataset-json", "--strategy", "--n", "--loop", "--n-loops", "--patch-size",
        "--stride", "--per-volume", "--seed", "--annotated", "--out", "--device",
        "--workdir", "--num-parts", "--part-id",
    ],
    "merge": ["--out", "--strategy"],
}  # fmt: skip


def _base(draw: st.DrawFn, pools: dict[str, list[str]], command: str) -> list[list[str]]:
    """A working command line as groups: the command and positionals, then one group per
    option with its values."""

    def pick(pool: str) -> str:  # the pool's first (working) entry, else any of it
        return pools[pool][0] if not rarely(draw, 3) else draw(st.sampled_from(pools[pool]))

    out = ["--out", f"out_{next(_FRESH)}.json"]
    if command == "select":
        return [["select", pick("scores")], ["--patch-size", "8", "8", "8"], ["--n", "3"], out]
    if command == "query":
        return [
            ["query", pick("probs")],
            ["--dataset-json", pick("dataset")],
            ["--n", "4"],
            ["--loop", "1"],
            ["--patch-size", "4", "8", "8"],
            ["--device", "cpu"],
            out,
        ]
    parts = [pick("parts"), pools["parts"][1] if not rarely(draw, 3) else pick("parts")]
    return [["merge", *parts], out]


def _option_values(draw: st.DrawFn, pools: dict[str, list[str]], option: str) -> list[str]:
    count = {"--patch-size": 3, "--stride": draw(st.sampled_from([1, 3])), "--annotated": 1}
    value = st.one_of(
        st.sampled_from(_VALUES),
        st.sampled_from(pools["loops"] if option == "--annotated" else pools["any"]),
        st.integers(-2, 20).map(str),
        st.text(max_size=4),
    )
    return [draw(value) for _ in range(count.get(option, 1))]


def cli_arguments(draw: st.DrawFn, pools: dict[str, list[str]]) -> None:
    command = draw(st.sampled_from(["select", "query", "merge"]))
    groups = _base(draw, pools, command)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        edit = draw(st.sampled_from(["value", "value", "value", "add", "drop", "token"]))
        k = draw(st.integers(1, len(groups) - 1)) if len(groups) > 1 else 0
        if edit == "value" and k:
            groups[k] = [groups[k][0], *_option_values(draw, pools, groups[k][0])]
        elif edit == "add":
            option = draw(st.sampled_from(_OPTIONS[command]))
            groups.append([option, *_option_values(draw, pools, option)])
        elif edit == "drop" and k:
            del groups[k]
        elif edit == "token":  # anything anywhere, argparse's own errors
            where = draw(st.integers(0, len(groups) - 1))
            groups[where] = [*groups[where], draw(st.sampled_from(_VALUES + _OPTIONS[command]))]
    argv = [token for group in groups for token in group]
    run_cli(argv)


def run_cli(argv: list[str]) -> None:
    """Run ``clasp-rs argv``; check the exit status and stderr."""
    STATS["inputs"] += 1
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert code in (0, 2), (code, text)
    if code == 0:
        STATS["worked"] += 1
        return
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and _ERROR_LINE.match(lines[-1]), text
    assert sum(" error: " in line for line in lines) == 1, text
    STATS["error exit 2"] += 1
    if os.environ.get("CLASP_RS_FUZZ_VERBOSE"):
        print(lines[-1][:200], file=sys.__stderr__)


def chdir(scratch: Path) -> Any:
    os.chdir(scratch)
