"""Executors (clasp_rs.loop.executors): the local one in order, the Ray one on a local Ray
instance with 2 CPUs and 2 fake GPUs (one instance for the module): concurrency, GPU
assignment, retries after SIGKILL, errors naming the task."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.executors import (
    LocalExecutor,
    Resources,
    Task,
    TaskFailedError,
    TaskRecord,
    make_executor,
)


def _stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def _write(path: str, text: str) -> dict:
    print(f"writing {path}")  # goes to the task's log
    Path(path).write_text(text)
    return {"wrote": Path(path).name}


def _sleep(seconds: float) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


def _devices() -> dict:
    return {"seen": os.environ.get("CUDA_VISIBLE_DEVICES")}


def _together(folder: str, me: int, others: int) -> dict:
    """Wait (up to a minute) until ``others`` tasks have arrived: run at once, they all end
    together; run one after another, each waits out the minute alone."""
    Path(folder, f"{me}.here").write_text("")
    deadline = time.monotonic() + 60
    while len(list(Path(folder).glob("*.here"))) < others and time.monotonic() < deadline:
        time.sleep(0.05)
    return {"met": len(list(Path(folder).glob("*.here")))}


def _devices_together(folder: str, me: int, others: int) -> dict:
    """The visible GPUs while every other task holds its own (one that ended first would
    hand its GPU to the next)."""
    _together(folder, me, others)
    return _devices()


def _killed_once(marker: str) -> dict:
    if not os.path.exists(marker):
        Path(marker).write_text("first attempt")
        os.kill(os.getpid(), signal.SIGKILL)
    return {"attempt": "second"}


def _always_killed() -> dict:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def _bad_dataset() -> dict:
    raise DatasetError("labelsTr is missing")


def _bug() -> dict:
    raise ZeroDivisionError("division by zero")


def test_local_runs_in_order_logs_output_and_records_times(tmp_path, capfd):
    started: list[str] = []
    records: list[TaskRecord] = []
    log = tmp_path / "logs" / "a.log"
    tasks = [
        Task("000/a", _write, (str(tmp_path / "a.txt"), "A"), log=log),
        Task("000/b", _write, (str(tmp_path / "b.txt"), "B"), after=("000/a",)),
    ]
    LocalExecutor().run(tasks, on_start=lambda t: started.append(t.key), on_done=records.append)
    assert started == ["000/a", "000/b"]
    assert [r.key for r in records] == ["000/a", "000/b"]
    assert records[0].info == {"wrote": "a.txt"} and records[0].pid == os.getpid()
    assert _stamp(records[0].finished) <= _stamp(records[1].started)
    assert f"writing {tmp_path / 'a.txt'}" in log.read_text()
    out = capfd.readouterr().out
    assert "a.txt" not in out and f"writing {tmp_path / 'b.txt'}" in out


def _threads() -> dict:
    import torch

    return {"threads": torch.get_num_threads()}


def test_local_pins_the_threads_of_network_tasks_only_and_restores_them():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    records: list[TaskRecord] = []
    tasks = [Task("000/evaluate", _threads, uses_devices=True), Task("000/query", _threads)]
    make_executor("local", network_threads=1).run(tasks, on_done=records.append)
    assert [r.info["threads"] for r in records] == [1, before]
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="network_threads only"):
        make_executor("local", address="auto")


def test_graph_order_is_checked():
    with pytest.raises(ValueError, match="waits for 000/b, which comes after it"):
        LocalExecutor().run([Task("000/a", _sleep, (0,), after=("000/b",)), Task("000/b", _sleep)])
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


# --- Ray --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    from ray import cloudpickle

    # The task functions of this module travel by value: Ray workers cannot import tests/.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    executor = make_executor(
        "ray",
        num_cpus=2,
        num_gpus=2,
        max_retries=1,
        init_options={"object_store_memory": 100 * 1024**2},
    )
    try:
        yield executor
    finally:
        executor.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_ray_runs_independent_tasks_at_once_and_waits_for_dependencies(ray_executor, tmp_path):
    records: dict[str, TaskRecord] = {}
    tasks = [
        Task("000/train/fold_0", _together, (str(tmp_path), 0, 2)),
        Task("000/train/fold_1", _together, (str(tmp_path), 1, 2)),
        Task("000/evaluate", _sleep, (0.0,), after=("000/train/fold_0", "000/train/fold_1")),
    ]
    ray_executor.run(tasks, on_done=lambda r: records.__setitem__(r.key, r))
    a, b, c = (records[t.key] for t in tasks)
    assert a.pid != b.pid
    # The two folds ran at the same time; evaluate only after both.
    assert _stamp(a.started) < _stamp(b.finished) and _stamp(b.started) < _stamp(a.finished)
    assert _stamp(c.started) >= max(_stamp(a.finished), _stamp(b.finished))


def test_ray_gives_each_gpu_task_its_own_device(ray_executor, tmp_path):
    records: list[TaskRecord] = []
    gpu = Resources(cpus=1, gpus=1)
    tasks = [
        Task(
            f"000/train/fold_{k}",
            _devices_together,
            (str(tmp_path), k, 2),
            resources=gpu,
            uses_devices=True,
        )
        for k in (0, 1)
    ]
    ray_executor.run(tasks, on_done=records.append)
    seen = sorted(r.info["seen"] for r in records)
    assert seen == ["0", "1"]
    assert sorted(r.cuda_visible_devices for r in records) == ["0", "1"]
    with pytest.raises(TaskFailedError, match="000/big asks for 1 CPU.* and 3 GPU"):
        ray_executor.run([Task("000/big", _devices, resources=Resources(gpus=3))])


def test_ray_retries_a_killed_worker_then_names_the_task(ray_executor, tmp_path):
    records: list[TaskRecord] = []
    marker = tmp_path / "attempt"
    ray_executor.run([Task("000/train/fold_0", _killed_once, (str(marker),))], None, records.append)
    assert records[0].info == {"attempt": "second"} and marker.is_file()
    with pytest.raises(TaskFailedError, match=r"task 000/train/fold_1: its worker process died 2"):
        ray_executor.run([Task("000/train/fold_1", _always_killed)])


def test_ray_passes_clasp_errors_through_and_names_the_task_of_a_bug(ray_executor, tmp_path):
    done: list[str] = []
    tasks = [Task("000/plan", _bad_dataset), Task("000/other", _sleep, (0.5,))]
    with pytest.raises(DatasetError, match="labelsTr is missing"):
        ray_executor.run(tasks, on_done=lambda r: done.append(r.key))
    assert done == ["000/other"]  # what was running finished and was recorded
    with pytest.raises(TaskFailedError, match="task 000/query failed: ZeroDivisionError"):
        ray_executor.run([Task("000/query", _bug, log=tmp_path / "q.log")])
