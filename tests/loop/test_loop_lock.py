"""The experiment lock (clasp_rs.loop.lock): one driver per experiment, released by the kernel
when its holder dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from clasp_rs.loop.lock import LOCK_FILE, ExperimentLockedError, experiment_lock, lock_holder

HOLD = textwrap.dedent(
    """
    import sys, time
    from clasp_rs.loop.lock import experiment_lock
    with experiment_lock(sys.argv[1], command="clasp-rs run EXP"):
        print("locked", flush=True)
        time.sleep(600)
    """
)


@contextmanager
def _holder(root) -> Iterator[subprocess.Popen]:
    """Another process holding the lock of ``root`` until the block ends (it is killed)."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "locked"
            yield proc
        finally:
            proc.kill()
            proc.wait()


def test_a_second_process_is_refused_with_the_holders_pid_and_host(tmp_path):
    with _holder(tmp_path) as proc:
        with pytest.raises(ExperimentLockedError) as info:
            with experiment_lock(tmp_path):
                pass
    message = str(info.value)
    assert f"pid {proc.pid} on host {socket.gethostname()}" in message
    assert "clasp-rs run EXP" in message
    assert "\n" not in message
    # The kernel released the lock of the killed holder: no stale lock.
    with experiment_lock(tmp_path) as path:
        assert path == tmp_path.resolve() / LOCK_FILE
        assert lock_holder(tmp_path)["pid"] == os.getpid()
    assert lock_holder(tmp_path) is None  # cleared on release


def test_sigkill_of_the_holder_releases_the_lock(tmp_path):
    with _holder(tmp_path) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with experiment_lock(tmp_path):
            pass


def test_reentrant_in_one_thread_refused_in_another(tmp_path):
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with experiment_lock(tmp_path):
                pass
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    with experiment_lock(tmp_path):
        with experiment_lock(tmp_path):
            pass
        # Still held after the inner block ended.
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(errors) == 1 and isinstance(errors[0], ExperimentLockedError)
        assert "another thread" in str(errors[0])
    with experiment_lock(tmp_path):
        pass


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / LOCK_FILE).symlink_to(outside)
    with pytest.raises(OSError):
        with experiment_lock(exp):
            pass
    assert outside.read_text() == "keep"


def test_a_second_driver_of_an_experiment_is_refused(ct_dataset, tmp_path, capsys):
    """``clasp-rs run`` and ``clasp-rs annotate`` while another driver holds the experiment:
    one line naming the holder, nothing started."""
    pytest.importorskip("SimpleITK")
    from clasp_rs.cli import main
    from clasp_rs.loop.setup import init_experiment

    exp = init_experiment("900", tmp_path / "exp", patch_size=(4, 16, 16), budget=8)
    with _holder(exp.root) as proc:
        assert main(["run", str(exp.root), "--simulate", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("clasp-rs: error: experiment ")
        assert f"in use by pid {proc.pid} on host {socket.gethostname()}" in err
        assert len(err.splitlines()) == 1
        assert main(["annotate", str(exp.root), "--labels", str(tmp_path)]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
    assert not exp.state_file.exists()  # the refused run wrote nothing
