"""The engine's runtime behaviour: its own thread pool, fork safety, GIL release."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import clasp_rs
from clasp_rs import _clasp_rs


def _select_in_child(queue) -> None:  # pragma: no cover - runs in the forked child
    vol = np.random.default_rng(1).random((24, 24, 24)).astype(np.float32)
    patches = clasp_rs.select_top_patches(vol, (6, 6, 6), 4)
    queue.put([p.coords for p in patches])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_engine_works_in_a_forked_child_after_use_in_the_parent() -> None:
    vol = np.random.default_rng(1).random((24, 24, 24)).astype(np.float32)
    expected = [p.coords for p in clasp_rs.select_top_patches(vol, (6, 6, 6), 4)]
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_select_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the forked child hung or crashed using the engine's pool"
    assert queue.get(timeout=5) == expected


def test_thread_count_comes_from_the_environment() -> None:
    code = "from clasp_rs import _clasp_rs; print(_clasp_rs.num_threads())"
    env = dict(os.environ, CLASP_RS_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "3", out.stderr


def test_other_python_threads_run_while_the_engine_works() -> None:
    # With the GIL released, a Python thread keeps counting during a long engine call.
    vol = np.random.default_rng(2).random((96, 128, 128)).astype(np.float32)
    inside = threading.Event()
    done = threading.Event()
    ticks_during_call = 0

    def count() -> None:
        nonlocal ticks_during_call
        while not done.is_set():
            if inside.is_set():
                ticks_during_call += 1

    # A long switch interval: Python itself will not hand the GIL to the counter between
    # `inside.set()` and `inside.clear()`, so any tick in between needs the engine to drop it.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    counter = threading.Thread(target=count)
    counter.start()
    try:
        inside.set()
        _clasp_rs.select_strata([[vol]], (8, 8, 8), (1, 1, 1), [[50]], [[None]], [[]])
        inside.clear()
    finally:
        done.set()
        counter.join()
        sys.setswitchinterval(interval)
    assert ticks_during_call > 0


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs SIGINT")
def test_ctrl_c_interrupts_a_long_call_and_the_engine_stays_usable() -> None:
    # One call that runs for a while (power sampling at stride 1 on a few large volumes).
    vol = np.random.default_rng(3).random((128, 160, 160)).astype(np.float32)
    jobs = [[vol]] * 4
    args = ((8, 8, 8), (1, 1, 1), [[10]] * 4, [[(1.0, 0, 0)]] * 4, [[]] * 4)
    start = time.perf_counter()
    _clasp_rs.select_strata(jobs, *args)
    full = time.perf_counter() - start
    # Interrupted a tenth of the way in, the same call must end (with KeyboardInterrupt) well
    # before it could finish; an engine that ignored the signal would only raise after
    # running to completion, when Python next handles signals.
    timer = threading.Timer(full / 10, os.kill, args=(os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _clasp_rs.select_strata(jobs, *args)
        interrupted = time.perf_counter() - start
    finally:
        timer.cancel()
    assert interrupted < full / 2, f"interrupted after {interrupted:.2f} s of a {full:.2f} s call"
    small = np.random.default_rng(4).random((16, 16, 16)).astype(np.float32)
    assert len(clasp_rs.select_top_patches(small, (4, 4, 4), 3)) == 3
