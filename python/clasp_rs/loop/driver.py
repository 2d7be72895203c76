"""``clasp-rs run``: the active-learning loop, one recorded step at a time.

Training loop ``t`` (0 .. n_loops - 1) trains on the patches of ``loop_000.json`` ..
``loop_t.json``; its steps form the task graph of :mod:`clasp_rs.loop.graph`::

    NNN/plan                 loop 0: nnU-Net fingerprint + plans, preprocess every pool case
    NNN/preprocess           loop t > 0: preprocess again the cases loop_t.json annotated
    NNN/train/fold_K         train fold K (the model goes to loops/loop_t/model/fold_K)
    NNN/evaluate             fold ensemble on the test split: Dice per class and mean
    NNN/maps/part_I_of_S     every fold over shard I of the pool: its score maps
    NNN/query/part_I_of_S    shard I's part of the query
    NNN/query                loop_(t+1).json (the parts merged)
    NNN/annotate             --simulate: copy the ground truth inside the new patches;
                             otherwise the run stops here until ``clasp-rs annotate``

An executor (:mod:`clasp_rs.loop.executors`: ``local`` in this process, or ``ray``) runs the
graph; this driver, the only writer of ``state.json``, holds the experiment's lock
(:mod:`clasp_rs.loop.lock`), records each task as it finishes (seconds, start and finish
time, host) and prints one progress line per step; nnU-Net's own output goes to
``EXPERIMENT/logs/<step>.log``. A step either finishes and is recorded, or runs again on
``--resume`` (a fold's training from its latest checkpoint). The last loop stops after
``evaluate``; a query that finds no valid candidate left ends the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import read_json
from clasp_rs.loop import graph, querying
from clasp_rs.loop.executors import Executor, Resources, Task, TaskRecord, make_executor
from clasp_rs.loop.experiment import Experiment, load_experiment
from clasp_rs.loop.lock import experiment_lock
from clasp_rs.loop.progress import ProgressLine
from clasp_rs.loop.settings import RunOptions, RunOutcome, check_settings, resolve_settings
from clasp_rs.loop.state import RunState, StepHooks, load_state, step_key
from clasp_rs.loop.tasks import dice_summary
from clasp_rs.nnunet.paths import nnunet_paths

__all__ = ["RunOptions", "RunOutcome", "run_experiment"]


def run_experiment(
    experiment: str | Path,
    options: RunOptions,
    *,
    console: Console | None = None,
    hooks: StepHooks | None = None,
    executor: Executor | None = None,
) -> RunOutcome:
    """Run (or resume) an experiment's loops.

    Args:
        experiment: the experiment folder.
        options: what was asked (see :class:`RunOptions`).
        console: where progress lines go (default stderr).
        hooks: called around every step (tests interrupt runs with them).
        executor: run the tasks on this executor (left open) instead of the one
            ``options.executor`` names (started and closed here); e.g. one Ray executor shared
            by several experiments of a study.

    Raises:
        DatasetError: bad options, settings that differ from the experiment's, an
            experiment already started without ``resume``, a missing nnU-Net environment.
        ExperimentLockedError: another driver runs this experiment.
        TaskFailedError: a task failed for good (named in the message).
        ImportError: nnunetv2, torch or (for ``ray``) Ray is missing.
    """
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    exp = load_experiment(experiment)
    if options.num_parts > 1:
        # A shard only reads state.json and writes its own part: no lock, no records.
        return _run_part(exp, options, console)
    with experiment_lock(exp.root, "clasp-rs run"):
        state = load_state(exp.state_file)
        settings, spec = _prepare(exp, state, options)
        from clasp_rs.loop.cleanup import remove_leftovers
        from clasp_rs.nnunet.planning import preprocessed_folder

        removed = remove_leftovers(exp, preprocessed_folder(exp.dataset_id))
        if removed:
            console.print(f"removed {len(removed)} leftover(s) of an interrupted run")
        own = executor is None
        if executor is None:
            executor = _make_executor(options)
        try:
            return _Loop(exp, state, settings, spec, options, console, hooks, executor).run()
        finally:
            if own:
                executor.close()


def _prepare(
    exp: Experiment, state: RunState, options: RunOptions
) -> tuple[dict[str, Any], graph.LoopSpec]:
    paths = nnunet_paths()
    settings = resolve_settings(state, options)
    check_settings(settings, exp, options)
    if state.started and not options.resume:
        done = state.done_keys()
        raise DatasetError(
            f"experiment {exp.root} has already run ({len(done)} step(s), last "
            f"{done[-1] if done else 'query'}); "
            "continue it with clasp-rs run --resume"
        )
    if options.num_processes < 1:
        raise DatasetError(f"--num-processes must be >= 1, got {options.num_processes}")
    from clasp_rs.devices import resolve_torch_device
    from clasp_rs.nnunet._runtime import nnunet_ready
    from clasp_rs.nnunet.training import resolve_trainer

    nnunet_ready()
    resolve_trainer(settings["trainer"])
    if options.executor == "local":
        resolve_torch_device(options.device)
    if not (paths.raw / exp.dataset_name / "dataset.json").is_file():
        raise DatasetError(
            f"the experiment's nnU-Net dataset {paths.raw / exp.dataset_name} is missing: is "
            "nnUNet_raw the one clasp-rs init used?"
        )
    if settings != state.settings:
        state.settings = settings  # a first run, or --loops raised
        state.save()
    return settings, _spec(exp, settings, options)


def _spec(exp: Experiment, settings: dict[str, Any], options: RunOptions) -> graph.LoopSpec:
    return graph.LoopSpec(str(exp.root), dict(settings), options.device, options.num_processes)


def _make_executor(options: RunOptions) -> Executor:
    if options.executor == "local":
        cpus = options.cpus_per_task
        return make_executor("local", network_threads=None if cpus is None else int(cpus))
    return make_executor("ray", address=options.ray_address, max_retries=options.task_retries)


class _Loop:
    """Which tasks are left, in what order, and when the run stops."""

    def __init__(
        self,
        exp: Experiment,
        state: RunState,
        settings: dict[str, Any],
        spec: graph.LoopSpec,
        options: RunOptions,
        console: Console,
        hooks: StepHooks | None,
        executor: Executor,
    ) -> None:
        self.exp = exp
        self.state = state
        self.settings = settings
        self.spec = spec
        self.options = options
        self.console = console
        self.hooks = hooks
        self.executor = executor
        self.n_loops: int = settings["n_loops"]
        self.network, self.slots = self._network_resources()
        self.progress = ProgressLine(exp.root.name, self.n_loops, state.steps, self.slots)
        self.remaining: list[str] = []

    def _network_resources(self) -> tuple[Resources, int]:
        """What a network task asks for, and how many such tasks run at once."""
        options = self.options
        if self.executor.name == "local":
            return Resources(), 1
        total_gpus = float(getattr(self.executor, "total_gpus", 0.0))
        gpus = options.gpus_per_task
        if gpus is None:
            gpus = 1.0 if total_gpus > 0 else 0.0
        per_task = 1.0 if options.cpus_per_task is None else options.cpus_per_task
        if gpus < 0 or per_task <= 0:
            raise DatasetError("--gpus-per-task must be >= 0 and --cpus-per-task > 0")
        cpus = float(getattr(self.executor, "total_cpus", 1.0))
        slots = int(total_gpus // gpus) if gpus > 0 else int(cpus // per_task)
        return Resources(cpus=per_task, gpus=gpus), max(1, slots)

    def shards(self, loop: int) -> int:
        if self.options.shards is not None:
            if self.options.shards < 1:
                raise DatasetError(f"--shards must be >= 1, got {self.options.shards}")
            wanted = self.options.shards
        else:
            wanted = self.slots
        cases = len(graph.context(self.spec).unlabelled_pool(loop))
        return max(1, min(wanted, cases))

    # -- callbacks of the executor ---------------------------------------------------------------

    def started(self, task: Task) -> None:
        if task.key in self.remaining:
            self.remaining.remove(task.key)
        self.console.print(self.progress.line(task.key, self.remaining))
        if self.hooks is not None and self.hooks.before is not None:
            self.hooks.before(task.key)

    def done(self, record: TaskRecord) -> None:
        if self.hooks is not None and self.hooks.after is not None:
            self.hooks.after(record.key)
        self.state.mark_done(
            record.key, record.seconds, finished=record.finished, **record.as_step_info()
        )
        name = record.key.split("/", 1)[1]
        loop = int(record.key.split("/", 1)[0])
        if name == "plan" and "plans" in record.info:
            self.settings["plans"] = record.info["plans"]
            self.state.settings = self.settings
            self.state.save()
            self.spec = _spec(self.exp, self.settings, self.options)
        elif name == "evaluate":
            self.console.print(f"loop {loop + 1} of {self.n_loops}: {dice_summary(record.info)}")
        elif name == "query":
            self.console.print(
                f"loop {loop + 1} of {self.n_loops}: {record.info.get('patches')} patch(es) in "
                f"{self.exp.loop_file(loop + 1).name}"
            )

    # -- the loop -------------------------------------------------------------------------------

    def loop_tasks(self, t: int, shards: int, *, until_evaluate: bool) -> list[Task]:
        """The tasks of loop ``t`` not yet done (see :func:`graph.build_loop_graph`)."""
        return graph.build_loop_graph(
            self.spec,
            self.state,
            t,
            shards=shards,
            network=self.network,
            until_evaluate=until_evaluate,
            simulate=bool(self.settings["simulate"]),
        )

    def run_graph(self, tasks: list[Task]) -> None:
        if tasks:
            self.executor.run(tasks, on_start=self.started, on_done=self.done)

    def run(self) -> RunOutcome:
        self.console.print(
            f"clasp-rs run {self.exp.root.name}: nnU-Net's output goes to {self.exp.root / 'logs'}"
        )
        simulate = bool(self.settings["simulate"])
        for t in range(self.n_loops):
            if t > 0 and self._nothing_left(t - 1):
                return self._no_candidates(t - 1)
            if t < self.n_loops - 1 and self._nothing_left(t):
                return self._no_candidates(t)
            self.exp.loop_folder(t).mkdir(parents=True, exist_ok=True)
            shards = self.shards(t) if t < self.n_loops - 1 else 1
            self.remaining = graph.remaining_keys(self.spec, self.state, t, shards)
            if t == 0 and not self.state.is_done(step_key(0, "plan")):
                # Alone first: later tasks need the plans identifier it records.
                self.run_graph(self.loop_tasks(0, shards, until_evaluate=True)[:1])
            ctx = graph.context(self.spec)
            stop = (
                self.options.stop_before_prediction
                and t < self.n_loops - 1
                and not self.state.is_done(step_key(t, "query"))
                and querying.complete_parts(ctx, t) is None
            )
            self.run_graph(self.loop_tasks(t, shards, until_evaluate=stop))
            if t == self.n_loops - 1:
                break
            if stop:
                return self.stop_for_shards(t)
            if self._nothing_left(t):
                return self._no_candidates(t)
            if not simulate and not self.state.is_done(step_key(t, "annotate")):
                return self.wait_for_human(t)
        last = self.n_loops - 1
        evaluation = read_json(self.exp.loop_folder(last) / "evaluation.json", "evaluation")
        info = {"mean_dice": evaluation["mean"], "dice": evaluation["per_class"]}
        return RunOutcome(
            "finished", last, f"finished {self.n_loops} loop(s); last loop: {dice_summary(info)}"
        )

    def _nothing_left(self, loop: int) -> bool:
        for entry in self.state.steps:
            if entry["step"] == step_key(loop, "query"):
                return entry.get("patches") == 0
        return False

    def _no_candidates(self, loop: int) -> RunOutcome:
        return RunOutcome(
            "finished",
            loop,
            f"loop {loop}: the query found no valid candidate left in the pool (every patch "
            f"that fits overlaps the annotated ones): the run ends after {loop + 1} of "
            f"{self.n_loops} loop(s) instead of training again on unchanged labels",
        )

    def wait_for_human(self, loop: int) -> RunOutcome:
        from clasp_rs.loop.handout import hand_out, waiting_message

        query = self.exp.loop_file(loop + 1)
        folder = self.exp.annotation_folder(loop + 1)
        if self.state.waiting is None:
            hand_out(self.exp, loop)
            self.state.waiting = {"loop": loop, "query": query.name, "folder": str(folder)}
            self.state.save()
        # The caller prints the outcome's message (once).
        return RunOutcome("waiting", loop, waiting_message(self.exp, loop, folder))

    def stop_for_shards(self, loop: int) -> RunOutcome:
        root = self.exp.root
        message = (
            f"loop {loop} is trained and evaluated; predict the pool and query in K shards with\n"
            f"    clasp-rs run {root} --num-parts K --part-id I   (I = 0 .. K-1)\n"
            f"then merge them and go on with\n    clasp-rs run {root} --resume"
        )
        return RunOutcome("stopped", loop, message)


def _run_part(exp: Experiment, options: RunOptions, console: Console) -> RunOutcome:
    """A hand-made shard (``--num-parts K --part-id I``) of the current loop's query."""
    state = load_state(exp.state_file)
    settings = resolve_settings(state, options)
    check_settings(settings, exp, options)
    spec = _spec(exp, settings, options)
    ctx = graph.context(spec, console)
    n_loops = settings["n_loops"]
    t = next((t for t in range(n_loops - 1) if not state.is_done(step_key(t, "query"))), None)
    if t is None:
        raise DatasetError("every query of this experiment is done; nothing to shard")
    k, i = options.num_parts, options.part_id
    missing = [f for f in ctx.folds if not state.is_done(step_key(t, f"train/fold_{f}"))]
    if missing:
        raise DatasetError(
            f"loop {t}: fold(s) {missing} are not trained yet; a sharded run only predicts and "
            f"queries: first run clasp-rs run {exp.root} --resume up to the prediction "
            "(it trains the folds) or train without --num-parts"
        )
    from clasp_rs.loop.step_log import log_file_name, output_to

    if ctx.strategy.needs_maps:
        key = step_key(t, f"maps/part_{i}_of_{k}")
        console.print(f"clasp-rs run {exp.root.name}: loop {t + 1} of {n_loops} · {key[4:]}")
        with output_to(exp.root / "logs" / log_file_name(key)):
            querying.predict_maps(ctx, t, k, i)
    path = querying.query_part(ctx, t, num_parts=k, part_id=i)
    return RunOutcome("part", t, f"loop {t}: wrote part {i} of {k} to {path}")
