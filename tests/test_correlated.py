"""Correlated observations inside a bin: exact likelihoods against closed forms and scipy,
and the ancestral sampler against exact moments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from test_models import make_data, set_fitted

from neurorec.families import GLM
from neurorec.families.glm.spec import GLMSpec


def correlated_model(observation: str, link: str, bias: np.ndarray, A: np.ndarray,
                     order: np.ndarray, **extra: np.ndarray) -> GLM:
    spec = GLMSpec(observation=observation, link=link, stimulus={"enabled": False},
                   history={"enabled": False}, correlated={"enabled": True, "order": "given"})
    model = set_fitted(GLM(spec), {"bias": bias, "A": A, **extra}, 6, len(bias), 1)
    model.unit_order_ = order
    return model


def test_gaussian_equals_full_covariance_gaussian():
    """(I - A) y ~ N(μ, D) with A strictly lower triangular in the unit order is
    y ~ N((I-A)⁻¹ μ, (I-A)⁻¹ D (I-A)⁻ᵀ): the same log-likelihood for every bin."""
    rng = np.random.default_rng(0)
    n = 4
    order = np.array([2, 0, 3, 1])
    rank = np.argsort(order)
    A = rng.normal(0, 0.5, (n, n)) * (rank[None, :] < rank[:, None])
    mu, log_sigma = rng.normal(0, 1, n), rng.normal(-0.5, 0.2, n)
    model = correlated_model("gaussian", "identity", mu, A, order, log_sigma=log_sigma)
    y = rng.normal(0, 1.5, (7, 6, n))
    data = make_data(y, np.zeros(7, dtype=int), 1)
    inv = np.linalg.inv(np.eye(n) - A)
    cov = inv @ np.diag(np.exp(2 * log_sigma)) @ inv.T
    expected = stats.multivariate_normal(inv @ mu, cov).logpdf(y.reshape(-1, n)).sum()
    assert model.log_likelihood(data) == pytest.approx(expected, rel=1e-12)


def test_correlated_poisson_likelihood_is_product_of_conditionals():
    rng = np.random.default_rng(1)
    n = 3
    order = np.array([1, 2, 0])
    rank = np.argsort(order)
    A = rng.normal(0, 0.3, (n, n)) * (rank[None, :] < rank[:, None])
    bias = np.log([0.4, 0.8, 0.2])
    model = correlated_model("poisson", "exp", bias, A, order)
    y = rng.poisson(0.5, (5, 6, n)).astype(float)
    data = make_data(y, np.zeros(5, dtype=int), 1)
    flat = y.reshape(-1, n)
    expected = sum(stats.poisson.logpmf(flat[:, i], np.exp(bias[i] + flat @ A[i])).sum()
                   for i in range(n))
    assert model.log_likelihood(data) == pytest.approx(expected, rel=1e-12)


def test_sampler_matches_exact_moments():
    """y1 ~ Poisson(λ1); y2 | y1 ~ Poisson(exp(c2 + a y1)): E[y2] = e^{c2} exp(λ1 (e^a − 1)),
    E[y1 y2] = λ1 e^{c2 + a} exp(λ1 (e^a − 1)); sample means within 5 standard errors."""
    lam1, c2, a = 0.7, np.log(0.5), 0.4
    A = np.array([[0.0, 0.0], [a, 0.0]])
    model = correlated_model("poisson", "exp", np.array([np.log(lam1), c2]), A, np.arange(2))
    n_trials = 4000
    y = model.sample(n_trials, seed=3).reshape(-1, 2)  # one condition: all trials condition 0
    growth = np.exp(lam1 * (np.exp(a) - 1))
    for values, mean in ((y[:, 0], lam1), (y[:, 1], np.exp(c2) * growth),
                         (y[:, 0] * y[:, 1], lam1 * np.exp(c2 + a) * growth)):
        se = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - mean) < 5 * se


def test_one_unit_cannot_be_correlated():
    from neurorec.core.errors import DataError

    spec = GLMSpec(stimulus={"enabled": False}, history={"enabled": False},
                   correlated={"enabled": True})
    data = make_data(np.ones((4, 6, 1)), np.zeros(4, dtype=int), 1)
    with pytest.raises(DataError, match="correlated observations need ≥ 2 units"):
        GLM(spec).fit(data, progress=False)
