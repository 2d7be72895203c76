"""The steps of a training loop as plain functions on a :class:`LoopContext`: plan,
preprocess, train a fold, evaluate, predict a fold (or one shard of it), annotate from the
ground truth. The query steps are in :mod:`clasp_rs.loop.querying`.

Each step writes its outputs into the experiment folder (atomically, or into a folder it
first clears) and returns the small JSON record :mod:`clasp_rs.loop.state` keeps for it, so
running a step again after a crash gives the same result. Only the driver
(:mod:`clasp_rs.loop.driver`) decides the order and records the steps.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clasp_rs.io.json_files import write_json
from clasp_rs.loop.experiment import Experiment
from clasp_rs.nnunet._runtime import nnunet_warnings
from clasp_rs.nnunet.labels import (
    apply_patches,
    foreground_counts,
    image_shape,
    patch_mask,
    read_label,
    write_label_like,
)
from clasp_rs.nnunet.paths import NnUNetPaths
from clasp_rs.patches import Patch, patches_by_case, read_loop_file

if TYPE_CHECKING:
    from rich.console import Console

    from clasp_rs.strategies import RandomFG, Strategy

__all__ = [
    "LoopContext",
    "annotated_statistics",
    "evaluate",
    "plan",
    "predict",
    "preprocess",
    "simulate_annotation",
    "train",
]


@dataclass(frozen=True)
class LoopContext:
    """What every step of an experiment's run needs to know.

    Attributes:
        exp: the experiment.
        paths: nnU-Net's folders.
        strategy: the query strategy.
        trainer: the nnU-Net trainer class name.
        configuration: the nnU-Net configuration (``3d_fullres``, ...).
        folds: the folds trained and ensembled.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        console: where steps report (stderr).
    """

    exp: Experiment
    paths: NnUNetPaths
    strategy: Strategy | RandomFG
    trainer: str
    configuration: str
    folds: tuple[int, ...]
    device: str
    console: Console

    @property
    def dataset(self) -> Path:
        """``$nnUNet_raw/DatasetYYY_Name``, the dataset the loop trains on."""
        return self.exp.dataset_folder(self.paths.raw)

    def model_dir(self, loop: int) -> Path:
        """The nnU-Net model folder of training loop ``loop``."""
        return self.exp.loop_folder(loop) / "model"

    def annotated_through(self, loop: int) -> list[Patch]:
        """Every patch of ``loop_000.json`` .. ``loop_<loop>.json``."""
        return [p for t in range(loop + 1) for p in read_loop_file(self.exp.loop_file(t))]

    def unlabelled_pool(self, loop: int) -> list[str]:
        """Pool cases with voxels left to annotate after loop ``loop``'s patches."""
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


def plan(ctx: LoopContext) -> dict[str, Any]:
    """Loop 0: nnU-Net's fingerprint and plans, then preprocess every pool case."""
    from clasp_rs.nnunet.planning import plan_experiment
    from clasp_rs.nnunet.planning import preprocess as preprocess_cases

    with nnunet_warnings():
        identifier = plan_experiment(ctx.exp.dataset_id, verify=True, num_processes=1)
        cases = preprocess_cases(ctx.exp.dataset_id, ctx.configuration, plans=identifier)
    write_json(
        ctx.exp.loop_folder(0) / "annotated.json", annotated_statistics(ctx.exp, ctx.paths, 0)
    )
    return {"plans": identifier, "cases": len(cases)}


def preprocess(ctx: LoopContext, loop: int) -> dict[str, Any]:
    """Loop ``loop > 0``: preprocess again the cases ``loop_<loop>.json`` annotated."""
    from clasp_rs.nnunet.planning import preprocess as preprocess_cases

    changed = sorted(patches_by_case(read_loop_file(ctx.exp.loop_file(loop))))
    with nnunet_warnings():
        if changed:
            preprocess_cases(ctx.exp.dataset_id, ctx.configuration, cases=changed)
    write_json(
        ctx.exp.loop_folder(loop) / "annotated.json",
        annotated_statistics(ctx.exp, ctx.paths, loop),
    )
    return {"cases": changed}


