"""Training: gradients vs finite differences, a tiny task learned, bitwise resume, divergence,
and the `train` / `simulate` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurorec.cli import main
from neurorec.core.errors import DivergenceError
from neurorec.families.ctrnn.estimator import TaskRNN
from neurorec.families.ctrnn.model import CTRNN
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.families.ctrnn.train import batch_loss, train
from neurorec.fit.checkpoint import CHECKPOINT_NAME
from neurorec.fit.run import Run
from neurorec.spec import load_stimulus_spec
from neurorec.tasks import make_task

REPO = Path(__file__).resolve().parents[1]


def _perception():
    return make_task(load_stimulus_spec(REPO / "stimuli/task_perception.yaml",
                                        ["duration=0.3", "response_delay=0.1"]))


def test_gradient_matches_finite_differences():
    task = _perception()
    spec = CTRNNSpec(n_units=6, sigma=0.0, nonlinearity="softplus", train=("w_rec", "b"))
    model = CTRNN(spec, 1, 1, seed=0, dtype="float64")
    trials = task.generate(4, np.random.default_rng(0))
    loss, _ = batch_loss(model, trials, 0.0, None)
    loss.backward()
    eps = 1e-6
    for name, idx in (("w_rec_raw", (1, 2)), ("w_rec_raw", (4, 0)), ("b", (3,))):
        p = getattr(model, name)
        with torch.no_grad():
            p[idx] += eps
            up = batch_loss(model, trials, 0.0, None)[0].item()
            p[idx] -= 2 * eps
            down = batch_loss(model, trials, 0.0, None)[0].item()
            p[idx] += eps
        assert p.grad[idx].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-10)
    assert model.w_in.grad is None  # not trained
    assert model.w_rec_raw.grad.diagonal().abs().max() == 0


def test_tiny_perception_task_is_learned():
    task = _perception()
    spec = CTRNNSpec(n_units=16, train=("w_rec", "w_out", "b"),
                     training={"n_steps": 120, "batch_size": 16, "learning_rate": 0.02,
                               "validate_every": 40, "validation_trials": 64})
    model = CTRNN(spec, 1, 1, seed=0)
    result = train(model, task, spec.training, seed=0, progress=False)
    h = result.history
    assert h.val_accuracy[-1] >= 0.95
    assert h.val_loss[-1] < 0.005


def _tiny(n_steps=12):
    return CTRNNSpec(n_units=8, training={"n_steps": n_steps, "batch_size": 4,
                                          "learning_rate": 0.01, "validate_every": 5,
                                          "validation_trials": 8, "checkpoint_every": 5})


def test_resume_is_bitwise_identical(tmp_path):
    task, spec = _perception(), _tiny()
    full = train(CTRNN(spec, 1, 1, seed=1), task, spec.training, seed=3, progress=False,
                 run=Run(checkpoint_dir=tmp_path / "a"))

    def interrupt(step, model, loss):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(CTRNN(spec, 1, 1, seed=1), task, spec.training, seed=3, progress=False,
              run=Run(checkpoint_dir=tmp_path / "b"), callback=interrupt)
    assert torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)["iteration"] == 5
    resumed = train(CTRNN(spec, 1, 1, seed=1), task, spec.training, seed=3, progress=False,
                    run=Run(checkpoint_dir=tmp_path / "b", resume=True))
    assert resumed.resumed_from == 5
    for (name, a), (_, b) in zip(full.model.named_parameters(),
                                 resumed.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert full.history.train_loss == resumed.history.train_loss


def test_divergence_names_the_step_and_keeps_the_checkpoint(tmp_path):
    task, spec = _perception(), _tiny()

    def poison(step, model, loss):
        if step == 6:
            with torch.no_grad():
                model.w_rec_raw[0, 1] = float("nan")

    with pytest.raises(DivergenceError, match="training: step 7: loss became nan"):
        train(CTRNN(spec, 1, 1, seed=1), task, spec.training, seed=0, progress=False,
              run=Run(checkpoint_dir=tmp_path), callback=poison)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)
    assert state["iteration"] == 5
    assert torch.isfinite(state["state"]["model"]["w_rec_raw"]).all()
    explode = CTRNNSpec(n_units=8, init={"gain": 20.0}, training={"n_steps": 3})
    with pytest.raises(DivergenceError, match=r"training: step 1: loss became (inf|nan)"):
        train(CTRNN(explode, 1, 1, seed=0), make_task(load_stimulus_spec(
            REPO / "stimuli/task_perception.yaml")), explode.training, progress=False)


def test_train_and_simulate_commands(tmp_path, capsys):
    spec = REPO / "models/ctrnn_study.yaml"
    task = REPO / "stimuli/task_perception.yaml"
    sets = ["--set", "n_units=10", "--set", "training.n_steps=6", "--set",
            "training.batch_size=4", "--set", "training.validation_trials=8",
            "--set", "training.checkpoint_every=2"]
    out = tmp_path / "run"
    assert main(["train", str(spec), "--task", str(task), "--out", str(out), "--quiet",
                 *sets]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_steps"] == 6 and not (tmp_path / "run.partial").exists()
    before, after = np.load(out / "weights_before.npz"), np.load(out / "weights_after.npz")
    assert not np.array_equal(before["w_rec"], after["w_rec"])
    np.testing.assert_array_equal(before["w_in"], after["w_in"])  # only W_rec trained
    assert (out / "report.html").is_file() and (out / "training.png").is_file()
    trained = TaskRNN.load(out)  # model.pt: the trained network, scored as training tracked it
    assert trained.score(load_stimulus_spec(task)) == metrics["val_loss"]
    assert main(["train", str(spec), "--task", str(task), "--out", str(tmp_path / "x"),
                 "--resume", "--quiet", *sets]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err
    sims = {}
    for backend in ("torch", "brian2"):
        sim = tmp_path / backend
        assert main(["simulate", str(spec), "--protocol", str(task), "--backend", backend,
                     "--out", str(sim), "--trials", "3", "--weights",
                     str(out / "weights_after.npz"), "--set", "n_units=10",
                     "--set", "sigma=0"]) == 0
        sims[backend] = np.load(sim / "activity.npz")
        assert sims[backend]["rates"].shape == (3, 100, 10)
        assert sims[backend]["outputs"].shape == (3, 100, 1)
        assert (sim / "report.html").is_file()
    np.testing.assert_allclose(sims["torch"]["time"], np.arange(1, 101) * 0.01)
    assert np.abs(sims["torch"]["rates"] - sims["brian2"]["rates"]).max() <= 1e-6
