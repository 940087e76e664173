"""Task generators: shapes, masks, targets against independent re-derivations, accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurorec.core.errors import SpecError
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.spec import load_stimulus_spec
from neurorec.tasks import make_task

REPO = Path(__file__).resolve().parents[1]
TASKS = sorted(REPO.glob("stimuli/task_*.yaml"))


def _task(name: str, *sets: str):
    return make_task(load_stimulus_spec(REPO / f"stimuli/task_{name}.yaml", sets))


def test_all_six_tasks_ship():
    assert {p.stem for p in TASKS} >= {
        "task_perception", "task_decision", "task_delayed_discrimination",
        "task_context_integration", "task_flip_flop", "task_sine_wave"}


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.stem)
def test_shapes_seeding_and_perfect_accuracy(path):
    task = make_task(load_stimulus_spec(path))
    a = task.generate(20, np.random.default_rng(0))
    b = task.generate(20, np.random.default_rng(0))
    c = task.generate(20, np.random.default_rng(1))
    assert a.inputs.shape[:2] == a.targets.shape[:2] == a.mask.shape[:2]
    assert a.inputs.shape[2] == task.n_inputs and a.targets.shape[2] == task.n_outputs
    assert a.mask.shape == a.targets.shape and set(np.unique(a.mask)) <= {0.0, 1.0}
    assert a.mask.sum() > 0
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert not np.array_equal(a.inputs, c.inputs)
    assert task.accuracy(a.targets, a) == 1.0
    np.testing.assert_allclose(a.time, (np.arange(a.n_steps) + 1) * CTRNNSpec().dt)


def test_perception_maps_levels():
    task = _task("perception", "timing.input_noise=0")
    t = task.generate(50, np.random.default_rng(0))
    level = t.inputs[:, 0, 0]
    expected = np.where(np.isclose(level, 0.8), 0.5, 0.8)
    np.testing.assert_allclose(t.targets[:, -1, 0], expected)
    assert t.mask[:, :20].sum() == 0 and t.mask[:, 20:].all()  # 200 ms response delay
    wrong = np.broadcast_to(0.65, t.targets.shape)  # between the two targets: > 0.1 off
    assert task.accuracy(wrong, t) == 0.0


def test_decision_targets_the_larger_input():
    task = _task("decision", "timing.input_noise=0")
    t = task.generate(100, np.random.default_rng(2))
    larger = np.argmax(t.inputs[:, 0], axis=1)
    np.testing.assert_array_equal(t.targets[:, -1].argmax(1), larger)
    assert np.all(np.abs(np.diff(t.inputs[:, 0], axis=1)) >= 0.05)
    assert task.accuracy(t.targets[..., ::-1], t) == 0.0


def test_delayed_discrimination_epochs():
    task = _task("delayed_discrimination", "timing.input_noise=0")
    t = task.generate(30, np.random.default_rng(3))
    f1 = t.inputs[:, 10:30, 1].mean(1) * 34
    f2 = t.inputs[:, 80:100, 1].mean(1) * 34
    np.testing.assert_allclose(f1, t.conditions["f1"])
    np.testing.assert_allclose(f2, t.conditions["f2"])
    assert np.all(t.inputs[:, 30:80, 1] == 0)  # nothing during the delay
    np.testing.assert_array_equal(t.targets[:, -1].argmax(1), (f1 < f2).astype(int))
    assert np.all(t.inputs[:, -20:, 0] == 0) and np.all(t.inputs[:, :-20, 0] == 1)


def test_context_integration_sign_of_cued_evidence():
    task = _task("context_integration", "evidence_noise=0")
    t = task.generate(60, np.random.default_rng(4))
    cue = t.inputs[:, 0, 2:].argmax(1)
    evidence = t.inputs[:, 10:85, :2].mean(1)
    relevant = evidence[np.arange(60), cue]
    np.testing.assert_allclose(t.targets[:, -1, 0], np.sign(relevant))
    np.testing.assert_array_equal(cue, t.conditions["context"])


def test_flip_flop_holds_the_last_pulse():
    task = _task("flip_flop")
    t = task.generate(10, np.random.default_rng(5))
    for trial in range(10):
        for bit in range(3):
            last = 0.0
            for step in range(t.n_steps):
                if t.inputs[trial, step, bit] != 0:
                    last = t.inputs[trial, step, bit]
                assert t.targets[trial, step, bit] == last
    assert np.array_equal(t.mask, (t.targets != 0).astype(float))
    assert task.accuracy(-t.targets, t) == 0.0


def test_sine_wave_target_and_score():
    task = _task("sine_wave")
    t = task.generate(8, np.random.default_rng(6))
    f = t.conditions["frequency"]
    np.testing.assert_allclose(t.targets[..., 0], np.sin(2 * np.pi * f[:, None] * t.time))
    np.testing.assert_allclose(t.inputs[:, 0, 0], f / 4.0)
    assert task.accuracy(0.5 * t.targets, t) == 0.0  # R² = 0.75


def test_bad_protocol_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: task_perception\nlevels: [0.8]\ntargets: [0.5, 0.8]\n")
    with pytest.raises(SpecError, match="targets: one target per level"):
        load_stimulus_spec(path)
