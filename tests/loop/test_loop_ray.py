"""The loop on the Ray executor, on a local Ray instance with 2 CPUs (real nnU-Net, the tiny
trainer, the bundled CT scans, simulated annotation):

* the two folds train at the same time (their recorded intervals overlap);
* in loop 1, fold 1's worker process is SIGKILLed after its first epoch; Ray runs the task
  again, the training continues from its checkpoint, and the run finishes with every patch
  applied once;
* the query (two prediction shards, two query parts, merged) is byte for byte the one the
  local executor writes from the same models (one shard, in this process, with the same
  torch thread count for the networks);
* every loop's model folder works with nnU-Net's own ``nnUNetv2_predict_from_modelfolder``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime

import numpy as np
import pytest

from testdata import copy_ct_dataset

TRAINER = "nnUNetTrainer_clasp_tiny_killed_once"

# Found by nnU-Net through nnUNet_extTrainer, in the driver and in every Ray worker.
KILLER = textwrap.dedent(
    f'''
    import os
    import signal
    from pathlib import Path

    from clasp_rs.nnunet.trainers import nnUNetTrainer_clasp_tiny


    class {TRAINER}(nnUNetTrainer_clasp_tiny):
        """In loop 1, fold 1 SIGKILLs its own process once, after its first epoch's
        checkpoint."""

        def on_epoch_end(self):
            super().on_epoch_end()
            marker = Path(os.environ["CLASP_RS_TEST_KILL_MARKER"])
            in_loop_1 = "loop_001" in str(self.output_folder)
            if in_loop_1 and self.fold == 1 and self.current_epoch == 1 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
    '''
)


class Killed(Exception):
    """Stops the local run right after its query was written."""


def _stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    pytest.importorskip("nnunetv2")
    from clasp_rs.loop.executors import make_executor

    executor = make_executor(
        "ray", num_cpus=2, max_retries=2, init_options={"object_store_memory": 100 * 1024**2}
    )
    try:
        yield executor
    finally:
        executor.close()


@pytest.mark.nnunet
@pytest.mark.slow
def test_ray_loop_parallel_folds_retry_and_the_local_query(ray_executor, monkeypatch, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    from clasp_rs.loop.driver import RunOptions, run_experiment
    from clasp_rs.loop.experiment import load_experiment
    from clasp_rs.loop.setup import init_experiment
    from clasp_rs.loop.state import StepHooks, load_state
    from clasp_rs.nnunet import external_trainer_folder
    from clasp_rs.nnunet.labels import partial_labels
    from clasp_rs.patches import read_loop_file

    copy_ct_dataset(monkeypatch, tmp_path)
    trainers = tmp_path / "trainers"
    trainers.mkdir()
    (trainers / "clasp_rs_test_trainers.py").write_text(KILLER)
    monkeypatch.setenv("nnUNet_extTrainer", str(trainers))
    marker = tmp_path / "killed_once"
    monkeypatch.setenv("CLASP_RS_TEST_KILL_MARKER", str(marker))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    monkeypatch.setenv("nnUNet_def_n_proc", "1")
    monkeypatch.setenv("nnUNet_compile", "false")
    root = tmp_path / "exp"
    exp = init_experiment("900", root, patch_size=(4, 16, 16), budget=8)

    first = RunOptions(
        loops=2,
        strategy="clasp-pe",
        trainer=TRAINER,
        folds=[0, 1],
        simulate=True,
        device="cpu",
        executor="ray",
        stop_before_prediction=True,
    )
    outcome = run_experiment(root, first, executor=ray_executor)
    assert outcome.status == "stopped"
    steps = {s["step"]: s for s in load_state(exp.state_file).steps}
    fold_0, fold_1 = steps["000/train/fold_0"], steps["000/train/fold_1"]
    # The folds trained at the same time, in two worker processes.
    assert _stamp(fold_0["started"]) < _stamp(fold_1["finished"])
    assert _stamp(fold_1["started"]) < _stamp(fold_0["finished"])
    assert fold_0["pid"] != fold_1["pid"]
    assert "continued_from" not in fold_0 and "continued_from" not in fold_1
    assert "Epoch 0" in (root / "logs" / "000_train_fold_1.log").read_text()

    # The local executor's query from the same models (a copy of the experiment).
    local = tmp_path / "exp_local"
    shutil.copytree(root, local)

    def stop_after_query(key: str) -> None:
        if key == "000/query":
            raise Killed(key)

    # On a CPU a network's floats depend on torch's thread count: the local run computes with
    # the one thread each Ray task has (--cpus-per-task 1).
    with pytest.raises(Killed):
        run_experiment(
            local,
            RunOptions(resume=True, device="cpu", cpus_per_task=1),
            hooks=StepHooks(after=stop_after_query),
        )
    local_steps = load_state(local / "state.json").done_keys()
    assert "000/maps/part_0_of_1" in local_steps and "000/query/part_0_of_1" in local_steps

    outcome = run_experiment(
        root, RunOptions(resume=True, device="cpu", executor="ray"), executor=ray_executor
    )
    assert outcome.status == "finished"
    steps = {s["step"]: s for s in load_state(exp.state_file).steps}
    assert {"000/maps/part_0_of_2", "000/maps/part_1_of_2", "000/query"} <= set(steps)
    # Loop 1: fold 1's first worker was killed; Ray ran the task again in a new process,
    # which continued from the checkpoint of epoch 0 instead of starting over.
    killed_pid = int(marker.read_text())
    assert steps["001/train/fold_1"]["pid"] != killed_pid
    assert steps["001/train/fold_1"]["continued_from"] == {
        "checkpoint": "checkpoint_latest.pth",
        "epoch": 1,
    }
    assert "continued_from" not in steps["001/train/fold_0"]
    # Merged from two shards on Ray, or from one in this process: the same bytes.
    assert exp.loop_file(1).read_bytes() == (local / "loop_001.json").read_bytes()

    # Every patch of both loops applied exactly once to the training labels.
    exp = load_experiment(root)
    raw = tmp_path / "nnUNet_raw" / exp.dataset_name
    patches = read_loop_file(exp.loop_file(0)) + read_loop_file(exp.loop_file(1))
    assert len(patches) == 16
    for case in exp.pool:
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(exp.ground_truth(case))))
        mine = [p for p in patches if p.file == exp.file_of(case)]
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTr" / exp.file_of(case))))
        assert np.array_equal(written, partial_labels(truth, mine, exp.ignore_label, np.uint8))
    annotated = json.loads((exp.loop_folder(1) / "annotated.json").read_text())
    assert annotated["patches"] == 16 and annotated["voxels"] == 16 * 4 * 16 * 16
    assert not list(root.rglob("*.npz"))  # no per-fold probability files anywhere

    # The last loop's model is a plain nnU-Net model folder.
    images = tmp_path / "predict_in"
    images.mkdir()
    case = exp.test[0]
    shutil.copyfile(raw / "imagesTs" / f"{case}_0000.nii.gz", images / f"{case}_0000.nii.gz")
    env = dict(os.environ)
    env["nnUNet_extTrainer"] = os.pathsep.join([str(trainers), str(external_trainer_folder())])
    # The console script the README names (or the function behind it).
    script = shutil.which("nnUNetv2_predict_from_modelfolder")
    command = (
        [script]
        if script
        else [
            sys.executable,
            "-c",
            "from nnunetv2.inference.predict_from_raw_data import "
            "predict_entry_point_modelfolder as main; main()",
        ]
    )
    done = subprocess.run(
        [
            *command,
            *("-i", str(images), "-o", str(tmp_path / "predict_out")),
            *("-m", str(exp.loop_folder(1) / "model"), "-f", "0", "1"),
            *("-device", "cpu", "-npp", "1", "-nps", "1"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    predicted = sitk.GetArrayFromImage(
        sitk.ReadImage(str(tmp_path / "predict_out" / f"{case}.nii.gz"))
    )
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / "labelsTs" / f"{case}.nii.gz")))
    assert predicted.shape == reference.shape
    assert set(np.unique(predicted)) <= {0, 1, 2, 3}
