"""The coupled GLM (stimulus + spike history + coupling) is still per-unit Poisson regression
once the lagged features are written out: its fit must equal statsmodels on a design built by
hand with numpy convolutions, on real V1 data."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from conftest import select_units
from test_glm_statsmodels import stimulus_design

from neurorec.core.bases import raised_cosine_linear, raised_cosine_log
from neurorec.families import GLM
from neurorec.families.glm.spec import GLMSpec

N_BASIS, N_HIST, N_COUP, LAGS = 4, 3, 2, 5  # 5 lags of 10 ms for history and coupling


def lagged(counts: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(trials, bins, n_basis): Σ_l basis[l, k] y(t - l - 1), zero before the trial start."""
    n_trials, n_bins = counts.shape
    out = np.zeros((n_trials, n_bins, basis.shape[1]))
    for k in range(basis.shape[1]):
        kernel = np.concatenate([[0.0], basis[:, k]])  # lag 0 carries no weight
        for b in range(n_trials):
            out[b, :, k] = np.convolve(counts[b], kernel)[:n_bins]
    return out


@pytest.fixture(scope="module")
def fitted(v1_session3):
    train = v1_session3.subset(~v1_session3.is_test)
    basis = raised_cosine_linear(train.counts.shape[1], N_BASIS)
    X_stim = stimulus_design(train.condition, train.n_conditions, basis)
    rate = train.counts.mean(axis=(0, 1))
    units = np.argsort(-rate)[:5]  # five high-rate units: a finite, well-determined MLE
    train = select_units(train, units)
    spec = GLMSpec(stimulus={"n_basis": N_BASIS},
                   history={"n_basis": N_HIST, "duration": LAGS * 0.01},
                   coupling={"enabled": True, "n_basis": N_COUP, "duration": LAGS * 0.01},
                   penalty={"stimulus_l2": 0.0},  # the plain MLE, as statsmodels
                   fit={"early_stopping": False, "max_iter": 3000, "tol": 1e-10})
    model = GLM(spec).fit(train, progress=False)
    hist, coup = raised_cosine_log(LAGS, N_HIST), raised_cosine_log(LAGS, N_COUP)
    n_units = train.counts.shape[2]
    feats_h = [lagged(train.counts[:, :, j], hist).reshape(-1, N_HIST) for j in range(n_units)]
    feats_c = [lagged(train.counts[:, :, j], coup).reshape(-1, N_COUP) for j in range(n_units)]
    refs = []
    for i in range(n_units):
        others = [feats_c[j] for j in range(n_units) if j != i]
        X = np.concatenate([X_stim, feats_h[i], *others], axis=1)
        y = train.counts[:, :, i].reshape(-1).astype(float)
        refs.append(sm.GLM(y, X, family=sm.families.Poisson()).fit(tol=1e-12, maxiter=200))
    return model, train, refs


def test_coupled_glm_equals_statsmodels(fitted):
    model, _, refs = fitted
    assert model.fit_report_.converged, model.fit_report_.reason
    n_units = len(refs)
    n_stim = model.params_["beta"][0].size
    for i, ref in enumerate(refs):
        assert ref.converged
        J = [model.params_["J"][i, j] for j in range(n_units) if j != i]
        ours = np.concatenate([model.params_["beta"][i].ravel(), model.params_["h"][i], *J])
        assert ours.shape == ref.params.shape == (n_stim + N_HIST + (n_units - 1) * N_COUP,)
        np.testing.assert_allclose(ours, ref.params, rtol=1e-5,
                                   atol=1e-5 * np.abs(ref.params).max())


def test_coupled_glm_log_likelihood_equals_statsmodels(fitted):
    model, train, refs = fitted
    assert model.log_likelihood(train) == pytest.approx(sum(r.llf for r in refs), rel=1e-8)
