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
