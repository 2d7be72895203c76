"""state.json (clasp_rs.loop.state): steps recorded once, atomically; a step interrupted
before it is recorded runs again on resume, and finished ones never do."""

from __future__ import annotations

import json

import pytest

from clasp_rs.exceptions import DatasetError
from clasp_rs.loop.settings import RunOptions, resolve_settings
from clasp_rs.loop.state import RunState, StepHooks, load_state, step_key


class Crash(Exception):
    """Stands in for a kill between the body of a step and its record."""


def _pipeline(state: RunState, out, ran: list[str], hooks: StepHooks | None = None) -> None:
    """Three steps, each appending one line to a file (so a repeat would show)."""

    def body(key: str):
        def run():
            ran.append(key)
            with open(out, "a", encoding="utf-8") as f:
                f.write(key + "\n")
            return {"wrote": key}

        return run

    for key in (step_key(0, "plan"), step_key(0, "train/fold_0"), step_key(1, "query")):
        state.run_step(key, body(key), hooks)


def test_steps_are_recorded_in_order_with_their_info(tmp_path):
    state = load_state(tmp_path / "state.json")
    assert not state.started
    ran: list[str] = []
    _pipeline(state, tmp_path / "out.txt", ran)
    doc = json.loads((tmp_path / "state.json").read_text())
    assert [s["step"] for s in doc["steps"]] == ["000/plan", "000/train/fold_0", "001/query"]
    assert doc["steps"][1]["wrote"] == "000/train/fold_0"
    assert all(s["seconds"] >= 0 for s in doc["steps"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("crash_at", ["000/plan", "000/train/fold_0", "001/query"])
def test_resume_after_a_crash_runs_each_finished_step_once(tmp_path, where, crash_at):
    out = tmp_path / "out.txt"
    ran: list[str] = []

    def crash(key: str) -> None:
        if key == crash_at:
            raise Crash(key)

    hooks = StepHooks(**{where: crash})
    with pytest.raises(Crash):
        _pipeline(load_state(tmp_path / "state.json"), out, ran, hooks)
    recorded = load_state(tmp_path / "state.json").done_keys()
    order = ["000/plan", "000/train/fold_0", "001/query"]
    assert recorded == order[: order.index(crash_at)]

    again: list[str] = []
    _pipeline(load_state(tmp_path / "state.json"), out, again)
    assert again == order[order.index(crash_at) :]
    assert load_state(tmp_path / "state.json").done_keys() == order
    lines = out.read_text().splitlines()
    # A step whose body finished but was not recorded runs again (steps are idempotent);
    # every finished and recorded step ran exactly once.
    for key in order:
        expected = 2 if (key == crash_at and where == "after") else 1
        assert lines.count(key) == expected


def test_a_step_is_never_recorded_twice(tmp_path):
    state = load_state(tmp_path / "state.json")
    state.mark_done("000/plan", 1.0)
    with pytest.raises(DatasetError, match="already recorded"):
        state.mark_done("000/plan", 1.0)
    assert state.run_step("000/plan", lambda: pytest.fail("must not run")) is False


def test_waiting_survives_a_reload(tmp_path):
    state = load_state(tmp_path / "state.json")
    state.waiting = {"loop": 2, "query": "loop_003.json"}
    state.save()
    again = load_state(tmp_path / "state.json")
    assert again.started and again.waiting == {"loop": 2, "query": "loop_003.json"}


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"version": 99}', '{"version": 1, "steps": [{"no": 1}]}']
)
def test_malformed_state_is_an_error(tmp_path, text):
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(DatasetError):
        load_state(tmp_path / "state.json")


def test_settings_default_on_first_run_and_are_kept_afterwards(tmp_path):
    state = load_state(tmp_path / "state.json")
    first = resolve_settings(state, RunOptions(loops=3, strategy="random", simulate=True))
    assert first["n_loops"] == 3 and first["strategy"] == "random" and first["simulate"]
    assert first["trainer"] == "nnUNetTrainer" and first["folds"] == [0, 1, 2, 3, 4]
    state.settings = first
    assert resolve_settings(state, RunOptions()) == first
    assert resolve_settings(state, RunOptions(loops=3, device="cpu")) == first
    with pytest.raises(DatasetError, match="started with --strategy 'random', not 'clasp-pe'"):
        resolve_settings(state, RunOptions(strategy="clasp-pe"))
    with pytest.raises(DatasetError, match="--loops 3"):
        resolve_settings(state, RunOptions(loops=5))
