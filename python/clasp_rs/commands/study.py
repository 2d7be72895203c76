"""``clasp-rs study``: campaigns of experiments (strategies × seeds): init, run, status,
report."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.table import Table

from clasp_rs.devices import DEVICE_CHOICES
from clasp_rs.loop.executors import EXECUTORS

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``study`` and its subcommands on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "study",
        help="benchmark campaigns: one experiment per strategy and seed, run and reported",
        description=(
            "A study is one experiment per (strategy, seed); experiments of one seed share the "
            "split and the starting budget. 'study init' creates them, 'study run' runs them "
            "all (simulated annotation, resumable), 'study status' shows how far they are, "
            "'study report' aggregates them over seeds (mean ± 95 % CI, pairwise penalty "
            "matrix, curves)."
        ),
    )
    sub = parser.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)

    init = sub.add_parser("init", help="create one experiment per strategy and seed")
    init.add_argument("dataset", metavar="DATASET", help="dataset id, DatasetXXX_Name, or folder")
    init.add_argument("study", metavar="STUDY_DIR", help="study folder to create")
    init.add_argument(
        "--strategies",
        nargs="+",
        required=True,
        metavar="NAME",
        help="query strategies (names of clasp-rs query --help), e.g. clasp-pe random-fg66 random",
    )
    init.add_argument(
        "--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="S", help="default 0 1 2"
    )
    init.add_argument(
        "--patch-size",
        nargs="+",
        default=["auto"],
        metavar="N",
        help="query patch size Z Y X, or 'auto' (default)",
    )
    init.add_argument(
        "--budget", default="auto", help="patches per loop, or 'auto' (default, as init)"
    )
    init.add_argument(
        "--start-budget", type=int, default=None, help="patches of loop_000.json (default --budget)"
    )
    init.add_argument(
        "--hard-classes",
        nargs="+",
        default=[],
        metavar="CLASS",
        help="classes that get 100 patches under --budget auto",
    )
    init.add_argument(
        "--dataset-id",
        type=int,
        default=None,
        help="id of the first experiment's nnU-Net dataset; the others take the next ids",
    )
    init.add_argument(
        "--name", default=None, help="datasets are named NAME_<strategy>_s<seed> (default: init's)"
    )
    init.set_defaults(_study=_init)

    run = sub.add_parser("run", help="run every experiment of a study to its end (resumable)")
    run.add_argument("study", metavar="STUDY_DIR")
    run.add_argument("--loops", type=int, default=None, help="training loops (default 5)")
    run.add_argument("--trainer", default=None, help="nnU-Net trainer (default nnUNetTrainer)")
    run.add_argument(
        "--folds", nargs="+", type=int, default=None, metavar="K", help="default 0 1 2 3 4"
    )
    run.add_argument("--configuration", default=None, help="default 3d_fullres")
    run.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default auto")
    run.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="how each experiment's tasks run: local (default) or ray (clasp-rs[ray])",
    )
    run.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with ray: a running cluster (auto or HOST:PORT); default: one local instance "
        "shared by the study's experiments",
    )
    run.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        metavar="N",
        help="experiments at once, each in its own process (default: 1 with local, all otherwise)",
    )
    run.set_defaults(_study=_run)

    status = sub.add_parser("status", help="how far each experiment of a study has run")
    status.add_argument("study", metavar="STUDY_DIR")
    status.set_defaults(_study=_status)

    report = sub.add_parser(
        "report", help="mean ± 95 %% CI over seeds, pairwise penalty matrix, curves, HTML"
    )
    report.add_argument("study", metavar="STUDY_DIR")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for the report files")
    report.add_argument(
        "--overwrite", action="store_true", help="replace the report files of an earlier report"
    )
    report.add_argument(
        "--holm", action="store_true", help="Holm-correct the penalty matrix's tests together"
    )
    report.set_defaults(_study=_report)
    return parser


def run(args: argparse.Namespace) -> int:
    return int(args._study(args))


def _patch_size(values: list[str]) -> str | list[int]:
    if values == ["auto"]:
        return "auto"
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ValueError(f"--patch-size takes 'auto' or 3 integers Z Y X, got {values}") from None


def _budget(value: str) -> str | int:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--budget takes 'auto' or an integer, got {value!r}") from None


def _init(args: argparse.Namespace) -> int:
    from clasp_rs.loop.study import init_study

    study = init_study(
        args.dataset,
        args.study,
        strategies=args.strategies,
        seeds=args.seeds,
        patch_size=_patch_size(args.patch_size),
        budget=_budget(args.budget),
        start_budget=args.start_budget,
        hard_classes=args.hard_classes,
        dataset_id=args.dataset_id,
        name=args.name,
    )
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(
        f"study {study.root}: {len(study.experiments)} experiment(s), strategies "
        f"{' '.join(study.strategies)}, seeds {' '.join(map(str, study.seeds))}"
    )
    init = study.init
    console.print(
        f"  patch size {init['patch_size']} (Z Y X), {init['budget']} patches per loop, "
        f"{init['start_budget']} in loop_000.json"
    )
    console.print(f"next: clasp-rs study run {study.root}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from clasp_rs.loop.study_run import StudyRunOptions, run_study

    outcomes = run_study(
        args.study,
        StudyRunOptions(
            loops=args.loops,
            trainer=args.trainer,
            folds=args.folds,
            configuration=args.configuration,
            device=args.device,
            executor=args.executor,
            ray_address=args.ray_address,
            max_concurrent=args.max_concurrent,
        ),
    )
    for o in outcomes:
        print(f"{o.name}: {o.status}")
    print(f"next: clasp-rs study report {args.study} --out REPORT_DIR")
    return 0


def _status(args: argparse.Namespace) -> int:
    from clasp_rs.loop.study import experiment_progress, load_study

    study = load_study(args.study)
    table = Table(title=f"clasp-rs study {study.root.name}")
    for column in ("experiment", "strategy", "seed", "loops evaluated", "steps", "state"):
        table.add_column(
            column, justify="left" if column in ("experiment", "strategy") else "right"
        )
    for p in experiment_progress(study):
        state = "finished" if p.finished else ("running/stopped" if p.started else "not started")
        loops = f"{p.loops_done} / {p.n_loops if p.n_loops is not None else '?'}"
        table.add_row(
            p.experiment.name,
            p.experiment.strategy,
            str(p.experiment.seed),
            loops,
            str(p.steps),
            state,
        )
    Console(highlight=False, soft_wrap=True).print(table)
    return 0


def _report(args: argparse.Namespace) -> int:
    from clasp_rs.loop.study_report import build_study_report

    report = build_study_report(
        args.study, args.out, overwrite=args.overwrite, correction="holm" if args.holm else None
    )
    table = Table(title=f"clasp-rs study report ({report.complete_seeds} complete seed(s))")
    for column in ("strategy", "seeds", "Final Dice", "AUBC", "FG-Eff", "PPM mean"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for row in report.rows:
        table.add_row(
            row.strategy,
            str(row.n_seeds),
            row.final_dice_text,
            row.aubc_text,
            row.fg_eff_text,
            row.ppm_mean_text,
        )
    Console(highlight=False, soft_wrap=True).print(table)
    print(f"wrote {args.out}/report.html")
    return 0
