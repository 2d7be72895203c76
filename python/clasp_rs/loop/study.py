"""``clasp-rs study``: a campaign of experiments, one per (strategy, seed).

A study folder holds ``study.json`` and one experiment folder per (strategy, seed)::

    STUDY/
      study.json                 what study init decided, and the run settings of study run
      experiments/<strategy>_seed<k>/    an experiment made by clasp-rs init (seed k)

``study.json``::

    {"version": 1, "clasp_rs": "0.1.0", "dataset": "900",
     "strategies": ["clasp-pe", "random"], "seeds": [0, 1],
     "init": {"patch_size": [4, 16, 16], "budget": 8, "start_budget": null, ...},
     "experiments": [{"name": "clasp-pe_seed0", "strategy": "clasp-pe", "seed": 0,
                      "folder": "experiments/clasp-pe_seed0"}, ...],
     "run": null | {"n_loops": 5, "trainer": "...", "folds": [0, 1], "configuration": "..."}}

Experiments of one seed share the split and the starting budget (``clasp-rs init`` derives
both from the seed alone; :func:`init_study` checks that they agree), so that strategies
differ only in their queries. :func:`run_study` runs every experiment to its end with
simulated annotation, resuming each where it stopped (``clasp-rs run --resume``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clasp_rs.exceptions import DatasetError
from clasp_rs.io.json_files import malformed_json, read_folder_json, write_json
from clasp_rs.loop.experiment import Experiment, load_experiment
from clasp_rs.loop.state import load_state, step_key

__all__ = [
    "STUDY_FILE",
    "Study",
    "StudyExperiment",
    "experiment_progress",
    "init_study",
    "load_study",
]

STUDY_FILE = "study.json"
STUDY_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class StudyExperiment:
    """One experiment of a study.

    Attributes:
        name: its folder name, ``<strategy>_seed<seed>``.
        strategy: the query strategy it runs.
        seed: seed of its split, starting budget and queries.
        root: the experiment folder.
    """

    name: str
    strategy: str
    seed: int
    root: Path

    def experiment(self) -> Experiment:
        return load_experiment(self.root)


@dataclass
class Study:
    """A loaded ``study.json`` and the folder it lives in."""

    root: Path
    dataset: str
    strategies: list[str]
    seeds: list[int]
    init: dict[str, Any]
    experiments: list[StudyExperiment]
    run: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.root / STUDY_FILE

    def to_json(self) -> dict[str, Any]:
        from clasp_rs import __version__

        return {
            **self.extra,
            "version": STUDY_VERSION,
            "clasp_rs": self.extra.get("clasp_rs", __version__),
            "dataset": self.dataset,
            "strategies": self.strategies,
            "seeds": self.seeds,
            "init": self.init,
            "experiments": [
                {
                    "name": e.name,
                    "strategy": e.strategy,
                    "seed": e.seed,
                    "folder": os.path.relpath(e.root, self.root),
                }
                for e in self.experiments
            ],
            "run": self.run,
        }

    def save(self) -> None:
        write_json(self.file, self.to_json())

    def by_seed(self) -> list[StudyExperiment]:
        """The experiments seed by seed (the study's seed order), strategies in study order
        within a seed: the order :func:`run_study` runs them, so that finished seeds give
        complete, paired results early."""
        rank = {s: i for i, s in enumerate(self.strategies)}
        seeds = {s: i for i, s in enumerate(self.seeds)}
        return sorted(self.experiments, key=lambda e: (seeds[e.seed], rank[e.strategy]))


def experiment_name(strategy: str, seed: int) -> str:
    """``<strategy>_seed<seed>``: the folder name of an experiment of a study."""
    return f"{strategy}_seed{seed}"


def _check_names(strategies: Sequence[str], seeds: Sequence[int]) -> tuple[list[str], list[int]]:
    from clasp_rs.strategies import STRATEGIES

    names = [str(s) for s in strategies]
    values = [int(s) for s in seeds]
    if not names:
        raise DatasetError("a study needs at least one strategy (--strategies)")
    if not values:
        raise DatasetError("a study needs at least one seed (--seeds)")
    for what, items in (("--strategies", names), ("--seeds", values)):
        repeated = sorted({str(v) for v in items if items.count(v) > 1})  # type: ignore[arg-type]
        if repeated:
            raise DatasetError(f"{what} lists {', '.join(repeated)} more than once")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise DatasetError(
            f"unknown strategy {', '.join(map(repr, unknown))}; expected names of: "
            f"{', '.join(STRATEGIES)}"
        )
    if any(v < 0 for v in values):
        raise DatasetError(f"--seeds must be >= 0, got {values}")
    return names, values


def init_study(
    dataset: str,
    study: str | os.PathLike[str],
    *,
    strategies: Sequence[str],
    seeds: Sequence[int],
    patch_size: str | Sequence[int] = "auto",
    budget: int | str = "auto",
    start_budget: int | None = None,
    hard_classes: Sequence[int | str] = (),
    dataset_id: int | None = None,
    name: str | None = None,
) -> Study:
    """Create a study folder with one experiment per (strategy, seed).

    Args:
        dataset: as for :func:`clasp_rs.loop.setup.init_experiment`.
        study: the study folder to create (must not exist, or be empty).
        strategies: names of :data:`clasp_rs.strategies.STRATEGIES`.
        seeds: one seed per repetition; every strategy gets an experiment per seed.
        patch_size, budget, start_budget, hard_classes: as for ``init_experiment``, the
            same for every experiment.
        dataset_id: id of the first experiment's nnU-Net dataset; the others take the next
            ids (default: the next free ids >= 500).
        name: the nnU-Net datasets are named ``<name>_<strategy>_s<seed>`` (default: the
            source's name + ``_clasp``, as ``init`` names them).

    Returns:
        The study (``study.json`` written).

    Raises:
        DatasetError: bad options or dataset (nothing is left behind: experiments made before
            the error are removed with their nnU-Net datasets).
    """
    from clasp_rs.loop.setup import init_experiment
    from clasp_rs.nnunet.paths import nnunet_paths

    names, values = _check_names(strategies, seeds)
    paths = nnunet_paths()
    root = Path(study).resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"study folder {root} already exists and is not empty")
    pairs = [(strategy, seed) for seed in values for strategy in names]
    if dataset_id is not None:
        last = int(dataset_id) + len(pairs) - 1
        if last > 999:
            raise DatasetError(
                f"--dataset-id {dataset_id} leaves no room for {len(pairs)} datasets (ids go up "
                "to 999)"
            )
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    created: list[Experiment] = []
    experiments: list[StudyExperiment] = []
    try:
        for k, (strategy, seed) in enumerate(pairs):
            folder = root / "experiments" / experiment_name(strategy, seed)
            folder.parent.mkdir(exist_ok=True)
            exp = init_experiment(
                dataset,
                folder,
                seed=seed,
                patch_size=patch_size,
                budget=budget,
                start_budget=start_budget,
                hard_classes=hard_classes,
                dataset_id=None if dataset_id is None else int(dataset_id) + k,
                name=None if name is None else f"{name}_{strategy}_s{seed}",
            )
            created.append(exp)
            experiments.append(StudyExperiment(folder.name, strategy, seed, exp.root))
        _check_pairing(created)
        first = created[0]
        result = Study(
            root=root,
            dataset=str(dataset),
            strategies=names,
            seeds=values,
            init={
                "patch_size": list(first.patch_size),
                "budget": first.budget,
                "start_budget": first.start_budget,
                "hard_classes": first.hard_classes,
                "source": first.source_name,
            },
            experiments=experiments,
        )
        result.save()
    except BaseException:
        for exp in created:
            shutil.rmtree(exp.root, ignore_errors=True)
            shutil.rmtree(paths.raw / exp.dataset_name, ignore_errors=True)
        shutil.rmtree(root / "experiments", ignore_errors=True)
        if made_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    return result


def _check_pairing(experiments: Sequence[Experiment]) -> None:
    """Experiments of one seed must have the same split and starting budget."""
    first: dict[int, Experiment] = {}
    for exp in experiments:
        ref = first.setdefault(exp.seed, exp)
        same = (
            ref.pool == exp.pool
            and ref.test == exp.test
            and ref.loop_file(0).read_bytes() == exp.loop_file(0).read_bytes()
        )
        if not same:
            raise DatasetError(
                f"experiments {ref.root.name} and {exp.root.name} of seed {exp.seed} got "
                "different splits or starting budgets; the study needs them paired"
            )


def load_study(root: str | os.PathLike[str]) -> Study:
    """Read ``STUDY/study.json``.

    Raises:
        FileNotFoundError: no such folder or no study.json in it.
        DatasetError: a malformed study.json, or an experiment folder outside the study.
    """
    folder, doc = read_folder_json(
        root, STUDY_FILE, kind="study", command="clasp-rs study init", version=STUDY_VERSION
    )
    with malformed_json(folder / STUDY_FILE):
        experiments = []
        for item in doc["experiments"]:
            relative = str(item["folder"])
            target = (folder / relative).resolve()
            # Never follow a path out of the study (a hand-edited or hostile study.json).
            if Path(relative).is_absolute() or folder not in target.parents:
                raise DatasetError(
                    f"{folder / STUDY_FILE}: experiment folder {relative!r} is not inside the study"
                )
            if not _NAME.match(str(item["name"])):
                raise DatasetError(f"{folder / STUDY_FILE}: bad experiment name {item['name']!r}")
            experiments.append(
                StudyExperiment(str(item["name"]), str(item["strategy"]), int(item["seed"]), target)
            )
        known = {
            "version",
            "dataset",
            "strategies",
            "seeds",
            "init",
            "experiments",
            "run",
        }
        return Study(
            root=folder,
            dataset=str(doc["dataset"]),
            strategies=[str(s) for s in doc["strategies"]],
            seeds=[int(s) for s in doc["seeds"]],
            init=dict(doc["init"]),
            experiments=experiments,
            run=doc.get("run"),
            extra={k: v for k, v in doc.items() if k not in known},
        )


@dataclass(frozen=True)
class Progress:
    """How far one experiment of a study has run.

    Attributes:
        experiment: the experiment.
        loops_done: training loops evaluated.
        n_loops: loops it runs in all (None before its first run).
        steps: steps recorded in its state.json.
    """

    experiment: StudyExperiment
    loops_done: int
    n_loops: int | None
    steps: int

    @property
    def finished(self) -> bool:
        return self.n_loops is not None and self.loops_done >= self.n_loops

    @property
    def started(self) -> bool:
        return self.steps > 0


def experiment_progress(study: Study) -> list[Progress]:
    """The progress of every experiment, in :meth:`Study.by_seed` order."""
    out = []
    for e in study.by_seed():
        state = load_state(e.root / "state.json")
        n_loops = state.settings.get("n_loops")
        done = 0
        while state.is_done(step_key(done, "evaluate")):
            done += 1
        out.append(Progress(e, done, None if n_loops is None else int(n_loops), len(state.steps)))
    return out
