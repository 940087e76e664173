"""The ct-RNN study's analyses on constructed cases with known answers: principal angles of
known subspaces and their chance level, DCA recovering a known dynamical plane that PCA
misses, fixed points of a ReLU network in its linear regime, a slow point, hub retention."""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch

from neurorec.analysis.dynamics import (
    dca_trajectories,
    pca_trajectories,
    random_subspace_angles,
    smallest_angle_deg,
    top_fraction_kept,
)
from neurorec.analysis.fixed_points import ctrnn_step_map, find_fixed_points, summarize
from neurorec.families.ctrnn.model import build_ctrnn, load_weights
from neurorec.spec import load_model_spec


def test_smallest_angle_of_known_subspaces():
    n = 6
    e = np.eye(n)
    for theta in (0.0, 17.0, 55.0, 90.0):
        t = np.radians(theta)
        a = e[[0, 1]]                                    # span(e1, e2)
        b = (np.cos(t) * e[0] + np.sin(t) * e[2])[None]  # e1 tilted towards e3 by θ
        assert abs(smallest_angle_deg(a, b) - theta) < 1e-6
        # scaling and mixing rows does not change a span
        assert abs(smallest_angle_deg(np.array([[2.0, 1, 0, 0, 0, 0], [1, -3, 0, 0, 0, 0]]),
                                      5 * b) - theta) < 1e-6


def test_random_subspace_angle_matches_its_distribution():
    """Two random lines in R^n: cos²θ ~ Beta(½, (n-1)/2)."""
    n = 10
    deg = random_subspace_angles(n, 1, 1, n_draws=3000, seed=1)
    cos2 = np.cos(np.radians(deg)) ** 2
    assert scipy.stats.kstest(cos2, scipy.stats.beta(0.5, (n - 1) / 2).cdf).pvalue > 0.01
    # and it does not depend on which seed drew it beyond sampling error
    other = random_subspace_angles(n, 1, 1, n_draws=3000, seed=2)
    assert abs(np.median(deg) - np.median(other)) < 2.0
    # a 3-dim space vs a line in R^128 (the study's N): far from 0, below 90
    big = random_subspace_angles(128, 3, 1, n_draws=500, seed=0)
    assert 75 < np.median(big) < 90


def test_dca_finds_the_dynamical_plane_pca_misses():
    """A slow rotation in plane P (variance 1) plus white noise of variance 4 in three other
    directions: PCA's top-2 space is the noise, DCA's is P (the only predictable part)."""
    rng = np.random.default_rng(0)
    n, b, t = 8, 20, 100
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    plane, noisy = q[:, :2].T, q[:, 2:5].T
    angle = 2 * np.pi / 25  # one turn in 25 steps
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    z = np.empty((b, t, 2))
    z[:, 0] = rng.standard_normal((b, 2))
    for k in range(1, t):
        z[:, k] = z[:, k - 1] @ rot.T * 0.99 + 0.1 * rng.standard_normal((b, 2))
    z /= z.std()
    x = z @ plane + 2.0 * rng.standard_normal((b, t, 3)) @ noisy \
        + 0.05 * rng.standard_normal((b, t, n))
    dca = dca_trajectories(x, d=2, window=3, seed=0)
    pca = pca_trajectories(x, 2)
    assert np.allclose(dca.basis @ dca.basis.T, np.eye(2), atol=1e-10)
    assert dca.trajectories.shape == (b, t, 2)
    assert np.degrees(np.max(np.arccos(np.clip(np.linalg.svd(
        dca.basis @ plane.T, compute_uv=False), -1, 1)))) < 8  # all angles to P small
    assert smallest_angle_deg(pca.components, plane) > 60
    assert dca.pi > 0.5


