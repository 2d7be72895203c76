"""A training loop as a graph of executor tasks.

::

    plan (loop 0) | preprocess (loop t > 0)
      └─ train/fold_K  ×F                       one GPU each (when there are GPUs)
           ├─ evaluate                          one GPU
           └─ maps/part_I_of_S  ×S              predict + maps of shard I, one GPU each
                └─ query/part_I_of_S  ×S        select in shard I (shardable strategies)
                     └─ query                   merge -> loop_(t+1).json
                          └─ annotate           --simulate only

The last loop ends with ``evaluate``. Strategies that cannot be split skip the query parts
(``query`` reads every shard's maps); strategies without maps (Random, Random FG) have only
``query``. Every task is a function of this module taking a :class:`LoopSpec` (small,
picklable: a Ray worker rebuilds the :class:`~clasp_rs.loop.tasks.LoopContext` from it) and
calling the step functions of :mod:`clasp_rs.loop.tasks` and :mod:`clasp_rs.loop.querying`.
The same graph runs on every executor, so the local and the Ray executor write the same
files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs.loop import querying, tasks
from clasp_rs.loop.executors.base import Resources, Task
from clasp_rs.loop.state import RunState, step_key
from clasp_rs.loop.step_log import log_file_name

__all__ = ["LoopSpec", "build_loop_graph", "context"]


@dataclass(frozen=True)
class LoopSpec:
    """What a task needs to rebuild the loop's context wherever it runs.

    Attributes:
        root: the experiment folder (the same path on every node).
        settings: the run's settings (``state.json``'s).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        num_processes: processes for fingerprinting and preprocessing.
    """

    root: str
    settings: dict[str, Any] = field(hash=False)
    device: str = "auto"
    num_processes: int = 1


# One context per process and spec: workers reuse it across tasks.
_contexts: dict[str, tasks.LoopContext] = {}


def context(spec: LoopSpec, console: Any = None) -> tasks.LoopContext:
    """The :class:`~clasp_rs.loop.tasks.LoopContext` of ``spec`` (built once per process)."""
    from rich.console import Console

    from clasp_rs.loop.experiment import load_experiment
    from clasp_rs.nnunet.paths import nnunet_paths
    from clasp_rs.strategies import get_strategy

    key = json.dumps([spec.root, spec.settings, spec.device, spec.num_processes], sort_keys=True)
    if console is None and key in _contexts:
        return _contexts[key]
    exp = load_experiment(spec.root)
    settings = spec.settings
    ctx = tasks.LoopContext(
        exp=exp,
        paths=nnunet_paths(),
        strategy=get_strategy(settings["strategy"], seed=exp.seed, n_loops=settings["n_loops"]),
        trainer=settings["trainer"],
        configuration=settings["configuration"],
        folds=tuple(settings["folds"]),
        device=spec.device,
        console=console or Console(stderr=True, highlight=False, soft_wrap=True),
        planner=settings.get("planner", "ExperimentPlanner"),
        plans=settings.get("plans", "nnUNetPlans"),
        num_processes=spec.num_processes,
    )
    if console is None:
        _contexts[key] = ctx
    return ctx


# -- the tasks (module-level functions: workers import them by name) ---------------------------


def plan_task(spec: LoopSpec) -> dict[str, Any]:
    return tasks.plan(context(spec))


def preprocess_task(spec: LoopSpec, loop: int) -> dict[str, Any]:
    return tasks.preprocess(context(spec), loop)


def train_task(spec: LoopSpec, loop: int, fold: int) -> dict[str, Any]:
    return tasks.train(context(spec), loop, fold)


def evaluate_task(spec: LoopSpec, loop: int) -> dict[str, Any]:
    return tasks.evaluate(context(spec), loop)


def maps_task(spec: LoopSpec, loop: int, num_parts: int, part_id: int) -> dict[str, Any]:
    return querying.predict_maps(context(spec), loop, num_parts, part_id)


def query_part_task(spec: LoopSpec, loop: int, num_parts: int, part_id: int) -> dict[str, Any]:
    path = querying.query_part(context(spec), loop, num_parts=num_parts, part_id=part_id)
    return {"part": str(Path(path).relative_to(spec.root))}


def query_task(spec: LoopSpec, loop: int, shards: int) -> dict[str, Any]:
    return querying.query_step(context(spec), loop, shards)


def annotate_task(spec: LoopSpec, loop: int) -> dict[str, Any]:
    ctx = context(spec)
    return tasks.simulate_annotation(ctx.exp, ctx.dataset, loop)


# -- the graph ---------------------------------------------------------------------------------


def build_loop_graph(
    spec: LoopSpec,
    state: RunState,
    loop: int,
    *,
    shards: int,
    network: Resources,
    light: Resources | None = None,
    until_evaluate: bool = False,
    simulate: bool = True,
) -> list[Task]:
    """The tasks of training loop ``loop`` not yet recorded in ``state``, in a valid order.

    Args:
        spec: the loop's spec.
        state: the run's state (what is done).
        loop: the training loop.
        shards: prediction shards ``S`` (from 1 to the number of unannotated pool cases).
        network: resources of the tasks that run networks (train, evaluate, maps).
        light: resources of the others (default one CPU slot).
        until_evaluate: stop the graph after ``evaluate`` (for hand-made shards).
        simulate: include ``annotate`` (from the ground truth) after the query.
    """
    ctx = context(spec)
    light = light or Resources()
    logs = Path(spec.root) / "logs"
    n_loops = int(spec.settings["n_loops"])
    graph: list[Task] = []

    def add(
        name: str,
        function: Any,
        args: tuple[Any, ...],
        after: tuple[str, ...],
        resources: Resources,
        uses_devices: bool = False,
    ) -> str:
        key = step_key(loop, name)
        if not state.is_done(key):
            graph.append(
                Task(
                    key,
                    function,
                    (spec, *args),
                    after=after,
                    resources=resources,
                    log=logs / log_file_name(key),
                    uses_devices=uses_devices,
                )
            )
        return key

    cpu_heavy = Resources(cpus=max(light.cpus, float(spec.num_processes)), gpus=0.0)
    if loop == 0:
        start = add("plan", plan_task, (), (), cpu_heavy)
    else:
        start = add("preprocess", preprocess_task, (loop,), (), cpu_heavy)
    trained = [
        add(f"train/fold_{k}", train_task, (loop, k), (start,), network, True) for k in ctx.folds
    ]
    add("evaluate", evaluate_task, (loop,), tuple(trained), network, True)
    if until_evaluate or loop == n_loops - 1 or state.is_done(step_key(loop, "query")):
        if not until_evaluate and loop < n_loops - 1 and simulate:
            add("annotate", annotate_task, (loop,), (step_key(loop, "query"),), light)
        return graph
    strategy = ctx.strategy
    queried_after: tuple[str, ...] = tuple(trained)
    if strategy.needs_maps and querying.complete_parts(ctx, loop) is None:
        parts = []
        for i in range(shards):
            name = f"part_{i}_of_{shards}"
            maps = add(f"maps/{name}", maps_task, (loop, shards, i), tuple(trained), network, True)
            if strategy.shardable:
                parts.append(
                    add(f"query/{name}", query_part_task, (loop, shards, i), (maps,), light)
                )
            else:
                parts.append(maps)
        queried_after = tuple(parts)
    query = add("query", query_task, (loop, shards), queried_after, light)
    if simulate:
        add("annotate", annotate_task, (loop,), (query,), light)
    return graph


def remaining_keys(spec: LoopSpec, state: RunState, first_loop: int, shards: int) -> list[str]:
    """Keys of every step still to run from ``first_loop`` to the last loop (for the
    progress line's estimate; later loops assume ``shards`` shards too)."""
    ctx = context(spec)
    keys: list[str] = []
    n_loops = int(spec.settings["n_loops"])
    for t in range(first_loop, n_loops):
        names = ["plan" if t == 0 else "preprocess"]
        names += [f"train/fold_{k}" for k in ctx.folds] + ["evaluate"]
        if t < n_loops - 1:
            if ctx.strategy.needs_maps:
                names += [f"maps/part_{i}_of_{shards}" for i in range(shards)]
                if ctx.strategy.shardable:
                    names += [f"query/part_{i}_of_{shards}" for i in range(shards)]
            names.append("query")
            if spec.settings.get("simulate"):
                names.append("annotate")
        keys += [k for k in (step_key(t, n) for n in names) if not state.is_done(k)]
    return keys
