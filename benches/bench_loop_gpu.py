"""Active-learning loop on CUDA: ClaSP PE against Random 66 % FG and Random, end to end.

For each strategy this runs ``clasp-rs init`` (same seed: same split and starting budget for
all) and ``clasp-rs run --simulate`` with stock nnU-Net v2 on the bundled real CT dataset
(``tests/data/Dataset_clasp_ct``: 12 slabs of two CT scans, liver/spleen/kidney), then
``clasp-rs report``, and appends the Dice-vs-budget curves (annotated voxels, annotated share of
foreground, mean Dice per loop; Final Dice, AUBC, FG-Eff) as a new section of
``benches/RESULTS.md``.

The models train with a short schedule (``nnUNetTrainer_clasp_bench``: nnU-Net's default
trainer with ``--epochs`` epochs of ``--iterations`` iterations) so that the comparison fits in a
few minutes of GPU time; mirror twins and two patients make the dataset a smoke test of the
pipeline, not evidence about the strategies (one seed, no repeats; nnU-Net training is not
deterministic).

Usage::

    python benches/bench_loop_gpu.py          # needs CUDA; else prints "skipped: no CUDA"
    python benches/bench_loop_gpu.py --smoke  # CPU, tiny trainer, 2 loops, no RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "Dataset_clasp_ct"
WORK = HERE / "_work" / "loop"
STRATEGIES = ("clasp-pe", "random-fg66", "random")


def _register_bench_trainer(epochs: int, iterations: int) -> str:
    """A short-schedule stock trainer, registered where clasp-rs resolves trainer names
    (for training and for prediction from the checkpoint's trainer name)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from clasp_rs.nnunet.trainers import TRAINERS

    class nnUNetTrainer_clasp_bench(nnUNetTrainer):  # noqa: N801 - nnU-Net's naming scheme
        def __init__(self, plans, configuration, fold, dataset_json, device=None):  # type: ignore[no-untyped-def]
            import torch

            super().__init__(
                plans,
                configuration,
                fold,
                dataset_json,
                device if device is not None else torch.device("cuda"),
            )
            self.num_epochs = epochs
            self.num_iterations_per_epoch = iterations
            self.num_val_iterations_per_epoch = max(iterations // 5, 1)

    TRAINERS[nnUNetTrainer_clasp_bench.__name__] = nnUNetTrainer_clasp_bench
    return nnUNetTrainer_clasp_bench.__name__


def _environment(root: Path, smoke: bool) -> None:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / name)
    os.environ.setdefault("nnUNet_compile", "false")
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    os.environ.setdefault("nnUNet_n_proc_DA", "0" if smoke else str(min(8, os.cpu_count() or 1)))
    shutil.copytree(DATA, root / "nnUNet_raw" / "Dataset900_clasp_ct")


def _section(
    args: argparse.Namespace,
    summaries: list,
    seconds: dict[str, float],
    device: str,
    trainer: str,
) -> str:
    schedule = "" if args.smoke else f" ({args.epochs} epochs x {args.iterations} iterations)"
    lines = [
        "",
        "## Active-learning loop on CUDA (issue 4)",
        "",
        f"`python benches/bench_loop_gpu.py` ({time.strftime('%Y-%m-%d')}, {device}, "
        f"{os.cpu_count()} CPU cores, Python {platform.python_version()}): bundled CT dataset "
        f"(9 pool / 3 test slabs), {args.loops} loops, patch "
        f"{' x '.join(map(str, args.patch_size))} "
        f"voxels, {args.budget} patches per loop (starting budget included), fold(s) "
        f"{' '.join(map(str, args.folds))}, trainer {trainer}{schedule}, seed {args.seed}. "
        "Dice: mean over liver, spleen, kidney of the fold ensemble on the test slabs. One "
        "seed, no repeats.",
        "",
        "| strategy | loop | annotated voxels | FG share | mean Dice |",
        "|---|---|---|---|---|",
    ]
    for s in summaries:
        for r in s.loops:
            dice = "-" if r.dice is None else f"{r.dice:.4f}"
            lines.append(
                f"| {s.strategy} | {r.loop} | {r.voxels} | {r.foreground_fraction:.4f} | {dice} |"
            )
    lines += [
        "",
        "| strategy | Final Dice | AUBC | FG-Eff (b) | plateau a | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:

        def f(v: float | None, d: int = 4) -> str:
            return "-" if v is None else f"{v:.{d}f}"

        lines.append(
            f"| {s.strategy} | {f(s.final_dice)} | {f(s.aubc)} | "
            f"{f(None if s.fit is None else s.fit.rate, 2)} | "
            f"{f(None if s.fit is None else s.fit.plateau)} | {seconds[s.strategy]:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=3)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--patch-size", type=int, nargs=3, default=[4, 16, 16])
    parser.add_argument("--folds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CPU, tiny trainer, 2 loops; prints the results, no RESULTS.md",
    )
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args(argv)

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("skipped: no CUDA")
        return 0
    if args.smoke:
        args.loops = 2
        torch.set_num_threads(min(2, torch.get_num_threads()))
    device = "cpu" if args.smoke else "cuda"
    shutil.rmtree(args.work, ignore_errors=True)
    _environment(args.work, args.smoke)

    from clasp_rs.loop.driver import RunOptions, run_experiment
    from clasp_rs.loop.report import build_report
    from clasp_rs.loop.setup import init_experiment

    trainer = (
        "nnUNetTrainer_clasp_tiny"
        if args.smoke
        else _register_bench_trainer(args.epochs, args.iterations)
    )
    roots, seconds = [], {}
    for strategy in args.strategies:
        start = time.perf_counter()
        root = args.work / "experiments" / strategy
        init_experiment(
            "900",
            root,
            seed=args.seed,
            patch_size=args.patch_size,
            budget=args.budget,
            name=f"bench_{strategy.replace('-', '_')}",
        )
        run_experiment(
            root,
            RunOptions(
                loops=args.loops,
                strategy=strategy,
                trainer=trainer,
                folds=args.folds,
                simulate=True,
                device=device,
            ),
        )
        seconds[strategy] = time.perf_counter() - start
        roots.append(root)
        print(f"{strategy}: {seconds[strategy]:.0f} s", flush=True)
    summaries = build_report(roots, args.work / "report")
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (smoke)"
    section = _section(args, summaries, seconds, name, trainer)
    print(section)
    print(f"report: {args.work / 'report' / 'report.html'}")
    if not args.smoke:
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as results:
            results.write(section)
        print(f"appended to {HERE / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
