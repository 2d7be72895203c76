"""Run one fuzz batch in this process: ``python fuzz_batch.py TARGET --examples N --seed S``.

Prints one JSON line of statistics (inputs tried, worked, errors by class, seconds) and exits
0; exits 1 with hypothesis's falsifying example and the traceback on stderr when an input
breaks the rule of :func:`fuzz_targets.outcome`. A crash or a hang kills only this process:
callers (``test_fuzz.py``, ``fuzz_long_run.py``) run it as a subprocess with a timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import fuzz_cli  # noqa: E402
import fuzz_targets  # noqa: E402
from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TARGET_NAMES = [*fuzz_targets.TARGETS, "cli"]


def run_batch(target: str, examples: int, seed_value: int, shrink: bool) -> dict[str, object]:
    scratch = Path(tempfile.mkdtemp(prefix=f"clasp_rs_fuzz_{target}_"))
    fuzz_targets.WORKDIR = scratch
    if target == "cli":
        fuzz_cli.chdir(scratch)
        pools = fuzz_cli.prepare(scratch)

        def one(draw: st.DrawFn) -> None:
            fuzz_cli.cli_arguments(draw, pools)
    else:
        one = fuzz_targets.TARGETS[target]

    @seed(seed_value)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
        print_blob=False,
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        one(data.draw)

    start = time.perf_counter()
    run()
    stats: dict[str, object] = dict(fuzz_targets.STATS)
    stats.update(target=target, seed=seed_value, seconds=round(time.perf_counter() - start, 2))
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=TARGET_NAMES)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-shrink", action="store_true", help="report the first failure")
    args = parser.parse_args()
    try:
        stats = run_batch(args.target, args.examples, args.seed, not args.no_shrink)
    except Exception:
        traceback.print_exc()
        print(json.dumps({"target": args.target, "seed": args.seed, "failed": True}), flush=True)
        return 1
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
