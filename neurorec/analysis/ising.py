"""Pairwise maximum-entropy (Ising) model of binary population patterns, the classic peer of
correlated Bernoulli observations (Schneidman et al. 2006).

``p(s) ∝ exp(h·s + Σ_{i<j} J_ij s_i s_j)`` over ``s ∈ {0, 1}^N``. Fitted by pseudo-likelihood
(each unit's conditional is a logistic regression on the others; scikit-learn, unpenalised),
scored by the exact likelihood, enumerating all ``2^N`` patterns (N ≤ 20).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression

MAX_UNITS_EXACT = 20


def fit_ising_pseudolikelihood(patterns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fields ``h`` (N,) and symmetric couplings ``J`` (N, N), zero diagonal.

    Args:
        patterns: (n_samples, N) binary spike / no-spike patterns.
    """
    s = (np.asarray(patterns) > 0).astype(float)
    n_units = s.shape[1]
    h, J = np.zeros(n_units), np.zeros((n_units, n_units))
    for i in range(n_units):
        others = np.delete(np.arange(n_units), i)
        clf = LogisticRegression(C=np.inf, max_iter=10_000, tol=1e-10)  # unpenalised
        clf.fit(s[:, others], s[:, i])
        h[i], J[i, others] = clf.intercept_[0], clf.coef_[0]
    return h, (J + J.T) / 2.0  # the two estimates of each J_ij, averaged


def ising_log_likelihood(patterns: np.ndarray, h: np.ndarray, J: np.ndarray) -> float:
    """Exact total log-likelihood (nats) of ``patterns`` (n_samples, N) under the Ising model."""
    s = (np.asarray(patterns) > 0).astype(float)
    n_units = s.shape[1]
    if n_units > MAX_UNITS_EXACT:
        raise ValueError(f"exact Ising likelihood enumerates 2^N patterns: N = {n_units} > "
                         f"{MAX_UNITS_EXACT}")
    states = np.array(list(itertools.product([0.0, 1.0], repeat=n_units)))

    def energy(x: np.ndarray) -> np.ndarray:
        return x @ h + 0.5 * np.einsum("ni,ij,nj->n", x, J, x)

    return float(energy(s).sum() - len(s) * logsumexp(energy(states)))
