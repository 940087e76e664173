"""The GLM with recurrence, history and coupling off is per-neuron Poisson regression: its fit
must equal statsmodels' IRLS on the same design, on real V1 data."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from conftest import select_units

from neurorec.core.bases import raised_cosine_linear
from neurorec.families import GLM
from neurorec.families.glm.spec import GLMSpec

N_BASIS = 6


def stimulus_design(condition: np.ndarray, n_conditions: int, basis: np.ndarray) -> np.ndarray:
    """Rows (trial, bin) × columns (condition, basis): one-hot condition ⊗ basis, built by hand."""
    n_trials, n_bins = len(condition), basis.shape[0]
    X = np.zeros((n_trials, n_bins, n_conditions, basis.shape[1]))
    X[np.arange(n_trials), :, condition, :] = basis[None]
    return X.reshape(n_trials * n_bins, -1)


@pytest.fixture(scope="module")
def fitted(v1_session3):
    train = v1_session3.subset(~v1_session3.is_test)
    # Units whose every condition has spikes under every bump, so the MLE is finite.
    basis = raised_cosine_linear(train.counts.shape[1], N_BASIS)
    X = stimulus_design(train.condition, train.n_conditions, basis)
    y = train.counts.reshape(-1, train.counts.shape[2]).astype(float)
    support = X.T @ y  # (columns, units): basis-weighted spikes per column
    units = np.flatnonzero((support > 5).all(axis=0))
    assert len(units) >= 10
    train = select_units(train, units)
    spec = GLMSpec(stimulus={"n_basis": N_BASIS}, history={"enabled": False},
                   penalty={"stimulus_l2": 0.0},  # the plain MLE, as statsmodels
                   fit={"early_stopping": False, "max_iter": 3000, "tol": 1e-10})
    model = GLM(spec).fit(train, progress=False)
    y = y[:, units]
    refs = [sm.GLM(y[:, i], X, family=sm.families.Poisson()).fit(tol=1e-12, maxiter=200)
            for i in range(y.shape[1])]
    return model, train, refs


def test_coefficients_equal_statsmodels(fitted):
    model, _, refs = fitted
    assert model.fit_report_.converged, model.fit_report_.reason
    ours = model.params_["beta"].reshape(len(refs), -1)  # (unit, condition * basis)
    for i, ref in enumerate(refs):
        assert ref.converged
        np.testing.assert_allclose(ours[i], ref.params, rtol=1e-5,
                                   atol=1e-5 * np.abs(ref.params).max())


def test_log_likelihood_equals_statsmodels(fitted):
    model, train, refs = fitted
    # statsmodels' Poisson llf includes log y!, as ours does
    assert model.log_likelihood(train) == pytest.approx(sum(r.llf for r in refs), rel=1e-8)


def test_per_unit_log_likelihood_equals_statsmodels(fitted):
    model, train, refs = fitted
    from neurorec.core.metrics import poisson_nll

    per_unit = -poisson_nll(train.counts, model.predict_rate(train)).sum(axis=(0, 1))
    np.testing.assert_allclose(per_unit, [r.llf for r in refs], rtol=1e-8)


@pytest.mark.parametrize("observation,link", [("poisson", "exp"), ("bernoulli", "logistic")])
def test_newton_and_lbfgs_reach_the_same_penalised_optimum(observation, link):
    """The batched Newton path and the L-BFGS path minimise the same objective: the full GLM
    (stimulus ridge centred on the mean rate, history, coupling, in-bin A, l2)."""
    from neurorec.data import bin_trials
    from neurorec.datasets import load

    data = bin_trials(load("v1_gratings:14"), 0.01, test_fraction=0.2, seed=0)
    train = select_units(data.subset(~data.is_test), np.arange(5))
    common = dict(observation=observation, link=link, stimulus={"n_basis": 4},
                  history={"n_basis": 3, "duration": 0.05},
                  coupling={"enabled": True, "n_basis": 2, "duration": 0.03},
                  correlated={"enabled": True}, penalty={"l2": 1e-4, "stimulus_l2": 1e-6})
    newton = GLM(GLMSpec(**common, fit={"solver": "newton"})).fit(train, progress=False)
    lbfgs = GLM(GLMSpec(**common, fit={"solver": "lbfgs", "early_stopping": False,
                                       "max_iter": 5000, "tol": 1e-10})).fit(train,
                                                                            progress=False)
    assert newton.fit_report_.converged and newton.fit_report_.reason.startswith("newton")
    for name, w in newton.params_.items():
        np.testing.assert_allclose(w, lbfgs.params_[name], rtol=1e-4,
                                   atol=1e-4 * np.abs(w).max(), err_msg=name)
    assert newton.log_likelihood(train) == pytest.approx(lbfgs.log_likelihood(train), rel=1e-7)
