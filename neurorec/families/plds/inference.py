"""Inference and learning for the Poisson linear dynamical system (Macke et al. 2011).

Pure functions on numpy arrays, vectorised over trials (``K``), looped over time (``T``);
latent dimension ``D``, units ``N``. The model::

    x_0 ~ N(mu0, Q0),   x_t = A x_{t-1} + u_t + eps_t,   eps_t ~ N(0, Q)
    y_t,n ~ Poisson(exp(C_n . x_t + eta_t,n))

with ``u`` (K, T, D) the latent input (``B s_t``) and ``eta`` (K, T, N) the observation offset
(``d`` plus any per-unit stimulus drive).

E-step (Laplace): the posterior mode of ``x`` given ``y`` by Newton's method. The log
posterior's Hessian is block-tridiagonal (the chain prior) plus block-diagonal
``C' diag(lambda_t) C`` (the Poisson term), so one Newton step is exactly a Kalman filter in
information form with pseudo-observations (precision ``J_t = C' diag(lambda_t) C``, information
``h_t = J_t x_t + C'(y_t - lambda_t)``) followed by the RTS smoother; the smoother's covariances
are the blocks of the inverse Hessian at the mode (the Laplace posterior). With Gaussian
observations (``J_t``, ``h_t`` from a linear-Gaussian likelihood) the same routine is the exact
Kalman smoother, which is how it is tested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

Array = np.ndarray


def _sym(M: Array) -> Array:
    return 0.5 * (M + np.swapaxes(M, -1, -2))


def _inv(M: Array) -> Array:
    """Inverse of a batch of symmetric positive-definite matrices, symmetrised."""
    return _sym(np.linalg.inv(M))


@dataclass
class Posterior:
    """Gaussian (Laplace) posterior over the latents of ``K`` trials.

    Attributes:
        mean: (K, T, D) posterior means (the mode).
        cov: (K, T, D, D) marginal covariances ``Cov(x_t)``.
        cross: (K, T-1, D, D) ``Cov(x_{t+1}, x_t)``.
    """

    mean: Array
    cov: Array
    cross: Array


def info_smoother(J: Array, h: Array, A: Array, u: Array, Q: Array, mu0: Array,
                  Q0: Array) -> Posterior:
    """Posterior of a linear-Gaussian chain with observation terms in information form.

    The log density is ``log N(x_0; mu0, Q0) + sum_t log N(x_t; A x_{t-1} + u_t, Q)
    + sum_t (h_t . x_t - x_t' J_t x_t / 2)``.

    Args:
        J: (K, T, D, D) observation precisions (symmetric, positive semi-definite).
        h: (K, T, D) observation information vectors.
        A: (D, D) dynamics; u: (K, T, D) inputs (``u[:, 0]`` unused); Q: (D, D) noise cov.
        mu0: (K, D) or (D,) initial mean; Q0: (D, D) initial covariance.
    Returns:
        the posterior (means, marginal covariances, lag-one cross-covariances).
    """
    K, T, D = h.shape
    mf = np.empty((K, T, D))
    Pf = np.empty((K, T, D, D))
    mp = np.empty((K, T, D))
    Pp = np.empty((K, T, D, D))
    mp[:, 0] = np.broadcast_to(mu0, (K, D))
    Pp[:, 0] = Q0
    for t in range(T):
        if t > 0:
            mp[:, t] = mf[:, t - 1] @ A.T + u[:, t]
            Pp[:, t] = _sym(A @ Pf[:, t - 1] @ A.T + Q)
        prec_p = _inv(Pp[:, t])
        Pf[:, t] = _inv(prec_p + J[:, t])
        mf[:, t] = np.einsum("kij,kj->ki", Pf[:, t],
                             np.einsum("kij,kj->ki", prec_p, mp[:, t]) + h[:, t])
    ms, Ps = mf.copy(), Pf.copy()
    cross = np.empty((K, max(T - 1, 0), D, D))
    for t in range(T - 2, -1, -1):
        # G_t = Pf_t A' Pp_{t+1}^{-1}
        G = np.swapaxes(np.linalg.solve(Pp[:, t + 1], A @ Pf[:, t]), -1, -2)
        ms[:, t] = mf[:, t] + np.einsum("kij,kj->ki", G, ms[:, t + 1] - mp[:, t + 1])
        Ps[:, t] = _sym(Pf[:, t] + G @ (Ps[:, t + 1] - Pp[:, t + 1]) @ np.swapaxes(G, -1, -2))
        cross[:, t] = Ps[:, t + 1] @ np.swapaxes(G, -1, -2)
    return Posterior(ms, Ps, cross)


def log_prior(x: Array, A: Array, u: Array, Q: Array, mu0: Array, Q0: Array) -> Array:
    """(K,) log density of latent paths ``x`` (K, T, D) under the chain prior, up to a
    constant."""
    e0 = x[:, 0] - mu0
    e = x[:, 1:] - x[:, :-1] @ A.T - u[:, 1:]
    out = -0.5 * np.einsum("ki,ij,kj->k", e0, np.linalg.inv(Q0), e0)
    return out - 0.5 * np.einsum("kti,ij,ktj->k", e, np.linalg.inv(Q), e)


def _outer(C: Array) -> Array:
    """(N, D²): row n is the flattened outer product C_n C_n'."""
    return np.einsum("ni,nj->nij", C, C).reshape(C.shape[0], -1)


def poisson_terms(x: Array, y: Array, C: Array, eta: Array,
                  mask: Array | None) -> tuple[Array, Array, Array]:
    """Poisson log-likelihood per trial (K,), its gradient (K, T, D) and Hessian negated
    (K, T, D, D) in ``x``, counting only the units where ``mask`` (N,) is True."""
    w = np.ones(C.shape[0]) if mask is None else mask.astype(float)
    a = x @ C.T + eta
    lam = np.exp(np.minimum(a, 30.0))
    ll = (w * (y * a - lam)).sum(axis=(1, 2))
    grad = ((y - lam) * w) @ C
    J = ((lam * w) @ _outer(C)).reshape(*x.shape, x.shape[-1])
    return ll, grad, J


def laplace_posterior(y: Array, C: Array, eta: Array, A: Array, u: Array, Q: Array,
                      mu0: Array, Q0: Array, x_init: Array | None = None,
                      mask: Array | None = None, max_iter: int = 20,
                      tol: float = 1e-8) -> tuple[Posterior, Array]:
    """Laplace posterior of a PLDS's latents: Newton's method on the log posterior, one
    information-form Kalman smoother per step, a step-halving line search per trial.

    Args:
        y: (K, T, N) counts; C: (N, D); eta: (K, T, N) observation offsets.
        A, u, Q, mu0, Q0: the latent chain (see :func:`info_smoother`).
        x_init: (K, T, D) starting point (default: the prior mean path).
        mask: (N,) units whose spikes inform the latent (co-smoothing: held-in only).
    Returns:
        the posterior at the mode and (K,) the log joint ``log p(y, x_mode)`` (up to a
        constant).
    """
    K, T, _ = y.shape
    if x_init is None:
        x = np.empty((K, T, A.shape[0]))
        x[:, 0] = mu0
        for t in range(1, T):
            x[:, t] = x[:, t - 1] @ A.T + u[:, t]
    else:
        x = x_init.copy()
    ll, grad, J = poisson_terms(x, y, C, eta, mask)
    obj = ll + log_prior(x, A, u, Q, mu0, Q0)
    post = None
    for _ in range(max_iter):
        h = np.einsum("ktij,ktj->kti", J, x) + grad
        post = info_smoother(J, h, A, u, Q, mu0, Q0)
        step = post.mean - x
        alpha = np.ones(K)
        for _ in range(30):
            x_new = x + alpha[:, None, None] * step
            ll_new, grad_new, J_new = poisson_terms(x_new, y, C, eta, mask)
            obj_new = ll_new + log_prior(x_new, A, u, Q, mu0, Q0)
            worse = ~(obj_new >= obj - 1e-12 * np.abs(obj))
            if not worse.any():
                break
            alpha[worse] *= 0.5
        keep = ~worse
        x[keep], obj[keep] = x_new[keep], obj_new[keep]
        grad[keep], J[keep] = grad_new[keep], J_new[keep]
        if np.max(np.abs(alpha[:, None, None] * step)) < tol:
            break
    # the Laplace covariances at the final mode
    h = np.einsum("ktij,ktj->kti", J, x) + grad
    post = info_smoother(J, h, A, u, Q, mu0, Q0)
    post.mean = x
    return post, obj


def causal_filter(y: Array, C: Array, eta: Array, A: Array, u: Array, Q: Array, mu0: Array,
                  Q0: Array, mask: Array | None = None,
                  newton_iter: int = 8) -> tuple[Array, Array]:
    """One-step-ahead prediction: the latent filtered from past spikes only.

    At each bin the predictive ``x_t | y_{<t} ~ N(m, P)`` gives every unit's expected count
    ``E[exp(C_n x_t + eta)] = exp(C_n m + eta + C_n P C_n' / 2)``; then ``y_t`` (units in
    ``mask``) updates the latent by a Laplace step (Newton on the one-bin log posterior).

    Returns:
        rates (K, T, N) expected counts per bin, and the predictive means (K, T, D).
    """
    K, T, N = y.shape
    D = A.shape[0]
    w = np.ones(N) if mask is None else mask.astype(float)
    CC = _outer(C)
    rates = np.empty((K, T, N))
    means = np.empty((K, T, D))
    m = np.broadcast_to(mu0, (K, D)).copy()
    P = np.broadcast_to(Q0, (K, D, D)).copy()
    for t in range(T):
        if t > 0:
            m = m @ A.T + u[:, t]
            P = _sym(A @ P @ A.T + Q)
        means[:, t] = m
        var = P.reshape(K, D * D) @ CC.T
        rates[:, t] = np.exp(np.minimum(m @ C.T + eta[:, t] + 0.5 * var, 30.0))
        prec = _inv(P)
        x = m.copy()
        for _ in range(newton_iter):
            lam = np.exp(np.minimum(x @ C.T + eta[:, t], 30.0)) * w
            g = ((y[:, t] - lam) * w) @ C - np.einsum("kij,kj->ki", prec, x - m)
            H = prec + (lam @ CC).reshape(K, D, D)
            x = x + np.linalg.solve(H, g[..., None])[..., 0]
        lam = np.exp(np.minimum(x @ C.T + eta[:, t], 30.0)) * w
        P = _inv(prec + (lam @ CC).reshape(K, D, D))
        m = x
    return rates, means


def sample_plds(A: Array, u: Array, Q: Array, mu0: Array, Q0: Array, C: Array, eta: Array,
                rng: np.random.Generator) -> tuple[Array, Array]:
    """Ancestral samples: latents (K, T, D) and counts (K, T, N)."""
    K, T, D = u.shape
    x = np.empty((K, T, D))
    LQ, L0 = np.linalg.cholesky(Q), np.linalg.cholesky(Q0)
    x[:, 0] = np.broadcast_to(mu0, (K, D)) + rng.standard_normal((K, D)) @ L0.T
    for t in range(1, T):
        x[:, t] = x[:, t - 1] @ A.T + u[:, t] + rng.standard_normal((K, D)) @ LQ.T
    rate = np.exp(x @ C.T + eta)
    return x, rng.poisson(rate)


# ----------------------------------------------------------------------------- M-step
def _gram(a: Array, b: Array) -> Array:
    """sum over trials and bins of a_t b_t' for (K, T, I) and (K, T, J) arrays."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def m_step_dynamics(post: Posterior, s: Array, ridge: float = 1e-6,
                    condition: Array | None = None,
                    n_conditions: int = 1) -> dict[str, Array]:
    """Closed-form ``A``, ``B`` (input weights of ``s``), ``Q``, ``mu0``, ``Q0``.

    Args:
        post: the E-step posterior.
        s: (K, T, P) latent inputs' features (e.g. condition one-hot ⊗ time basis), or
            P = 0 for none.
        ridge: on ``B`` (relative to the trace of the input Gram), for inputs that appear
            in few bins.
        condition: (K,) condition index per trial: one initial mean per condition.
    Returns:
        {"A": (D, D), "B": (D, P), "Q": (D, D), "mu0": (n_conditions, D), "Q0": (D, D)}.
    """
    m, V, X = post.mean, post.cov, post.cross
    K, T, D = m.shape
    P = s.shape[2]
    # regress x_t on z_t = [x_{t-1}, s_t], t = 1..T-1, with expected sufficient statistics
    Exx_prev = _gram(m[:, :-1], m[:, :-1]) + V[:, :-1].sum(axis=(0, 1))
    Exx_cross = _gram(m[:, 1:], m[:, :-1]) + X.sum(axis=(0, 1))
    Exx_next = _gram(m[:, 1:], m[:, 1:]) + V[:, 1:].sum(axis=(0, 1))
    Szz = np.zeros((D + P, D + P))
    Szz[:D, :D] = Exx_prev
    Sxz = np.zeros((D, D + P))
    Sxz[:, :D] = Exx_cross
    if P:
        ss = s[:, 1:]
        Szz[:D, D:] = _gram(m[:, :-1], ss)
        Szz[D:, :D] = Szz[:D, D:].T
        Szz[D:, D:] = _gram(ss, ss)
        Szz[D:, D:] += np.eye(P) * ridge * max(np.trace(Szz[D:, D:]) / P, 1.0)
        Sxz[:, D:] = _gram(m[:, 1:], ss)
    W = np.linalg.solve(_sym(Szz), Sxz.T).T
    A, B = W[:, :D], W[:, D:]
    n = K * (T - 1)
    Q = (Exx_next - W @ Sxz.T - Sxz @ W.T + W @ Szz @ W.T) / n
    Q = _sym(Q) + 1e-9 * np.eye(D)
    groups = np.zeros(K, int) if condition is None else np.asarray(condition)
    mu0 = np.zeros((n_conditions, D))
    for c in range(n_conditions):
        sel = groups == c
        mu0[c] = m[sel, 0].mean(axis=0) if sel.any() else m[:, 0].mean(axis=0)
    e0 = m[:, 0] - mu0[groups]
    Q0 = _sym((np.einsum("ki,kj->ij", e0, e0) + V[:, 0].sum(axis=0)) / K) + 1e-9 * np.eye(D)
    return {"A": A, "B": B, "Q": Q, "mu0": mu0, "Q0": Q0}


def m_step_observation(y: Array, post: Posterior, C: Array, d: Array, beta: Array | None,
                       drive: Callable[[Array | None], Array], drive_grad: Callable,
                       l2: float, stimulus_l2: float,
                       max_iter: int = 100) -> tuple[Array, Array, Array | None]:
    """``C``, ``d`` and the per-unit stimulus weights ``beta``: maximise the expected Poisson
    log-likelihood under the Gaussian posterior (concave),
    ``sum y (C m + eta) - exp(C m + eta + C V C' / 2)``, by L-BFGS from the current values.

    Args:
        y: (K, T, N) counts; post: the E-step posterior.
        drive: ``beta -> (K, T, N)`` the stimulus part of ``eta`` (zeros for None).
        drive_grad: ``(K, T, N) residual -> gradient in beta`` (the adjoint of ``drive``).
        l2: ridge on ``C`` and stimulus_l2 on ``beta``, each per bin and unit.
    """
    K, T, N = y.shape
    D = C.shape[1]
    m, V = post.mean, post.cov
    nb = 0 if beta is None else beta.size
    scale = K * T * N
    ysum = y.sum()

    def unpack(theta):
        Cc = theta[:N * D].reshape(N, D)
        dd = theta[N * D:N * D + N]
        bb = None if beta is None else theta[N * D + N:].reshape(beta.shape)
        return Cc, dd, bb

    # C_n' V_t C_n for every bin and unit as one matrix product: V (KT, D²) @ (C ⊗ C)
    Vflat = V.reshape(K * T, D * D)
    mflat = m.reshape(K * T, D)

    def f(theta):
        Cc, dd, bb = unpack(theta)
        CC = np.einsum("ni,nj->ijn", Cc, Cc).reshape(D * D, N)
        lin = (mflat @ Cc.T).reshape(K, T, N) + dd + drive(bb)
        a = lin + 0.5 * (Vflat @ CC).reshape(K, T, N)
        lam = np.exp(np.minimum(a, 40.0))
        val = (lam - y * lin).sum() + l2 * scale * (Cc**2).sum()
        r = lam - y
        lamV = (lam.reshape(K * T, N).T @ Vflat).reshape(N, D, D)
        gC = r.reshape(K * T, N).T @ mflat + np.einsum("nij,nj->ni", lamV, Cc) \
            + 2 * l2 * scale * Cc
        gd = r.sum(axis=(0, 1))
        parts = [gC.ravel(), gd]
        if bb is not None:
            val += stimulus_l2 * scale * (bb**2).sum()
            parts.append((drive_grad(r) + 2 * stimulus_l2 * scale * bb).ravel())
        # objective per spike keeps L-BFGS's tolerances meaningful across datasets
        return val / ysum, np.concatenate(parts) / ysum

    theta0 = np.concatenate([C.ravel(), d] + ([] if beta is None else [beta.ravel()]))
    assert theta0.size == N * D + N + nb
    res = minimize(f, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": 1e-7})
    return unpack(res.x)
