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
