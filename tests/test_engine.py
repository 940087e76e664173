"""The training engine: bitwise resume, divergence guard, clipping, early stopping, budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurorec.core.errors import DataError, DivergenceError
from neurorec.fit.engine import Stepper, run_loop


class _Stop(Exception):
    pass


def _problem(seed: int = 0):
    """A noisy linear regression trained by minibatch Adam: randomness from both generators."""
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(200, 5)))
    w_true = torch.arange(1.0, 6.0, dtype=torch.float64)
    y = x @ w_true + 0.1 * torch.as_tensor(rng.normal(size=200))
    w = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    nrng = np.random.default_rng(seed)
    stepper = Stepper([w], opt, grad_clip=10.0, name="toy")

    def body(i: int) -> dict[str, float]:
        idx = torch.randperm(200, generator=gen)[:32]
        noise = float(nrng.normal()) * 1e-3
        loss = ((x[idx] @ w - y[idx]) ** 2).mean() + noise * w.sum()
        return {"loss": stepper.step(loss, where=f"step {i}")}

    def get_state():
        return {"w": w.detach().clone(), "opt": opt.state_dict()}

    def set_state(s):
        with torch.no_grad():
            w.copy_(s["w"])
        opt.load_state_dict(s["opt"])

    return w, body, get_state, set_state, gen, nrng, (x, y)


def test_resume_is_bitwise(tmp_path):
    w, body, get, put, gen, nrng, _ = _problem()
    full = run_loop(60, body, get_state=get, set_state=put, torch_generator=gen,
                    numpy_generator=nrng, progress=False)
    reference = w.detach().clone()

    w, body, get, put, gen, nrng, _ = _problem()
    ckpt = tmp_path / "ckpt.pt"

    def interrupt(i, row):
        if i == 23:
            raise _Stop

    with pytest.raises(_Stop):
        run_loop(60, body, get_state=get, set_state=put, torch_generator=gen,
                 numpy_generator=nrng, checkpoint=ckpt, checkpoint_every=1, progress=False,
                 callback=interrupt)
    w, body, get, put, gen, nrng, _ = _problem(seed=99)  # fresh objects, other seeds
    log = run_loop(60, body, get_state=get, set_state=put, torch_generator=gen,
                   numpy_generator=nrng, checkpoint=ckpt, resume=True, progress=False)
    assert log.resumed_from == 23
    assert torch.equal(w.detach(), reference)
    np.testing.assert_array_equal(log.column("loss"), full.column("loss"))
    # resuming a finished run changes nothing
    again = run_loop(60, body, get_state=get, set_state=put, torch_generator=gen,
                     numpy_generator=nrng, checkpoint=ckpt, resume=True, progress=False)
    assert torch.equal(w.detach(), reference) and len(again.history) == 60


def test_resume_without_checkpoint_is_a_data_error(tmp_path):
    _, body, get, put, *_ = _problem()
    with pytest.raises(DataError, match="no checkpoint"):
        run_loop(3, body, get_state=get, set_state=put, checkpoint=tmp_path / "x.pt",
                 resume=True, progress=False)


def test_divergence_guard_names_the_tensor_and_leaves_parameters():
    w = torch.ones(3, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    stepper = Stepper([w], opt, name="toy")
    with pytest.raises(DivergenceError, match="loss became nan"):
        stepper.step(w.sum() * float("nan"))
    with pytest.raises(DivergenceError, match="gradient of parameter 0"):
        stepper.step(torch.sqrt(w - 1).sum())  # loss 0, gradient inf
    assert torch.equal(w.detach(), torch.ones(3))  # no step was taken


def test_gradient_clipping_bounds_the_step():
    w = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([w], lr=1.0)
    Stepper([w], opt, grad_clip=0.5).step((w * 100.0).sum())
    assert float(w.detach().norm()) == pytest.approx(0.5, rel=1e-6)  # |Δw| = lr · 0.5


def test_early_stopping_restores_the_best_state():
    w = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.3)
    stepper = Stepper([w], opt)
    target = torch.tensor([1.0], dtype=torch.float64)

    def body(i):  # walks w past 1 towards 2; validation wants w = 1
        return {"loss": stepper.step(((w - 2 * target) ** 2).sum())}

    def validate():
        return float(((w.detach() - target) ** 2).sum())

    log = run_loop(100, body, get_state=lambda: {"w": w.detach().clone()},
                   set_state=lambda s: w.data.copy_(s["w"]), validate=validate, patience=3,
                   progress=False)
    assert log.reason == "early_stopping"
    values = dict(log.validation)
    assert log.best_value == min(values.values())
    assert validate() == pytest.approx(log.best_value, abs=0)
    assert len(log.history) == log.best_iteration + 3


def test_budget_stops_the_loop():
    log = run_loop(10**6, lambda i: {"loss": 0.0}, get_state=dict, set_state=lambda s: None,
                   max_seconds=0.05, progress=False)
    assert log.reason == "budget" and 0 < len(log.history) < 10**6
