"""The ``ray`` executor: independent tasks at once, on a local Ray instance or a cluster.

``pip install "clasp-rs[ray]"``. Without an address it starts a local Ray instance that sees
this machine's CPUs and GPUs (and stops it on :meth:`RayExecutor.close`); with
``address="auto"`` or ``"HOST:PORT"`` it joins a running cluster (``ray start --head`` /
``ray start --address``), whose nodes must share the experiment folder and the nnU-Net
folders under the same paths and have clasp-rs installed. When Ray is already initialised in
this process (a library caller, a study running several experiments) it is used as it is.

Each task becomes one Ray task asking for its :class:`~clasp_rs.loop.executors.base.Resources`
(``num_cpus``, ``num_gpus``; Ray sets ``CUDA_VISIBLE_DEVICES`` so a task sees only its GPUs).
The driver submits a task once the tasks it waits for are recorded, and records each as it
finishes (only the driver writes ``state.json``). A worker process that dies (SIGKILL, OOM
killer, lost node) is retried by Ray up to ``max_retries`` times; a fold's training then goes
on from its latest checkpoint. After that, or when a task's function raises, no new task is
submitted, the running ones finish and are recorded, and the run stops naming the task.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from clasp_rs.exceptions import ClaspError
from clasp_rs.loop.executors.base import (
    Executor,
    Task,
    TaskFailedError,
    TaskRecord,
    check_graph,
    run_task,
)

__all__ = ["RayExecutor", "import_ray", "start_local_ray", "worker_environment"]

# Variables a worker on another node needs to see as the driver does.
_FORWARDED_PREFIXES = ("nnUNet_", "CLASP_RS_")


def import_ray() -> Any:
    """The ``ray`` module.

    Raises:
        ImportError: Ray is not installed; the message names the extra.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("default", module=r"ray(\.|$)")
            import ray
    except ImportError as err:
        raise ImportError(
            "the ray executor needs the optional dependency 'ray', which is not installed: "
            "install clasp-rs[ray] (pip install 'clasp-rs[ray]')"
        ) from err
    return ray


def worker_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables the driver hands to every task: the nnU-Net and clasp-rs
    settings of this process (``nnUNet_*``, ``CLASP_RS_*``) and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIXES)}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _children_start_clean() -> Iterator[None]:
    """Processes that nnU-Net starts from a task start from a fresh interpreter.

    A Ray worker runs many threads (gRPC, Ray's own); a child it *forks* inherits their
    locks in whatever state they were, and nnU-Net forks pools (e.g. the experiment
    planner's file listing), one of which was seen blocked on such a lock for good. So
    ``spawn`` is this worker's default start method (nnU-Net's other pools already ask for
    it), and the worker's ``__main__`` script (Ray's) is hidden meanwhile, so that spawn does
    not run it again in every child.
    """
    import multiprocessing

    if multiprocessing.get_start_method(allow_none=True) != "spawn":
        multiprocessing.set_start_method("spawn", force=True)
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    try:
        if main is not None and "__file__" in saved:
            del main.__file__
            main.__spec__ = None
        yield
    finally:
        for key, value in saved.items():
            setattr(main, key, value)


def _run_in_worker(task: Task) -> TaskRecord:
    threads = max(1, int(task.resources.cpus)) if task.resources.gpus == 0 else None
    with _children_start_clean():
        return run_task(task, threads=threads)


# Ray's dashboard and its log forwarding would put Ray's output between the run's lines.
_QUIET: dict[str, Any] = {
    "include_dashboard": False,
    "log_to_driver": False,
    "configure_logging": False,
}


def start_local_ray(
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    init_options: Mapping[str, Any] | None = None,
) -> str:
    """Start a local Ray instance in this process (this machine's CPUs and GPUs unless
    given); returns its address, which other processes pass as ``address`` to join it."""
    ray = import_ray()
    ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **{**_QUIET, **(init_options or {})})
    return str(ray.get_runtime_context().gcs_address)


