"""What ``clasp-rs run`` is asked (:class:`RunOptions`), how a run ends (:class:`RunOutcome`),
and the experiment's settings: fixed by the first run, checked on every later one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.experiment import Experiment
from clasp_rs.loop.state import RunState

if TYPE_CHECKING:
    from clasp_rs.strategies import RandomFG, Strategy

__all__ = ["DEFAULTS", "RunOptions", "RunOutcome", "check_settings", "resolve_settings"]

DEFAULTS: dict[str, Any] = {
    "strategy": "clasp-pe",
    "n_loops": 5,
    "trainer": "nnUNetTrainer",
    "folds": [0, 1, 2, 3, 4],
    "configuration": "3d_fullres",
    "simulate": False,
}


@dataclass
class RunOptions:
    """What ``clasp-rs run`` was asked. ``None`` for a setting means: what the experiment
    was started with (or the default on a first run).

    Attributes:
        loops: training loops in all (the beta schedule's ``n_loops``).
        strategy: a name of :data:`clasp_rs.strategies.STRATEGIES`.
        trainer: an nnU-Net trainer class name.
        folds: the folds to train and ensemble.
        configuration: the nnU-Net configuration (``3d_fullres``, ``2d``, ...).
        simulate: annotate from the ground truth instead of stopping for a human.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (may change between runs).
        resume: continue an experiment that already ran steps.
        num_parts, part_id: predict and query only every ``num_parts``-th pool case.
        stop_before_prediction: stop once the current loop is trained and evaluated, so that
            sharded runs (``num_parts``) can predict the pool and query.
    """

    loops: int | None = None
    strategy: str | None = None
    trainer: str | None = None
    folds: list[int] | None = None
    configuration: str | None = None
    simulate: bool | None = None
    device: str = "auto"
    resume: bool = False
    num_parts: int = 1
    part_id: int = 0
    stop_before_prediction: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``finished`` (all loops done), ``waiting`` (for ``clasp-rs annotate``),
    ``stopped`` (before the pool prediction, as asked) or ``part`` (a shard wrote its part)."""

    status: str
    loop: int
    message: str


def resolve_settings(state: RunState, options: RunOptions) -> dict[str, Any]:
    """The run's settings: the experiment's (options may only repeat them), or on a first
    run the options with :data:`DEFAULTS` for what is not given.

    Raises:
        DatasetError: an option differs from the experiment's setting.
    """
    given = {
        "strategy": options.strategy,
        "n_loops": options.loops,
        "trainer": options.trainer,
        "folds": None if options.folds is None else [int(f) for f in options.folds],
        "configuration": options.configuration,
        "simulate": options.simulate,
    }
    if not state.settings:
        return {k: (DEFAULTS[k] if v is None else v) for k, v in given.items()}
    settings = dict(state.settings)
    option = {"n_loops": "--loops", "simulate": "--simulate"}
    for key, value in given.items():
        if value is not None and value != settings.get(key):
            raise DatasetError(
                f"this experiment was started with {option.get(key, '--' + key)} "
                f"{settings.get(key)!r}, not {value!r}: a run keeps its settings (start another "
                "experiment with clasp-rs init to compare)"
            )
    return settings


def check_settings(
    settings: dict[str, Any], exp: Experiment, options: RunOptions
) -> Strategy | RandomFG:
    """The run's strategy, after checking the settings and the sharding options.

    Raises:
        DatasetError: loops, folds, strategy or sharding options that cannot work together.
    """
    from clasp_rs.strategies import get_strategy

    n_loops = settings["n_loops"]
    if not isinstance(n_loops, int) or n_loops < 1:
        raise DatasetError(f"--loops must be >= 1, got {n_loops!r}")
    strategy = get_strategy(settings["strategy"], seed=exp.seed, n_loops=n_loops)
    if strategy.needs_labels and not settings["simulate"]:
        raise DatasetError(
            f"strategy {strategy.name} centres patches on ground-truth foreground: it needs "
            "--simulate"
        )
    folds = settings["folds"]
    if not folds or len(set(folds)) != len(folds) or any(not 0 <= f <= 4 for f in folds):
        raise DatasetError(f"--folds must be distinct values in 0..4, got {folds}")
    if strategy.needs_folds and len(folds) < 2:
        raise DatasetError(f"strategy {strategy.name} needs at least two folds (--folds 0 1)")
    if options.num_parts < 1 or not 0 <= options.part_id < options.num_parts:
        raise DatasetError(
            f"--part-id must be in 0 .. --num-parts - 1, got {options.part_id} of "
            f"{options.num_parts}"
        )
    if options.num_parts > 1 and not strategy.shardable:
        raise DatasetError(f"strategy {strategy.name} cannot be split into parts (--num-parts)")
    return strategy
