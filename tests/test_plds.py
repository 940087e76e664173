"""Poisson LDS (kind ``plds``): the Laplace E-step against an exact Kalman smoother (pykalman)
and a dense Newton solve, sampling moments against closed forms, parameter recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import solve_discrete_lyapunov
from scipy.optimize import minimize

from neurorec.data.recording import BinnedTrials, TrialLayout
from neurorec.families.plds import inference as inf
from neurorec.families.plds.model import PLDS
from neurorec.spec import validate_spec


def _chain(rng, D=2):
    q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    A = 0.9 * q @ np.diag(np.linspace(1.0, 0.7, D)) @ q.T
    Lq = rng.standard_normal((D, D)) * 0.3
    Q = Lq @ Lq.T + 0.1 * np.eye(D)
    return A, Q



def _dense_precision(A, Q, Q0, J):
    """Joint posterior precision of x_{1..T} as one dense (T·D, T·D) matrix: the prior chain
    (x_1 ~ N(., Q0), x_t | x_{t-1} ~ N(A x_{t-1}, Q)) plus the observation blocks J (T, D, D)."""
    T, D = J.shape[0], A.shape[0]
    H = np.zeros((T * D, T * D))
    Qi, Q0i = np.linalg.inv(Q), np.linalg.inv(Q0)
    for t in range(T):
        s = slice(t * D, (t + 1) * D)
        H[s, s] += (Q0i if t == 0 else Qi) + J[t]
        if t + 1 < T:
            n = slice((t + 1) * D, (t + 2) * D)
            H[s, s] += A.T @ Qi @ A
            H[s, n] -= A.T @ Qi
            H[n, s] -= Qi @ A
    return H

def test_e_step_is_the_kalman_smoother_on_gaussian_observations():
    """Gaussian observations y_t = C x_t + d + N(0, R): the information-form smoother must be
    pykalman's exact RTS smoother (means and covariances), and its lag-one cross-covariances
    the blocks of the inverse of the joint precision."""
    pykalman = pytest.importorskip("pykalman")
    rng = np.random.default_rng(0)
    D, N, T, K = 2, 3, 25, 2
    A, Q = _chain(rng, D)
    C, d = rng.standard_normal((N, D)), rng.standard_normal(N)
    R = np.diag(rng.uniform(0.2, 1.0, N))
    mu0, Q0 = rng.standard_normal(D), np.eye(D) * 0.7
    u = rng.standard_normal((K, T, D)) * 0.2
    y = rng.standard_normal((K, T, N))
    Rinv = np.linalg.inv(R)
    J = np.broadcast_to(C.T @ Rinv @ C, (K, T, D, D)).copy()
    h = (y - d) @ (Rinv @ C)
    post = inf.info_smoother(J, h, A, u, Q, mu0, Q0)
    for k in range(K):
        kf = pykalman.KalmanFilter(
            transition_matrices=A, observation_matrices=C, transition_covariance=Q,
            observation_covariance=R, transition_offsets=u[k, 1:], observation_offsets=d,
            initial_state_mean=mu0, initial_state_covariance=Q0)
        mean, cov = kf.smooth(y[k])
        np.testing.assert_allclose(post.mean[k], mean, atol=1e-10)
        np.testing.assert_allclose(post.cov[k], cov, atol=1e-10)
        # dense joint precision: prior chain + observations, inverted in one piece
        S = np.linalg.inv(_dense_precision(A, Q, Q0, J[k]))
        for t in range(T - 1):
            np.testing.assert_allclose(post.cross[k, t],
                                       S[(t + 1) * D:(t + 2) * D, t * D:(t + 1) * D], atol=1e-10)


def test_laplace_mode_and_covariance_match_a_dense_solve():
    """Poisson observations: the Newton/smoother mode equals scipy's maximiser of the dense
    log posterior, and the covariances the inverse of its Hessian there."""
    rng = np.random.default_rng(1)
    D, N, T = 2, 4, 15
    A, Q = _chain(rng, D)
    C, mu0, Q0 = rng.standard_normal((N, D)) * 0.5, np.zeros(D), np.eye(D)
    eta = np.full((1, T, N), -0.5)
    u = np.zeros((1, T, D))
    _, y = inf.sample_plds(A, u, Q, mu0, Q0, C, eta, rng)
    post, _ = inf.laplace_posterior(y.astype(float), C, eta, A, u, Q, mu0, Q0, tol=1e-12)

    def neg(xf):
        x = xf.reshape(1, T, D)
        ll = inf.poisson_terms(x, y, C, eta, None)[0]
        lp = inf.log_prior(x, A, u, Q, mu0, Q0)
        return -(ll + lp)[0]

    res = minimize(neg, np.zeros(T * D), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(post.mean[0].ravel(), res.x, atol=1e-5)
    # Hessian at the mode by central differences of the analytic terms
    _, _, Jn = inf.poisson_terms(post.mean, y, C, eta, None)
    S = np.linalg.inv(_dense_precision(A, Q, Q0, Jn[0]))
    for t in range(T):
        np.testing.assert_allclose(post.cov[0, t], S[t * D:(t + 1) * D, t * D:(t + 1) * D],
                                   atol=1e-9)


def test_sampling_moments_match_closed_form():
    """Stationary PLDS: E[y_n] = exp(d_n + C_n Σ C_n'/2) and
    Cov(y_n, y_m) = E y_n E y_m (exp(C_n Σ C_m') - 1) + δ_nm E y_n (Σ the stationary
    latent covariance)."""
    rng = np.random.default_rng(2)
    D, N, T, K = 2, 3, 40, 4000
    A, Q = _chain(rng, D)
    S = solve_discrete_lyapunov(A, Q)
    C, d = rng.standard_normal((N, D)) * 0.4, np.log([0.5, 1.0, 2.0])
    _, y = inf.sample_plds(A, np.zeros((K, T, D)), Q, np.zeros(D), S, C,
                           np.broadcast_to(d, (K, T, N)), np.random.default_rng(3))
    mean = np.exp(d + 0.5 * np.einsum("ni,ij,nj->n", C, S, C))
    cov = np.outer(mean, mean) * (np.exp(C @ S @ C.T) - 1) + np.diag(mean)
    flat = y[:, ::10].reshape(-1, N)  # bins 10 apart: nearly independent draws
    np.testing.assert_allclose(flat.mean(axis=0), mean, rtol=0.03)
    np.testing.assert_allclose(np.cov(flat.T), cov, rtol=0.12, atol=0.02)


def _binned(counts: np.ndarray, condition: np.ndarray, n_conditions: int) -> BinnedTrials:
    K, T, N = counts.shape
    return BinnedTrials(
        counts=counts, bin_size=0.01, time=(np.arange(T) + 0.5) * 0.01,
        condition=condition.astype(np.int64),
        condition_table=pd.DataFrame({"direction": 90.0 * np.arange(n_conditions)}),
        is_test=np.zeros(K, bool), unit_ids=np.array([f"u{i}" for i in range(N)]),
        source="synthetic")


def test_laplace_em_recovers_simulated_parameters():
    """Simulated 1-d PLDS, 10 units: the fit recovers the latent's eigenvalue, the loadings
    up to sign (C σ, σ the stationary latent sd), and predicts held-out trials one step ahead
    as well as the generating parameters do (and better than each unit's constant rate)."""
    rng = np.random.default_rng(4)
    N, T, K = 10, 60, 300
    A, Q = np.array([[0.95]]), np.array([[1 - 0.95**2]])
    C = rng.uniform(0.3, 0.8, (N, 1)) * rng.choice([-1, 1], (N, 1))
    d = np.log(rng.uniform(0.05, 0.3, N))
    _, y = inf.sample_plds(A, np.zeros((K, T, 1)), Q, np.zeros(1), np.eye(1), C,
                           np.broadcast_to(d, (K, T, N)), rng)
    spec = validate_spec({"kind": "plds", "stimulus": {"n_basis": 1, "latent_input": False,
                                                        "observation": False},
                          "latent": {"dim": 1, "initial_state": "shared"},
                          "penalty": {"l2": 0.0}, "fit": {"max_iter": 60}}, "<test>")
    train = _binned(y[:250], np.zeros(250), 1)
    test = _binned(y[250:], np.zeros(50), 1)
    model = PLDS(spec).fit(train, progress=False)
    p = model.params_
    sd = np.sqrt(solve_discrete_lyapunov(p["A"], p["Q"]))[0, 0]
    assert abs(p["A"][0, 0] - 0.95) < 0.02
    loading = p["C"][:, 0] * sd * np.sign(p["C"][0, 0] * C[0, 0])
    np.testing.assert_allclose(loading, C[:, 0], atol=0.1)
    # one step ahead on held-out trials, as good as the generating parameters themselves
    truth = PLDS(spec)
    truth.params_ = {"A": A, "B": np.zeros((1, 1)), "Q": Q, "mu0": np.zeros((1, 1)),
                     "Q0": np.eye(1), "C": C, "d": d}
    truth.n_conditions_, truth.n_bins_, truth.bin_size_, truth.n_units_ = 1, T, 0.01, N
    assert model.score(test) > truth.score(test) - 0.01
    assert model.score(test) > 0.05
    # seeded sampling
    layout = TrialLayout(np.zeros(3, int), 20)
    np.testing.assert_array_equal(model.sample(3, seed=5, like=layout),
                                  model.sample(3, seed=5, like=layout))


def test_cosmoothing_mask_keeps_heldout_units_out_of_the_latent():
    """In co-smoothing mode a held-out unit's test spikes must not change any prediction."""
    rng = np.random.default_rng(6)
    K, T, N = 40, 30, 5
    y = rng.poisson(0.3, (K, T, N))
    spec = validate_spec({"kind": "plds", "stimulus": {"n_basis": 2}, "latent": {"dim": 1},
                          "fit": {"max_iter": 3}}, "<test>")
    model = PLDS(spec)
    model.heldout = np.array([False, False, False, False, True])
    model.fit(_binned(y, np.arange(K) % 2, 2), progress=False)
    a = _binned(y[:6], np.arange(6) % 2, 2)
    b = _binned(y[:6].copy(), np.arange(6) % 2, 2)
    b.counts[..., 4] = rng.poisson(2.0, (6, T))
    np.testing.assert_array_equal(model.predict_rate(a), model.predict_rate(b))