class RayExecutor(Executor):
    """Runs a task graph on Ray.

    Args:
        address: ``None`` (start a local instance), ``"auto"`` (the cluster this machine
            belongs to) or ``"HOST:PORT"``.
        max_retries: how often Ray starts a task again after its worker process died.
        env: variables set in every task (default: :func:`worker_environment` when each
            :meth:`run` starts).
        num_cpus, num_gpus: resources of a local instance (default: what this machine has;
            tests use fake GPUs this way).
        init_options: further ``ray.init`` keyword arguments for a local instance.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        max_retries: int = 2,
        env: Mapping[str, str] | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        init_options: Mapping[str, Any] | None = None,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        ray = import_ray()
        self._ray = ray
        self.max_retries = max_retries
        self.env = None if env is None else dict(env)
        self._started = False
        if not ray.is_initialized():
            if address is not None:
                if num_cpus is not None or num_gpus is not None:
                    raise ValueError("num_cpus/num_gpus describe a local instance, not a cluster")
                ray.init(address=address, **_QUIET)
            else:
                start_local_ray(num_cpus=num_cpus, num_gpus=num_gpus, init_options=init_options)
                self._started = True
        self._remote = ray.remote(_run_in_worker)

    @property
    def total_gpus(self) -> float:
        """GPUs in the Ray cluster (0 when there are none)."""
        return float(self._ray.cluster_resources().get("GPU", 0.0))

    @property
    def total_cpus(self) -> float:
        """CPUs in the Ray cluster."""
        return float(self._ray.cluster_resources().get("CPU", 1.0))

    def _check_feasible(self, tasks: Sequence[Task]) -> None:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        for task in tasks:
            want = {"CPU": task.resources.cpus, "GPU": task.resources.gpus}
            if not any(
                all(node["Resources"].get(k, 0.0) >= v for k, v in want.items() if v > 0)
                for node in nodes
            ):
                raise TaskFailedError(
                    f"task {task.key} asks for {task.resources.cpus:g} CPU(s) and "
                    f"{task.resources.gpus:g} GPU(s), more than any node of the Ray cluster "
                    "has (see --gpus-per-task / --cpus-per-task)"
                )

    def run(
        self,
        tasks: Sequence[Task],
        on_start: Callable[[Task], None] | None = None,
        on_done: Callable[[TaskRecord], None] | None = None,
    ) -> None:
        check_graph(tasks)
        self._check_feasible(tasks)
        ray = self._ray
        env = worker_environment() if self.env is None else self.env
        keys = {t.key for t in tasks}
        waiting = list(tasks)
        finished: set[str] = set()
        running: dict[Any, Task] = {}
        failure: BaseException | None = None
        recording_failed = False
        try:
            while waiting or running:
                if failure is None:
                    for task in [t for t in waiting if _ready(t, keys, finished)]:
                        waiting.remove(task)
                        if on_start is not None:
                            on_start(task)
                        running[self._submit(task, env)] = task
                if not running:
                    break
                (ref,), _ = ray.wait(list(running), num_returns=1)
                task = running.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - mapped to one error naming the task
                    failure = failure or self._explain(task, err)
                    continue
                finished.add(task.key)
                if on_done is not None and not recording_failed:
                    # Also after another task failed: finished work is kept.
                    try:
                        on_done(record)
                    except BaseException as err:  # noqa: BLE001 - re-raised after the others end
                        recording_failed = True
                        failure = failure or err
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        if failure is not None:
            raise failure

    def _submit(self, task: Task, env: Mapping[str, str]) -> Any:
        return self._remote.options(
            num_cpus=task.resources.cpus,
            num_gpus=task.resources.gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
            runtime_env={"env_vars": dict(env)} if env else None,
            name=task.key,
        ).remote(task)

    def _explain(self, task: Task, err: Exception) -> BaseException:
        ray = self._ray
        log = f"; its output is in {task.log}" if task.log is not None else ""
        if isinstance(err, ray.exceptions.RayTaskError):
            cause = getattr(err, "cause", None)
            if isinstance(cause, (ClaspError, OSError)):
                return cause
            return TaskFailedError(
                f"task {task.key} failed: {type(cause).__name__}: {cause}{log}"
                if cause is not None
                else f"task {task.key} failed: {err}{log}"
            )
        if isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
            return TaskFailedError(
                f"task {task.key}: its worker process died {self.max_retries + 1} time(s) "
                f"(Ray retried it {self.max_retries} time(s)){log}; rerun with --resume to "
                "continue"
            )
        return TaskFailedError(f"task {task.key} failed in Ray: {type(err).__name__}: {err}{log}")

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def _ready(task: Task, keys: set[str], finished: set[str]) -> bool:
    return all(dep in finished or dep not in keys for dep in task.after)