def test_relu_network_in_its_linear_regime_has_the_linear_fixed_point():
    """All units driven above threshold: r* = (I - W)⁻¹ (W_in u + b), stable, with map
    eigenvalues 1 - α + α·eig(W); found from trajectory-like starts and classified."""
    n = 8
    spec = load_model_spec("models/ctrnn_study.yaml", [f"n_units={n}"])
    model = build_ctrnn(spec, 1, 1, seed=0)
    rng = np.random.default_rng(3)
    w = 0.3 * rng.standard_normal((n, n)) / np.sqrt(n)
    np.fill_diagonal(w, 0.0)
    weights = {"w_rec": w, "w_in": rng.uniform(0.5, 1, (n, 1)),
               "w_out": rng.standard_normal((1, n)), "b": np.ones(n)}
    load_weights(model, weights)
    u = np.array([0.8])
    exact = np.linalg.solve(np.eye(n) - w, weights["w_in"] @ u + 1.0)
    assert (exact > 0).all()
    fps = find_fixed_points(ctrnn_step_map(model, u), exact + rng.uniform(-0.5, 0.5, (12, n)),
                            n_iter=100, lr=0.05, q_tol=1e-10, dedupe_tol=1e-3)
    counts = summarize(fps)
    assert (counts["fixed"], counts["stable"], counts["saddle"], counts["slow"]) == (1, 1, 0, 0)
    # model weights are float32: the fixed point of the rounded weights, to float32 precision
    np.testing.assert_allclose(fps.points[0], exact, atol=1e-5)
    alpha = spec.alpha
    lam = 1 - alpha + alpha * np.linalg.eigvals(model.weights()["w_rec"])
    np.testing.assert_allclose(np.sort(np.abs(fps.eigenvalues[0])), np.sort(np.abs(lam)),
                               atol=1e-9)
    assert abs(counts["stable_max_modulus"] - np.abs(lam).max()) < 1e-9


def test_a_slow_point_is_found_and_counted_as_slow():
    """F(r) = r - α(r² + ε): no fixed point; q = ½α²(r² + ε)² is smallest (½α²ε²) at r = 0."""
    alpha, eps = 0.1, 1e-3

    def step_map(r):
        return r - alpha * (r ** 2 + eps)

    starts = np.linspace(-0.5, 0.5, 9)[:, None]
    fps = find_fixed_points(step_map, starts, n_iter=600, lr=0.01, q_tol=1e-10,
                            dedupe_tol=0.05)
    counts = summarize(fps, slow_tol=1e-6)
    assert counts["fixed"] == 0 and counts["slow"] == 1
    k = int(np.argmin(fps.q))
    assert abs(fps.points[k, 0]) < 0.02
    assert abs(fps.q[k] - 0.5 * alpha ** 2 * eps ** 2) < 1e-9
    # a stricter slow threshold than its q: not a slow point any more
    assert summarize(fps, slow_tol=1e-9)["slow"] == 0
    assert np.isnan(counts["stable_max_modulus"])


def test_top_fraction_kept():
    x = np.arange(20.0)
    assert top_fraction_kept(x, x, 0.1) == 1.0
    assert top_fraction_kept(x, -x, 0.1) == 0.0
    y = x.copy()
    y[19] = -1  # the top node drops out; node 17 enters
    assert top_fraction_kept(x, y, 0.1) == 0.5
    # two independent rankings share ~fraction of their hubs
    rng = np.random.default_rng(0)
    kept = [top_fraction_kept(rng.random(200), rng.random(200), 0.1) for _ in range(300)]
    assert abs(np.mean(kept) - 0.1) < 0.02


def test_step_map_uses_the_constant_input():
    n = 4
    spec = load_model_spec("models/ctrnn_study.yaml", [f"n_units={n}"])
    model = build_ctrnn(spec, 2, 1, seed=1)
    u = np.array([0.3, -0.2])
    r = torch.rand(3, n, dtype=torch.float64)
    w = model.weights()
    expect = (1 - spec.alpha) * r.numpy() + spec.alpha * np.maximum(
        r.numpy() @ w["w_rec"].T + w["w_in"] @ u + w["b"], 0)
    np.testing.assert_allclose(ctrnn_step_map(model, u)(r).numpy(), expect, atol=1e-12)
