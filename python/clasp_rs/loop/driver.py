"""``clasp-rs run``: the active-learning loop, one recorded step at a time, in this process.

Training loop ``t`` (0 .. n_loops - 1) trains on the patches of ``loop_000.json`` ..
``loop_t.json`` and runs these steps (see :mod:`clasp_rs.loop.state`)::

    NNN/plan           loop 0: nnU-Net fingerprint + plans, preprocess every pool case
    NNN/preprocess     loop t > 0: preprocess again the cases loop_t.json annotated
    NNN/train/fold_K   train fold K (the model goes to loops/loop_t/model/fold_K)
    NNN/evaluate       fold ensemble on the test split: Dice per class and mean
    NNN/predict/fold_K per-fold probabilities of the pool cases not fully annotated
    NNN/query          loop_(t+1).json, through clasp_rs.query (as clasp-rs query does)
    NNN/annotate       --simulate: copy the ground truth inside the new patches;
                       otherwise the run stops here until ``clasp-rs annotate``

The last loop stops after ``evaluate``. Every step either finishes and is recorded in
state.json, or is run again from scratch by ``--resume``. The steps themselves are the
functions of :mod:`clasp_rs.loop.tasks` and :mod:`clasp_rs.loop.querying`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import read_json
from clasp_rs.loop import querying, tasks
from clasp_rs.loop.experiment import load_experiment
from clasp_rs.loop.settings import RunOptions, RunOutcome, check_settings, resolve_settings
from clasp_rs.loop.state import RunState, StepHooks, load_state, step_key
from clasp_rs.loop.tasks import LoopContext
from clasp_rs.nnunet.paths import nnunet_paths

__all__ = ["RunOptions", "RunOutcome", "run_experiment"]


def run_experiment(
    experiment: str | Path,
    options: RunOptions,
    *,
    console: Console | None = None,
    hooks: StepHooks | None = None,
) -> RunOutcome:
    """Run (or resume) an experiment's loops.

    Raises:
        DatasetError: bad options, settings that differ from the experiment's, an
            experiment already started without ``resume``, a missing nnU-Net environment.
        ImportError: nnunetv2 or torch is missing.
    """
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    exp = load_experiment(experiment)
    paths = nnunet_paths()
    state = load_state(exp.state_file)
    settings = resolve_settings(state, options)
    strategy = check_settings(settings, exp, options)
    if state.started and not options.resume and options.num_parts == 1:
        done = state.done_keys()
        raise DatasetError(
            f"experiment {exp.root} has already run ({len(done)} step(s), last "
            f"{done[-1] if done else 'query'}); "
            "continue it with clasp-rs run --resume"
        )
    from clasp_rs.devices import resolve_torch_device
    from clasp_rs.nnunet._runtime import nnunet_ready
    from clasp_rs.nnunet.training import resolve_trainer

    nnunet_ready()
    resolve_trainer(settings["trainer"])
    resolve_torch_device(options.device)
    if not (paths.raw / exp.dataset_name / "dataset.json").is_file():
        raise DatasetError(
            f"the experiment's nnU-Net dataset {paths.raw / exp.dataset_name} is missing: is "
            "nnUNet_raw the one clasp-rs init used?"
        )
    if not state.settings:
        state.settings = settings
        state.save()
    ctx = LoopContext(
        exp=exp,
        paths=paths,
        strategy=strategy,
        trainer=settings["trainer"],
        configuration=settings["configuration"],
        folds=tuple(settings["folds"]),
        device=options.device,
        console=console,
    )
    return _Loop(ctx, state, settings, options, hooks).run()


class _Loop:
    """The order of the steps, what is done already, and when the run stops."""

    def __init__(
        self,
        ctx: LoopContext,
        state: RunState,
        settings: dict[str, Any],
        options: RunOptions,
        hooks: StepHooks | None,
    ) -> None:
        self.ctx = ctx
        self.exp = ctx.exp
        self.state = state
        self.settings = settings
        self.options = options
        self.hooks = hooks
        self.n_loops: int = settings["n_loops"]

    def step(self, loop: int, name: str, body: Callable[[], dict[str, Any]]) -> None:
        key = step_key(loop, name)
        if self.state.is_done(key):
            return
        self.ctx.console.print(
            f"[bold]clasp-rs run[/bold] {self.exp.root.name}: loop {loop}, {name}"
        )
        self.state.run_step(key, body, self.hooks)

    def run(self) -> RunOutcome:
        if self.options.num_parts > 1:
            return self.run_part()
        ctx = self.ctx
        for t in range(self.n_loops):
            self.exp.loop_folder(t).mkdir(parents=True, exist_ok=True)
            if t == 0:
                self.step(0, "plan", partial(tasks.plan, ctx))
            else:
                self.step(t, "preprocess", partial(tasks.preprocess, ctx, t))
            for fold in ctx.folds:
                self.step(t, f"train/fold_{fold}", partial(tasks.train, ctx, t, fold))
            self.step(t, "evaluate", partial(tasks.evaluate, ctx, t))
            if t == self.n_loops - 1:
                break
            if ctx.strategy.needs_maps and querying.complete_parts(ctx, t) is None:
                if self.options.stop_before_prediction and not self.state.is_done(
                    step_key(t, "query")
                ):
                    return self.stop_for_shards(t)
                for fold in ctx.folds:
                    self.step(t, f"predict/fold_{fold}", partial(tasks.predict, ctx, t, fold))
            self.step(t, "query", partial(querying.query_step, ctx, t))
            if self.settings["simulate"]:
                annotate = partial(tasks.simulate_annotation, self.exp, ctx.dataset, t)
                self.step(t, "annotate", annotate)
            elif not self.state.is_done(step_key(t, "annotate")):
                return self.wait_for_human(t)
        mean = read_json(self.exp.loop_folder(self.n_loops - 1) / "evaluation.json", "evaluation")
        return RunOutcome(
            "finished",
            self.n_loops - 1,
            f"finished {self.n_loops} loop(s); mean Dice of the last: {mean['mean']}",
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

    # -- sharding -------------------------------------------------------------------------------

    def stop_for_shards(self, loop: int) -> RunOutcome:
        root = self.exp.root
        message = (
            f"loop {loop} is trained and evaluated; predict the pool and query in K shards with\n"
            f"    clasp-rs run {root} --num-parts K --part-id I   (I = 0 .. K-1)\n"
            f"then merge them and go on with\n    clasp-rs run {root} --resume"
        )
        return RunOutcome("stopped", loop, message)

    def run_part(self) -> RunOutcome:
        ctx = self.ctx
        t = self.current_query_loop()
        k, i = self.options.num_parts, self.options.part_id
        missing = [f for f in ctx.folds if not self.state.is_done(step_key(t, f"train/fold_{f}"))]
        if missing:
            raise DatasetError(
                f"loop {t}: fold(s) {missing} are not trained yet; a sharded run only predicts and "
                f"queries: first run clasp-rs run {self.exp.root} --resume up to the prediction "
                "(it trains the folds) or train without --num-parts"
            )
        out = querying.part_folder(ctx, t, k, i)
        if ctx.strategy.needs_maps:
            for fold in ctx.folds:
                tasks.predict(ctx, t, fold, num_parts=k, part_id=i, out=out / "probabilities")
        path = querying.query_part(ctx, t, num_parts=k, part_id=i)
        return RunOutcome("part", t, f"loop {t}: wrote part {i} of {k} to {path}")

    def current_query_loop(self) -> int:
        for t in range(self.n_loops - 1):
            if not self.state.is_done(step_key(t, "query")):
                return t
        raise DatasetError("every query of this experiment is done; nothing to shard")