def train(ctx: LoopContext, loop: int, fold: int) -> dict[str, Any]:
    """Train ``fold`` of loop ``loop``; the model goes to ``loops/loop_NNN/model/fold_K``."""
    from clasp_rs.nnunet.training import model_folder, train_fold

    results = model_folder(ctx.exp.dataset_id, ctx.trainer, ctx.configuration)
    target = ctx.model_dir(loop) / f"fold_{fold}"
    # A previous attempt may have died half-way: start the fold from scratch.
    shutil.rmtree(results / f"fold_{fold}", ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    start = time.perf_counter()
    with nnunet_warnings():
        trained = train_fold(
            ctx.exp.dataset_id,
            fold,
            ctx.trainer,
            configuration=ctx.configuration,
            device=ctx.device,
        )
    seconds = time.perf_counter() - start
    target.parent.mkdir(parents=True, exist_ok=True)
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        if (results / name).is_file():
            shutil.copyfile(results / name, ctx.model_dir(loop) / name)
    shutil.move(str(trained), str(target))
    return {"train_seconds": round(seconds, 3)}


def _finite(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def evaluate(ctx: LoopContext, loop: int) -> dict[str, Any]:
    """The fold ensemble of loop ``loop`` on the test split: ``evaluation.json`` with the
    Dice per class and case and their mean."""
    from clasp_rs.nnunet.evaluation import ensemble_segmentation, evaluate_segmentations
    from clasp_rs.nnunet.prediction import predict_probabilities

    exp = ctx.exp
    out = exp.loop_folder(loop) / "test_probabilities"
    with nnunet_warnings():
        files = predict_probabilities(
            ctx.model_dir(loop),
            ctx.dataset / "imagesTs",
            out,
            exp.test,
            folds=list(ctx.folds),
            device=ctx.device,
        )
    predictions = {case: ensemble_segmentation(paths) for case, paths in files.items()}
    references = {case: ctx.dataset / "labelsTs" / exp.file_of(case) for case in files}
    result = evaluate_segmentations(references, predictions, exp.foreground)
    names = exp.label_names
    per_class = {names[c]: _finite(v) for c, v in result.per_class.items()}
    doc: dict[str, Any] = {
        "loop": loop,
        "folds": list(ctx.folds),
        "mean": _finite(result.mean),
        "per_class": per_class,
        "per_case": {
            case: {names[c]: _finite(v) for c, v in scores.items()}
            for case, scores in result.per_case.items()
        },
    }
    write_json(exp.loop_folder(loop) / "evaluation.json", doc)
    # The probabilities are large and fully summarised by evaluation.json.
    shutil.rmtree(out, ignore_errors=True)
    ctx.console.print(
        f"loop {loop}: mean Dice {doc['mean']}, "
        + ", ".join(f"{k} {v if v is None else round(v, 4)}" for k, v in per_class.items())
    )
    return {"mean_dice": doc["mean"]}


def predict(
    ctx: LoopContext,
    loop: int,
    fold: int,
    *,
    num_parts: int = 1,
    part_id: int = 0,
    out: Path | None = None,
) -> dict[str, Any]:
    """``fold``'s probabilities of the pool cases not fully annotated after loop ``loop``
    (every ``num_parts``-th from ``part_id``), into ``out/fold_K/<case>.npz`` (default the
    loop's ``pool_probabilities``)."""
    from clasp_rs.nnunet.prediction import predict_probabilities

    out = out or ctx.exp.loop_folder(loop) / "pool_probabilities"
    cases: Sequence[str] = ctx.unlabelled_pool(loop)
    with nnunet_warnings():
        done = predict_probabilities(
            ctx.model_dir(loop),
            ctx.dataset / "imagesTr",
            out,
            cases,
            folds=[fold],
            device=ctx.device,
            num_parts=num_parts,
            part_id=part_id,
        )
    return {"cases": len(done)}


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
