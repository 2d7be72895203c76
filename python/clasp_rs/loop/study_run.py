"""``clasp-rs study run``: every experiment of a study to its end, resumable.

The first ``study run`` records its settings (loops, trainer, folds, configuration) in
``study.json``; later runs keep them (a different value is refused, as ``clasp-rs run``
refuses one), so that every experiment of a study runs the same way even when the study is
resumed across sessions. Each experiment runs with simulated annotation and ``--resume``
(finished steps are never redone); finished experiments are skipped.

Experiments run seed by seed (:meth:`~clasp_rs.loop.study.Study.by_seed`), one at a time
with the ``local`` executor. ``max_concurrent`` > 1 runs that many at once, each in its own
process (spawned, so every one has its own torch and nnU-Net state, and its log in
``EXPERIMENT/study_run.log``); an executor that runs tasks elsewhere (``ray``, when
:class:`~clasp_rs.loop.settings.RunOptions` knows one) runs all of them at once by default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import socket
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.state import StepHooks
from clasp_rs.loop.study import Progress, Study, experiment_progress, load_study

__all__ = ["StudyOutcome", "StudyRunOptions", "run_study"]

LOG_FILE = "study_run.log"


@dataclass
class StudyRunOptions:
    """What ``clasp-rs study run`` was asked (``None``: what the study was first run with,
    or ``clasp-rs run``'s default on a first run).

    Attributes:
        loops, trainer, folds, configuration: as for :class:`clasp_rs.loop.settings.RunOptions`,
            the same for every experiment.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (may change between runs).
        executor: ``local`` (tasks in this process) or ``ray``.
        ray_address: with ``ray``: a running cluster (``auto`` or ``HOST:PORT``); ``None``
            starts one local Ray instance that every experiment of this run shares.
        max_concurrent: experiments run at once (default 1 with ``local``, all otherwise).
    """

    loops: int | None = None
    trainer: str | None = None
    folds: list[int] | None = None
    configuration: str | None = None
    device: str = "auto"
    executor: str = "local"
    ray_address: str | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True)
class StudyOutcome:
    """How one experiment's run ended: ``finished`` (now or before), or ``failed``."""

    name: str
    status: str
    message: str


_SETTINGS = {
    "n_loops": ("loops", "--loops"),
    "trainer": ("trainer", "--trainer"),
    "folds": ("folds", "--folds"),
    "configuration": ("configuration", "--configuration"),
}


def _settings(study: Study, options: StudyRunOptions) -> dict[str, Any]:
    from clasp_rs.loop.settings import DEFAULTS

    given = {
        key: getattr(options, attr)
        if key != "folds" or options.folds is None
        else [int(f) for f in options.folds]
        for key, (attr, _) in _SETTINGS.items()
    }
    if study.run is None:
        return {k: DEFAULTS[k] if v is None else v for k, v in given.items()}
    for key, value in given.items():
        if value is not None and value != study.run.get(key):
            raise DatasetError(
                f"this study was first run with {_SETTINGS[key][1]} {study.run.get(key)!r}, not "
                f"{value!r}: every experiment of a study runs the same way (start another study "
                "to compare)"
            )
    return dict(study.run)


def _check_executor(name: str) -> None:
    from clasp_rs.loop.executors import EXECUTORS

    if name not in EXECUTORS:
        raise DatasetError(f"--executor must be one of {', '.join(EXECUTORS)}, got {name!r}")


@contextlib.contextmanager
def _shared_ray(options: StudyRunOptions, concurrent: int) -> Iterator[StudyRunOptions]:
    """With ``ray`` and experiments in several processes but no cluster address: one local
    Ray instance for all of them (each would otherwise start its own and oversubscribe the
    machine); the experiments join it by its address."""
    if options.executor != "ray" or options.ray_address is not None or concurrent <= 1:
        yield options
        return
    from clasp_rs.loop.executors.ray_executor import import_ray, start_local_ray

    ray = import_ray()
    if ray.is_initialized():  # this process is part of a Ray instance already: use that
        yield dataclasses.replace(options, ray_address=ray.get_runtime_context().gcs_address)
        return
    address = start_local_ray()
    try:
        yield dataclasses.replace(options, ray_address=address)
    finally:
        ray.shutdown()


def _run_options(
    settings: dict[str, Any], strategy: str, resume: bool, options: StudyRunOptions
) -> Any:
    from clasp_rs.loop.settings import RunOptions

    return RunOptions(
        loops=settings["n_loops"],
        strategy=strategy,
        trainer=settings["trainer"],
        folds=list(settings["folds"]),
        configuration=settings["configuration"],
        simulate=True,
        device=options.device,
        resume=resume,
        executor=options.executor,
        ray_address=options.ray_address,
    )


def run_study(
    root: str | os.PathLike[str],
    options: StudyRunOptions,
    *,
    console: Console | None = None,
    hooks: StepHooks | None = None,
) -> list[StudyOutcome]:
    """Run (or resume) every experiment of a study to its end.

    Args:
        root: the study folder.
        options: the run's settings.
        console: where progress goes (default: stderr).
        hooks: step callbacks passed to every experiment run in this process (tests).

    Returns:
        One outcome per experiment, in run order.

    Raises:
        DatasetError: bad or conflicting options, or experiments that failed (named, each
            with its error; the others ran to their end).
    """
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    study = load_study(root)
    _check_executor(options.executor)
    settings = _settings(study, options)
    limit = options.max_concurrent
    if limit is not None and limit < 1:
        raise DatasetError(f"--max-concurrent must be >= 1, got {limit}")
    if study.run is None:
        study.run = settings
        study.save()
    progress = experiment_progress(study)
    pending = [p for p in progress if not p.finished]
    if pending:
        # A setup fault shared by every experiment is one error up front, not one per run.
        from clasp_rs.nnunet.paths import nnunet_paths

        nnunet_paths()
    outcomes = {
        p.experiment.name: StudyOutcome(p.experiment.name, "finished", "finished before")
        for p in progress
        if p.finished
    }
    console.print(
        f"[bold]clasp-rs study[/bold] {study.root}: {len(progress) - len(pending)} of "
        f"{len(progress)} experiment(s) finished, {len(pending)} to run"
    )
    concurrent = (
        limit if limit is not None else (1 if options.executor == "local" else len(pending))
    )
    if concurrent <= 1 or len(pending) <= 1:
        for p in pending:
            outcomes[p.experiment.name] = _run_here(p, settings, options, console, hooks)
    else:
        with _shared_ray(options, concurrent) as shared:
            for outcome in _run_in_processes(pending, settings, shared, console, concurrent):
                outcomes[outcome.name] = outcome
    ordered = [outcomes[p.experiment.name] for p in progress]
    failed = [o for o in ordered if o.status == "failed"]
    if failed:
        messages = {o.message for o in failed}
        causes = (
            f"{', '.join(o.name for o in failed)}: {failed[0].message}"
            if len(messages) == 1
            else "; ".join(f"{o.name}: {o.message}" for o in failed)
        )
        raise DatasetError(
            f"{len(failed)} of {len(ordered)} experiment(s) failed: "
            + causes
            + f" (fix the cause and run clasp-rs study run {study.root} again; finished steps "
            "are kept)"
        )
    return ordered


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: " + " ".join(text.splitlines())


def _run_here(
    p: Progress,
    settings: dict[str, Any],
    options: StudyRunOptions,
    console: Console,
    hooks: StepHooks | None,
) -> StudyOutcome:
    from clasp_rs.loop.driver import run_experiment

    name = p.experiment.name
    console.print(f"[bold]clasp-rs study[/bold]: experiment {name} ({p.loops_done} loop(s) done)")
    try:
        outcome = run_experiment(
            p.experiment.root,
            _run_options(settings, p.experiment.strategy, p.started, options),
            console=console,
            hooks=hooks,
        )
    except Exception as err:  # one experiment's failure must not stop the others
        console.print(f"[bold red]experiment {name} failed[/bold red]: {_one_line(err)}")
        return StudyOutcome(name, "failed", _one_line(err))
    return StudyOutcome(name, outcome.status, outcome.message)


def _run_in_processes(
    pending: list[Progress],
    settings: dict[str, Any],
    options: StudyRunOptions,
    console: Console,
    workers: int,
) -> list[StudyOutcome]:
    context = multiprocessing.get_context("spawn")
    outcomes = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(
                _run_logged,
                str(p.experiment.root),
                p.experiment.name,
                _run_options(settings, p.experiment.strategy, p.started, options),
            ): p
            for p in pending
        }
        console.print(
            f"[bold]clasp-rs study[/bold]: {len(pending)} experiment(s), {workers} at once; "
            f"logs in EXPERIMENT/{LOG_FILE}"
        )
        for future in as_completed(futures):
            outcome = future.result()
            console.print(
                f"[bold]clasp-rs study[/bold]: {outcome.name} {outcome.status}: {outcome.message}"
            )
            outcomes.append(outcome)
    return outcomes


def _run_logged(root: str, name: str, run_options: Any) -> StudyOutcome:
    """One experiment in a worker process; its console and nnU-Net's prints are appended to
    ``EXPERIMENT/study_run.log``."""
    from clasp_rs.loop.driver import run_experiment

    with (
        open(Path(root) / LOG_FILE, "a", encoding="utf-8", buffering=1) as stream,
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        console = Console(file=stream, highlight=False, soft_wrap=True, force_terminal=False)
        # Which process drives the experiment: the one to look for (or stop) while it runs.
        stream.write(
            f"clasp-rs study: {name} driven by pid {os.getpid()} on {socket.gethostname()}\n"
        )
        try:
            outcome = run_experiment(root, run_options, console=console)
        except Exception as err:
            stream.write(traceback.format_exc())
            return StudyOutcome(name, "failed", _one_line(err))
    return StudyOutcome(name, outcome.status, outcome.message)
