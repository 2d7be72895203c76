"""``clasp-rs run``: the active-learning loop, one recorded step at a time.

Training loop ``t`` (0 .. n_loops - 1) trains on the patches of ``loop_000.json`` ..
``loop_t.json`` and runs these steps (see :mod:`clasp_rs.loop.state`)::

    NNN/plan           loop 0: nnU-Net fingerprint + plans, preprocess every pool case
    NNN/preprocess     loop t > 0: preprocess again the cases loop_t.json annotated
    NNN/train/fold_K   train fold K (the model goes to loops/loop_t/model/fold_K)
    NNN/evaluate       fold ensemble on the test split: Dice per class and mean
    NNN/predict/fold_K per-fold probabilities of the pool cases not fully annotated
    NNN/query          loop_(t+1).json, through clasp-rs query's code path
    NNN/annotate       --simulate: copy the ground truth inside the new patches;
                       otherwise the run stops here until ``clasp-rs annotate``

The last loop stops after ``evaluate``. Every step either finishes and is recorded in
state.json, or is run again from scratch by ``--resume``.
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.annotation import (
    apply_patches,
    foreground_counts,
    patch_mask,
    patches_by_case,
)
from clasp_rs.loop.experiment import Experiment, load_experiment
from clasp_rs.loop.jsonfile import read_json, write_json
from clasp_rs.loop.state import RunState, StepHooks, load_state, step_key
from clasp_rs.loop.volumes import read_label, write_label_like
from clasp_rs.nnunet.paths import NnUNetPaths, nnunet_paths
from clasp_rs.patches import Patch, read_loop_file, read_loop_meta

__all__ = [
    "RunOptions",
    "RunOutcome",
    "annotated_statistics",
    "run_experiment",
    "simulate_annotation",
]

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
        device: ``auto``, ``cpu`` or ``cuda`` (may change between runs).
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


def _settings(state: RunState, options: RunOptions) -> dict[str, Any]:
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


def _check_settings(settings: dict[str, Any], exp: Experiment, options: RunOptions) -> Any:
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


# Packages whose own warnings (deprecated torch APIs, "No annotated pixels in image!" for a
# case whose labels are all ignore, NaN pseudo-Dice of a class absent from a validation
# batch, ...) describe nnU-Net's internals, not the run.
_NNUNET_MODULES = (
    "nnunetv2",
    "torch",
    "batchgenerators",
    "batchgeneratorsv2",
    "dynamic_network_architectures",
    "acvl_utils",
    "blosc2",
)


@contextmanager
def _nnunet_warnings() -> Iterator[None]:
    """Inside nnU-Net calls, warnings raised from nnU-Net and its libraries are shown once
    instead of being raised as errors (as ``filterwarnings = error`` would); warnings from
    anything else, clasp-rs included, are untouched."""
    with warnings.catch_warnings():
        for module in _NNUNET_MODULES:
            warnings.filterwarnings("default", module=rf"{module}(\.|$)")
        yield


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
    settings = _settings(state, options)
    strategy = _check_settings(settings, exp, options)
    if state.started and not options.resume and options.num_parts == 1:
        done = state.done_keys()
        raise DatasetError(
            f"experiment {exp.root} has already run ({len(done)} step(s), last "
            f"{done[-1] if done else 'query'}); "
            "continue it with clasp-rs run --resume"
        )
    from clasp_rs.nnunet._runtime import nnunet_ready, resolve_device
    from clasp_rs.nnunet.training import resolve_trainer

    nnunet_ready()
    resolve_trainer(settings["trainer"])
    resolve_device(None if options.device == "auto" else options.device)
    if not (paths.raw / exp.dataset_name / "dataset.json").is_file():
        raise DatasetError(
            f"the experiment's nnU-Net dataset {paths.raw / exp.dataset_name} is missing: is "
            "nnUNet_raw the one clasp-rs init used?"
        )
    if not state.settings:
        state.settings = settings
        state.save()
    loop = _Loop(exp, paths, state, settings, strategy, options, console, hooks)
    return loop.run()


class _Loop:
    def __init__(
        self,
        exp: Experiment,
        paths: NnUNetPaths,
        state: RunState,
        settings: dict[str, Any],
        strategy: Any,
        options: RunOptions,
        console: Console,
        hooks: StepHooks | None,
    ) -> None:
        self.exp = exp
        self.paths = paths
        self.state = state
        self.settings = settings
        self.strategy = strategy
        self.options = options
        self.console = console
        self.hooks = hooks
        self.device = None if options.device == "auto" else options.device
        self.dataset = paths.raw / exp.dataset_name
        self.folds: list[int] = list(settings["folds"])
        self.n_loops: int = settings["n_loops"]

    # -- helpers --------------------------------------------------------------------------------

    def step(self, loop: int, name: str, body: Any) -> None:
        key = step_key(loop, name)
        if self.state.is_done(key):
            return
        self.console.print(f"[bold]clasp-rs run[/bold] {self.exp.root.name}: loop {loop}, {name}")
        self.state.run_step(key, body, self.hooks)

    def annotated_through(self, loop: int) -> list[Patch]:
        return [p for t in range(loop + 1) for p in read_loop_file(self.exp.loop_file(t))]

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        from clasp_rs.loop.querying import complete_parts

        if self.options.num_parts > 1:
            return self.run_part()
        for t in range(self.n_loops):
            folder = self.exp.loop_folder(t)
            folder.mkdir(parents=True, exist_ok=True)
            if t == 0:
                self.step(0, "plan", self.plan)
            else:
                self.step(t, "preprocess", lambda t=t: self.preprocess(t))
            for fold in self.folds:
                self.step(t, f"train/fold_{fold}", lambda t=t, f=fold: self.train(t, f))
            self.step(t, "evaluate", lambda t=t: self.evaluate(t))
            if t == self.n_loops - 1:
                break
            if self.strategy.needs_maps and complete_parts(self, t) is None:
                if self.options.stop_before_prediction and not self.state.is_done(
                    step_key(t, "query")
                ):
                    return self.stop_for_shards(t)
                for fold in self.folds:
                    self.step(t, f"predict/fold_{fold}", lambda t=t, f=fold: self.predict(t, f))
            self.step(t, "query", lambda t=t: self.query(t))
            if self.settings["simulate"]:
                self.step(t, "annotate", lambda t=t: self.simulate_annotation(t))
            elif not self.state.is_done(step_key(t, "annotate")):
                return self.wait_for_human(t)
        mean = read_json(self.exp.loop_folder(self.n_loops - 1) / "evaluation.json", "evaluation")
        return RunOutcome(
            "finished",
            self.n_loops - 1,
            f"finished {self.n_loops} loop(s); mean Dice of the last: {mean['mean']}",
        )

    # -- steps ----------------------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        from clasp_rs.nnunet.planning import plan_experiment, preprocess

        with _nnunet_warnings():
            identifier = plan_experiment(self.exp.dataset_id, verify=True, num_processes=1)
            cases = preprocess(
                self.exp.dataset_id, self.settings["configuration"], plans=identifier
            )
        write_json(
            self.exp.loop_folder(0) / "annotated.json",
            annotated_statistics(self.exp, self.paths, 0),
        )
        return {"plans": identifier, "cases": len(cases)}

    def preprocess(self, loop: int) -> dict[str, Any]:
        from clasp_rs.nnunet.planning import preprocess

        changed = sorted(patches_by_case(read_loop_file(self.exp.loop_file(loop))))
        with _nnunet_warnings():
            if changed:
                preprocess(self.exp.dataset_id, self.settings["configuration"], cases=changed)
        write_json(
            self.exp.loop_folder(loop) / "annotated.json",
            annotated_statistics(self.exp, self.paths, loop),
        )
        return {"cases": changed}

    def model_dir(self, loop: int) -> Path:
        return self.exp.loop_folder(loop) / "model"

    def train(self, loop: int, fold: int) -> dict[str, Any]:
        from clasp_rs.nnunet.training import model_folder, train_fold

        results = model_folder(
            self.exp.dataset_id, self.settings["trainer"], self.settings["configuration"]
        )
        target = self.model_dir(loop) / f"fold_{fold}"
        # A previous attempt may have died half-way: start the fold from scratch.
        shutil.rmtree(results / f"fold_{fold}", ignore_errors=True)
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        with _nnunet_warnings():
            trained = train_fold(
                self.exp.dataset_id,
                fold,
                self.settings["trainer"],
                configuration=self.settings["configuration"],
                device=self.device,
            )
        seconds = time.perf_counter() - start
        target.parent.mkdir(parents=True, exist_ok=True)
        for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
            if (results / name).is_file():
                shutil.copyfile(results / name, self.model_dir(loop) / name)
        shutil.move(str(trained), str(target))
        return {"train_seconds": round(seconds, 3)}

    def evaluate(self, loop: int) -> dict[str, Any]:
        from clasp_rs.nnunet.evaluation import ensemble_segmentation, evaluate_segmentations
        from clasp_rs.nnunet.prediction import predict_probabilities

        out = self.exp.loop_folder(loop) / "test_probabilities"
        with _nnunet_warnings():
            files = predict_probabilities(
                self.model_dir(loop),
                self.dataset / "imagesTs",
                out,
                self.exp.test,
                folds=self.folds,
                device=self.device,
            )
        predictions = {case: ensemble_segmentation(paths) for case, paths in files.items()}
        references = {case: self.dataset / "labelsTs" / self.exp.file_of(case) for case in files}
        result = evaluate_segmentations(references, predictions, self.exp.foreground)
        names = self.exp.label_names
        per_class = {names[c]: _finite(v) for c, v in result.per_class.items()}
        doc: dict[str, Any] = {
            "loop": loop,
            "folds": self.folds,
            "mean": _finite(result.mean),
            "per_class": per_class,
            "per_case": {
                case: {names[c]: _finite(v) for c, v in scores.items()}
                for case, scores in result.per_case.items()
            },
        }
        write_json(self.exp.loop_folder(loop) / "evaluation.json", doc)
        # The probabilities are large and fully summarised by evaluation.json.
        shutil.rmtree(out, ignore_errors=True)
        self.console.print(
            f"loop {loop}: mean Dice {doc['mean']}, "
            + ", ".join(f"{k} {v if v is None else round(v, 4)}" for k, v in per_class.items())
        )
        return {"mean_dice": doc["mean"]}

    def unlabelled_pool(self, loop: int) -> list[str]:
        """Pool cases with voxels left to annotate after loop ``loop``'s patches."""
        from clasp_rs.loop.volumes import image_shape

        by_case = patches_by_case(self.annotated_through(loop))
        out = []
        for case in self.exp.pool:
            patches = by_case.get(case, [])
            if not patches:
                out.append(case)
                continue
            shape = image_shape(self.dataset / "labelsTr" / self.exp.file_of(case))
            if not patch_mask(shape, patches, case).all():
                out.append(case)
        return out

    def predict(
        self, loop: int, fold: int, *, num_parts: int = 1, part_id: int = 0, out: Path | None = None
    ) -> dict[str, Any]:
        from clasp_rs.nnunet.prediction import predict_probabilities

        out = out or self.exp.loop_folder(loop) / "pool_probabilities"
        cases = self.unlabelled_pool(loop)
        with _nnunet_warnings():
            done = predict_probabilities(
                self.model_dir(loop),
                self.dataset / "imagesTr",
                out,
                cases,
                folds=[fold],
                device=self.device,
                num_parts=num_parts,
                part_id=part_id,
            )
        return {"cases": len(done)}

    def query(self, loop: int) -> dict[str, Any]:
        from clasp_rs.loop.querying import query_loop

        target = self.exp.loop_file(loop + 1)
        if target.exists():
            # Written by an attempt that died before recording the step: keep it if it is
            # this experiment's query (loop files are never overwritten).
            meta = read_loop_meta(target)
            if meta.get("loop") != loop or meta.get("strategy") != self.strategy.name:
                raise DatasetError(
                    f"{target} exists but is not the {self.strategy.name} query of loop {loop} "
                    f"(its meta says {meta.get('strategy')!r}, loop {meta.get('loop')!r})"
                )
            return {"patches": len(read_loop_file(target)), "reused": True}
        patches = query_loop(self, loop, target)
        if self.strategy.needs_maps:
            shutil.rmtree(self.exp.loop_folder(loop) / "pool_probabilities", ignore_errors=True)
        return {"patches": patches}

    def simulate_annotation(self, loop: int) -> dict[str, Any]:
        return simulate_annotation(self.exp, self.dataset, loop)

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
        from clasp_rs.loop.querying import query_part

        t = self.current_query_loop()
        k, i = self.options.num_parts, self.options.part_id
        missing = [f for f in self.folds if not self.state.is_done(step_key(t, f"train/fold_{f}"))]
        if missing:
            raise DatasetError(
                f"loop {t}: fold(s) {missing} are not trained yet; a sharded run only predicts and "
                f"queries: first run clasp-rs run {self.exp.root} --resume up to the prediction "
                "(it trains the folds) or train without --num-parts"
            )
        out = self.exp.loop_folder(t) / "parts" / f"part_{i}_of_{k}"
        if self.strategy.needs_maps:
            for fold in self.folds:
                self.predict(t, fold, num_parts=k, part_id=i, out=out / "probabilities")
        path = query_part(self, t, out)
        return RunOutcome("part", t, f"loop {t}: wrote part {i} of {k} to {path}")

    def current_query_loop(self) -> int:
        for t in range(self.n_loops - 1):
            if not self.state.is_done(step_key(t, "query")):
                return t
        raise DatasetError("every query of this experiment is done; nothing to shard")


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def simulate_annotation(exp: Experiment, dataset: Path, loop: int) -> dict[str, Any]:
    """Copy the ground truth into the training labels inside the patches of the query made
    after ``loop`` (``loop_(loop+1).json``); idempotent."""
    new = patches_by_case(read_loop_file(exp.loop_file(loop + 1)))
    exp.scratch.mkdir(exist_ok=True)
    for case, patches in new.items():
        label_file = dataset / "labelsTr" / exp.file_of(case)
        current, reference = read_label(label_file)
        truth, _ = read_label(exp.ground_truth(case))
        write_label_like(apply_patches(current, truth, patches), reference, label_file, exp.scratch)
    return {"cases": len(new), "patches": sum(len(p) for p in new.values())}


