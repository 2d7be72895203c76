"""``clasp-rs run``: train, evaluate, query and annotate, loop after loop."""

from __future__ import annotations

import argparse
from typing import Any

from clasp_rs.devices import DEVICE_CHOICES
from clasp_rs.loop.executors import EXECUTORS
from clasp_rs.loop.settings import RunOptions

__all__ = ["add_parser", "options_from_args", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``run`` on the ``clasp-rs`` subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the active-learning loops of an experiment with nnU-Net v2",
        description=(
            "Per loop: plan and preprocess (later: only the cases with new annotations), train "
            "the folds, evaluate the fold ensemble on the test split, predict the pool, query "
            "the next patches and annotate them (--simulate: from the ground truth; otherwise "
            "stop for 'clasp-rs annotate'). Every step is recorded in EXPERIMENT/state.json; "
            "--resume continues after a crash. Settings not given keep the experiment's."
        ),
    )
    parser.add_argument("experiment", metavar="EXPERIMENT", help="folder made by clasp-rs init")
    parser.add_argument("--loops", type=int, default=None, help="training loops in all (default 5)")
    parser.add_argument("--strategy", default=None, help="query strategy (default clasp-pe)")
    parser.add_argument(
        "--trainer", default=None, help="nnU-Net trainer class name (default nnUNetTrainer)"
    )
    parser.add_argument(
        "--folds", nargs="+", type=int, default=None, metavar="K", help="folds (default 0 1 2 3 4)"
    )
    parser.add_argument(
        "--configuration", default=None, help="nnU-Net configuration (default 3d_fullres)"
    )
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default auto")
    parser.add_argument(
        "--simulate",
        action="store_true",
        default=None,
        help="annotate queried patches from the ground truth (benchmarking)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an experiment that already ran steps"
    )
    parser.add_argument(
        "--num-parts",
        type=int,
        default=1,
        metavar="K",
        help="shard prediction and query over K runs (after training; merge: a plain --resume)",
    )
    parser.add_argument("--part-id", type=int, default=0, metavar="I", help="this shard (0 .. K-1)")
    parser.add_argument(
        "--stop-before-prediction",
        action="store_true",
        help="stop once the loop is trained and evaluated (then shard with --num-parts)",
    )
    parser.add_argument(
        "--planner",
        default=None,
        metavar="NAME",
        help="nnU-Net experiment planner, as nnUNetv2_plan_and_preprocess -pl (default "
        "ExperimentPlanner; e.g. nnUNetPlannerResEncM); fixed by the first run",
    )
    parser.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="processes for nnU-Net's fingerprinting and preprocessing (default 1)",
    )
    many = parser.add_argument_group("many GPUs and machines")
    many.add_argument(
        "--executor",
        default="local",
        choices=EXECUTORS,
        help="local: every step in this process (default); ray: independent steps at once "
        "(pip install 'clasp-rs[ray]')",
    )
    many.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join a running Ray cluster: 'auto' or HOST:PORT (default: start a local Ray "
        "instance with this machine's CPUs and GPUs)",
    )
    many.add_argument(
        "--gpus-per-task",
        type=float,
        default=None,
        metavar="G",
        help="GPUs per training, evaluation and prediction task (default 1 with GPUs, else 0)",
    )
    many.add_argument(
        "--cpus-per-task",
        type=float,
        default=None,
        metavar="C",
        help="CPU slots (and torch threads) per task (ray, default 1); with local, the torch "
        "threads of training, evaluation and prediction (default: all)",
    )
    many.add_argument(
        "--shards",
        type=int,
        default=None,
        metavar="S",
        help="prediction + maps tasks per loop (default: as many as run at once)",
    )
    many.add_argument(
        "--task-retries",
        type=int,
        default=2,
        metavar="R",
        help="times Ray reruns a task whose worker process died (default 2)",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The :class:`RunOptions` of parsed ``clasp-rs run`` arguments."""
    return RunOptions(
        loops=args.loops,
        strategy=args.strategy,
        trainer=args.trainer,
        folds=args.folds,
        configuration=args.configuration,
        simulate=args.simulate,
        device=args.device,
        resume=args.resume,
        num_parts=args.num_parts,
        part_id=args.part_id,
        stop_before_prediction=args.stop_before_prediction,
        planner=args.planner,
        num_processes=args.num_processes,
        executor=args.executor,
        ray_address=args.ray_address,
        gpus_per_task=args.gpus_per_task,
        cpus_per_task=args.cpus_per_task,
        shards=args.shards,
        task_retries=args.task_retries,
    )


def run(args: argparse.Namespace) -> int:
    from clasp_rs.loop.driver import run_experiment

    outcome = run_experiment(args.experiment, options_from_args(args))
    print(outcome.message)
    return 0
