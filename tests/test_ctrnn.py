"""ctrnn: the torch Euler step, and torch vs Brian 2 agreement (σ = 0 exactly, σ > 0 in
distribution against the closed-form stationary covariance of a linear network)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from neurorec.core.errors import SpecError
from neurorec.families.ctrnn.brian2 import simulate_brian2
from neurorec.families.ctrnn.model import CTRNN, build_ctrnn, noise_std
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.spec import load_model_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p for p in REPO.glob("models/*.yaml")
                 if re.search(r"^kind:\s*ctrnn\s*$", p.read_text(), re.MULTILINE))


def _small(path: Path, **extra: str) -> CTRNNSpec:
    sets = ["n_units=12", "sigma=0", "init.bias=0.1", "init.gain=1.5",
            *(f"{k}={v}" for k, v in extra.items())]
    return load_model_spec(path, sets)


def test_ctrnn_specs_are_shipped():
    assert len(SHIPPED) >= 3


def test_euler_step_is_the_issue_formula():
    spec = CTRNNSpec(n_units=5, sigma=0.3, tau=0.05, dt=0.01, nonlinearity="tanh")
    model = CTRNN(spec, 2, 1, seed=3, dtype="float64")
    rng = np.random.default_rng(0)
    u = rng.standard_normal((4, 6, 2))
    xi = rng.standard_normal((4, 6, 5))
    with torch.no_grad():
        rates, out = model(torch.tensor(u), noise=torch.tensor(xi))
    w = model.weights()
    alpha = 0.2
    r = np.zeros((4, 5))
    for t in range(6):
        noise = np.sqrt(2 * 0.3 ** 2 / alpha) * xi[:, t]
        x = r @ w["w_rec"].T + u[:, t] @ w["w_in"].T + w["b"] + noise
        r = (1 - alpha) * r + alpha * np.tanh(x)
        np.testing.assert_allclose(rates[:, t].numpy(), r, rtol=0, atol=1e-14)
    np.testing.assert_allclose(out.numpy(), rates.numpy() @ w["w_out"].T, atol=1e-14)
    assert noise_std(spec) == pytest.approx(math.sqrt(2 * 0.09 / 0.2))


def test_structure_zero_diagonal_dale_density():
    spec = CTRNNSpec(n_units=50, density=0.3, dale={"enabled": True, "excitatory_fraction": 0.8})
    w = CTRNN(spec, 1, 1, seed=0).weights()["w_rec"]
    assert np.all(np.diag(w) == 0)
    assert np.all(w[:, :40] >= 0) and np.all(w[:, 40:] <= 0)
    off = ~np.eye(50, dtype=bool)
    assert abs(np.mean(w[off] != 0) - 0.3) < 0.05


def test_float32_close_to_float64_and_seeded():
    spec = CTRNNSpec(n_units=20, sigma=0.05)
    u = torch.rand(3, 30, 2, generator=torch.Generator().manual_seed(0))
    xi = torch.randn(3, 30, 20, generator=torch.Generator().manual_seed(1))
    runs = {}
    for dtype in ("float32", "float64"):
        m = CTRNN(spec, 2, 1, seed=1, dtype=dtype)
        with torch.no_grad():
            runs[dtype] = m(u.to(m.w_in.dtype), noise=xi.to(m.w_in.dtype))[0]
    np.testing.assert_allclose(runs["float32"].double(), runs["float64"], atol=1e-5)
    m = CTRNN(spec, 2, 1, seed=1)
    with torch.no_grad():
        a = m(u, generator=torch.Generator().manual_seed(5))[0]
        b = m(u, generator=torch.Generator().manual_seed(5))[0]
        c = m(u, generator=torch.Generator().manual_seed(6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_task_channels_must_match_the_spec():
    spec = CTRNNSpec(n_units=4, n_inputs=3)
    with pytest.raises(SpecError, match="n_inputs: spec says 3, the task has 2"):
        build_ctrnn(spec, 2, 1)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_backends_agree_without_noise(path):
    """σ = 0: brian2 (runtime, network operation) equals torch float64 to ≤ 1e-6."""
    spec = _small(path)
    model = CTRNN(spec, 2, 2, seed=7, dtype="float64")
    u = np.random.default_rng(1).uniform(0, 1, size=(3, 40, 2))
    with torch.no_grad():
        rates, out = model(torch.tensor(u))
    rb, ob = simulate_brian2(spec, model.weights(), u)
    assert np.abs(rates.numpy()).max() > 0.05  # a non-trivial trajectory
    assert np.abs(rb - rates.numpy()).max() <= 1e-6
    assert np.abs(ob - out.numpy()).max() <= 1e-6


def test_backends_agree_with_synapses():
    """The Synapses (summed variable) formulation gives the same trajectories."""
    spec = _small(REPO / "models/ctrnn_study.yaml", density="0.5")
    model = CTRNN(spec, 2, 1, seed=2, dtype="float64")
    u = np.random.default_rng(2).uniform(0, 1, size=(2, 30, 2))
    with torch.no_grad():
        rates, _ = model(torch.tensor(u))
    rb, _ = simulate_brian2(spec, model.weights(), u, recurrent="synapses")
    assert np.abs(rb - rates.numpy()).max() <= 1e-6


def test_backends_agree_cpp_standalone():
    spec = _small(REPO / "models/ctrnn_study.yaml")
    model = CTRNN(spec, 2, 1, seed=2, dtype="float64")
    u = np.random.default_rng(2).uniform(0, 1, size=(2, 30, 2))
    with torch.no_grad():
        rates, _ = model(torch.tensor(u))
    rb, _ = simulate_brian2(spec, model.weights(), u, device="cpp_standalone")
    assert np.abs(rb - rates.numpy()).max() <= 1e-6


def test_noise_statistics_match_the_lyapunov_solution():
    """Linear network (leaky ReLU at 45°): the stationary covariance of both backends matches
    ``Σ = A Σ Aᵀ + α² s² I`` (A = (1-α) I + α W, s = sqrt(2σ²/α)), and the continuous-time
    Lyapunov solution to O(α)."""
    spec = CTRNNSpec(n_units=3, sigma=0.2, nonlinearity="leaky_relu", leak_angle=45.0,
                     init={"gain": 0.8})
    model = CTRNN(spec, 1, 1, seed=4, dtype="float64")
    w = model.weights()["w_rec"]
    alpha, s = spec.alpha, noise_std(spec)
    a = (1 - alpha) * np.eye(3) + alpha * w
    sigma_d = scipy.linalg.solve_discrete_lyapunov(a, alpha ** 2 * s ** 2 * np.eye(3))
    a_c = (w - np.eye(3)) / spec.tau
    sigma_c = scipy.linalg.solve_continuous_lyapunov(a_c, -2 * spec.sigma ** 2 / spec.tau
                                                     * np.eye(3))
    u = np.zeros((400, 300, 1))
    with torch.no_grad():
        rt, _ = model(torch.tensor(u), generator=torch.Generator().manual_seed(0))
    rb, _ = simulate_brian2(spec, model.weights(), u, seed=0)
    for rates in (rt.numpy(), rb):
        x = rates[:, 100:].reshape(-1, 3)
        cov = np.cov(x.T)
        np.testing.assert_allclose(cov, sigma_d, atol=0.08 * np.abs(sigma_d).max())
        np.testing.assert_allclose(np.diag(cov), np.diag(sigma_c), rtol=0.15)
    # the two backends draw different noise: their samples must differ
    assert np.abs(rb - rt.numpy()).max() > 1e-3