def annotated_statistics(exp: Experiment, paths: NnUNetPaths, loop: int) -> dict[str, Any]:
    """What is annotated for training loop ``loop``: patches, voxels and foreground voxels per
    class (from the training label files), and the fraction of the pool's ground-truth
    foreground they hold."""
    dataset = paths.raw / exp.dataset_name
    patches = sum(len(read_loop_file(exp.loop_file(t))) for t in range(loop + 1))
    voxels = 0
    foreground = dict.fromkeys((str(c) for c in exp.foreground), 0)
    for case in exp.pool:
        labels, _ = read_label(dataset / "labelsTr" / exp.file_of(case))
        mask = labels != exp.ignore_label
        voxels += int(mask.sum())
        for c, n in foreground_counts(labels, mask, exp.foreground).items():
            foreground[c] += n
    total = {
        str(c): sum(v.get(str(c), 0) for v in exp.foreground_voxels.values())
        for c in exp.foreground
    }
    all_fg = sum(total.values())
    return {
        "loop": loop,
        "patches": patches,
        "voxels": voxels,
        "foreground": foreground,
        "foreground_total": total,
        "foreground_fraction": sum(foreground.values()) / all_fg if all_fg else None,
    }


def options_from_args(args: argparse.Namespace) -> RunOptions:
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
    )
