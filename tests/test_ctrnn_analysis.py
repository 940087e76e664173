"""Fixed points against known ones; W_rec spectra, non-normality, ΔW rank, PCA and
subspace angles against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from neurorec.analysis.dynamics import (
    centrality,
    non_normality,
    pca_trajectories,
    subspace_angles,
    weight_change,
)
from neurorec.analysis.fixed_points import find_fixed_points


def test_linear_map_has_its_one_fixed_point():
    rng = np.random.default_rng(0)
    n = 5
    a = 0.5 * rng.standard_normal((n, n)) / np.sqrt(n) + 0.3 * np.eye(n)
    c = rng.standard_normal(n)
    a_t, c_t = torch.tensor(a), torch.tensor(c)
    fps = find_fixed_points(lambda r: r @ a_t.T + c_t, rng.standard_normal((10, n)),
                            n_iter=300, lr=0.05)
    exact = np.linalg.solve(np.eye(n) - a, c)
    assert len(fps.points) == 1 and fps.fixed.all()
    np.testing.assert_allclose(fps.points[0], exact, atol=1e-9)
    lam = np.linalg.eigvals(a)
    np.testing.assert_allclose(np.sort(np.abs(fps.eigenvalues[0])), np.sort(np.abs(lam)),
                               atol=1e-9)
    assert fps.stability == (("stable",) if np.abs(lam).max() < 1 else ("saddle",))


def test_two_bistable_units_have_nine_fixed_points():
    """r_i ← (1-α) r_i + α tanh(2 r_i), decoupled: fixed points {-r*, 0, r*}², with
    r* = tanh(2 r*): 4 stable, 4 saddles, 1 unstable."""
    alpha = 0.1
    r_star = scipy.optimize.brentq(lambda x: np.tanh(2 * x) - x, 0.5, 1.0)

    def step_map(r):
        return (1 - alpha) * r + alpha * torch.tanh(2 * r)

    grid = np.array([[x, y] for x in (-1.2, -0.1, 0.1, 1.2) for y in (-1.2, -0.1, 0.1, 1.2)])
    starts = np.concatenate([grid, np.random.default_rng(1).uniform(-1.5, 1.5, (30, 2))])
    fps = find_fixed_points(step_map, starts, n_iter=1500, lr=0.02)
    fixed = fps.points[fps.fixed]
    assert len(fixed) == 9
    expected = {(a, b) for a in (-r_star, 0.0, r_star) for b in (-r_star, 0.0, r_star)}
    for p in fixed:
        assert min(np.abs(np.array(e) - p).max() for e in expected) < 1e-8
    assert (fps.count("stable"), fps.count("saddle"), fps.count("unstable")) == (4, 4, 1)
    # stable eigenvalues: 1 - α + 2α(1 - r*²)
    stable = fps.eigenvalues[[s == "stable" for s in fps.stability]]
    np.testing.assert_allclose(np.abs(stable), 1 - alpha + 2 * alpha * (1 - r_star ** 2),
                               atol=1e-9)


def test_non_normality_and_weight_change():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert non_normality(q @ np.diag(rng.standard_normal(6)) @ q.T) < 1e-12  # symmetric
    jordan = np.array([[1.0, 3.0], [0.0, 1.0]])
    assert non_normality(jordan) == pytest.approx(3.0)
    before = rng.standard_normal((20, 20))
    u, v = rng.standard_normal(20), rng.standard_normal(20)
    change = weight_change(before, before + np.outer(u, v))
    assert change.rank90 == 1 and change.effective_rank == pytest.approx(1.0)
    np.testing.assert_allclose(change.singular_values[0], np.linalg.norm(u) * np.linalg.norm(v))
    assert change.mean_drift == pytest.approx(np.outer(u, v).mean())


def test_pca_and_subspace_angles():
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.standard_normal((10, 2)))
    latent = rng.standard_normal((5, 200, 2)) * np.array([3.0, 1.0])
    rates = latent @ basis.T + 1e-6 * rng.standard_normal((5, 200, 10))
    pca = pca_trajectories(rates, 2)
    assert pca.explained.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(subspace_angles(pca.components, basis.T), 0, atol=1e-5)
    e = np.eye(3)
    angle = subspace_angles(e[:1], (e[0] + e[1])[None] / np.sqrt(2))
    np.testing.assert_allclose(angle, [np.pi / 4])


def test_centrality_of_a_star():
    w = np.zeros((5, 5))
    w[0, 1:] = 1.0
    w[1:, 0] = 1.0
    c = centrality(w)
    assert c.argmax() == 0 and c[1:] == pytest.approx(c[1])


def test_trained_flip_flop_has_eight_stable_fixed_points():
    """FixedPointFinder's published example: a 3-bit flip-flop network has 8 stable fixed
    points, one per output pattern (±1)³. models/ctrnn_flipflop.yaml (tanh, N = 64, lr 1e-2,
    1500 Adam steps), seed 0: 60-140 s in all on one core of the loaded 2-core machine.
    The readout signs at the stable points are checked against the 8 output patterns."""
    from pathlib import Path

    from neurorec.analysis.fixed_points import ctrnn_step_map
    from neurorec.families.ctrnn.model import build_ctrnn
    from neurorec.families.ctrnn.train import train
    from neurorec.spec import load_model_spec, load_stimulus_spec
    from neurorec.tasks import make_task

    repo = Path(__file__).resolve().parents[1]
    task = make_task(load_stimulus_spec(repo / "stimuli/task_flip_flop.yaml"))
    spec = load_model_spec(repo / "models/ctrnn_flipflop.yaml")
    model = build_ctrnn(spec, task.n_inputs, task.n_outputs, seed=0)
    result = train(model, task, spec.training, seed=0, progress=False)
    assert result.history.val_accuracy[-1] > 0.98
    model = model.double()
    trials = task.generate(64, np.random.default_rng([0, 9]))
    with torch.no_grad():
        rates, _ = model(torch.as_tensor(trials.inputs, dtype=torch.float64))
    starts = rates.numpy()[:, ::5].reshape(-1, spec.n_units)
    starts = starts[np.random.default_rng(0).choice(len(starts), 256, replace=False)]
    fps = find_fixed_points(ctrnn_step_map(model), starts, n_iter=1500, lr=1e-2, noise=0.01,
                            q_tol=1e-10, dedupe_tol=1e-3)
    stable = fps.points[[s == "stable" and f for s, f in zip(fps.stability, fps.fixed,
                                                            strict=True)]]
    assert len(stable) == 8
    # one per output pattern: the readout's signs at the 8 points are the 8 corners of (±1)³
    signs = np.sign(stable @ model.weights()["w_out"].T)
    assert {tuple(int(x) for x in s) for s in signs} == {
        (a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)}
    # each stable point's slowest mode is inside the unit circle; saddles connect them
    assert all(np.abs(fps.eigenvalues[i]).max() < 1
               for i, (s, f) in enumerate(zip(fps.stability, fps.fixed, strict=True))
               if s == "stable" and f)
    assert fps.count("saddle") > 0
