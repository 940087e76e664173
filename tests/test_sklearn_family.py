"""neurorec.sklearn's estimators are adapters over the GLM family: on the same data their
coefficients, predictions and scores equal the family fit's to 1e-8 (scores against
scikit-learn's D² and the project's bits/spike)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import d2_tweedie_score

from neurorec.core.metrics import bits_per_spike
from neurorec.data.recording import BinnedTrials
from neurorec.families.base import model_for
from neurorec.families.glm.conformance import v1_small
from neurorec.sklearn import RGLM, BernoulliGLM, PoissonGLM
from neurorec.spec.load import validate_spec


def test_poisson_glm_equals_the_family_glm_on_its_design():
    train, _ = v1_small()
    spec = validate_spec({"kind": "glm", "data": {"bin_size": "10 ms"},
                          "stimulus": {"n_basis": 4}, "history": {"enabled": False},
                          "penalty": {"l2": 0.0, "stimulus_l2": 0.0},
                          "fit": {"tol": 1e-12}}, "<test>")
    family = model_for(spec, seed=0).fit(train, progress=False)
    K, T, N = train.counts.shape
    basis = family.stimulus_basis(T)  # (T, n_basis), the family's own stimulus basis
    onehot = np.eye(train.n_conditions)[train.condition]
    X = (onehot[:, None, :, None] * basis[None, :, None, :]).reshape(K * T, -1)
    Y = train.counts.reshape(K * T, N).astype(float)
    sk = PoissonGLM(alpha=0.0, fit_intercept=False, tol=1e-12, max_iter=200).fit(X, Y)
    ours = family.predict_rate(train).reshape(K * T, N)
    rel = np.abs(sk.predict(X) - ours).max() / ours.max()
    assert rel < 1e-8, rel


# ---------------------------------------------------------------------------------------------
# the estimators are adapters: fitting one = fitting the family model on the same data


def _family_spec(kind: str, alpha: float, n_units: int, **extra):
    """The family spec that a design matrix with these settings is (written out here, not
    taken from neurorec.sklearn): X as a one-lag stimulus filter, the Bias term as intercept,
    per-unit alpha as l2 = alpha / (2 n_units) on the mean NLL over bins and units."""
    l2 = alpha / (2 * n_units)
    return validate_spec({
        "kind": kind, "stimulus": {"enabled": False}, "history": {"enabled": False},
        "stimulus_filter": {"enabled": True, "n_basis": 1, "duration": 1.0},
        "penalty": {"l2": l2, "stimulus_l2": l2}, **extra}, "<test>")


def _trials_by_hand(X, Y, lengths):
    """BinnedTrials of consecutive row blocks of ``lengths``, padded with masked bins."""
    n_trials, T = len(lengths), max(lengths)
    counts = np.zeros((n_trials, T, Y.shape[1]))
    stim = np.zeros((n_trials, T, X.shape[1]))
    mask = np.zeros((n_trials, T), dtype=bool)
    start = 0
    for i, n in enumerate(lengths):
        counts[i, :n], stim[i, :n], mask[i, :n] = Y[start:start + n], X[start:start + n], True
        start += n
    return BinnedTrials(counts=counts, bin_size=1.0, time=np.arange(T) + 0.5,
                        condition=np.zeros(n_trials, dtype=int),
                        condition_table=pd.DataFrame({"c": [0]}),
                        is_test=np.zeros(n_trials, dtype=bool), unit_ids=np.arange(Y.shape[1]),
                        source="<test>", stimulus=stim, mask=None if mask.all() else mask)


def _close(a, b, tol=1e-8):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.abs(a - b).max() <= tol * max(1.0, np.abs(b).max()), np.abs(a - b).max()


@pytest.mark.parametrize("observation", ["poisson", "bernoulli"])
def test_glm_estimators_equal_the_family_fit(observation):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 4))
    Y = rng.poisson(np.exp(0.4 * X[:, :1] - 0.3 * X[:, 1:2] - 0.5), size=(300, 3))
    if observation == "bernoulli":
        Y = (Y > 0).astype(int)
        est = BernoulliGLM(alpha=1e-2).fit(X, Y)
    else:
        est = PoissonGLM(alpha=1e-2).fit(X, Y)
    link = "logistic" if observation == "bernoulli" else "exp"
    spec = _family_spec("glm", 1e-2, 3, observation=observation, link=link,
                        fit={"tol": 1e-10, "max_iter": 100, "early_stopping": False})
    data = _trials_by_hand(X, Y.astype(float), [1] * len(X))  # every row a one-bin trial
    family = model_for(spec, seed=0).fit(data, progress=False)
    _close(est.coef_, family.params_["k"][:, :, 0])
    _close(est.intercept_, family.params_["bias"])
    rates = family.predict_rate(data)[:, 0]
    mean = est.predict_mean(X) if observation == "bernoulli" else est.predict(X)
    _close(mean, rates)
    _close(est.bits_per_spike(X, Y), bits_per_spike(Y, rates, observation))
    if observation == "poisson":  # D² per unit = scikit-learn's own, averaged
        ref = np.mean([d2_tweedie_score(Y[:, u], rates[:, u], power=1) for u in range(3)])
        _close(est.score(X, Y), ref)


def test_rglm_equals_the_family_rglm_fit():
    rng = np.random.default_rng(4)
    lengths = [40, 65, 55]
    n = sum(lengths)
    X = rng.standard_normal((n, 3))
    Y = rng.poisson(np.exp(0.3 * X[:, :1] - 0.7), size=(n, 4)).astype(float)
    groups = np.repeat([7, 2, 7], lengths)  # a repeated value after another is a new trial
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = RGLM(dim=2, alpha=1e-3, max_iter=10, init_scale=0.2, random_state=5).fit(
            X, Y, groups=groups)
        spec = _family_spec("rglm", 1e-3, 4, recurrent={"dim": 2, "init_scale": 0.2 / 2},
                            fit={"tol": 1e-5, "max_iter": 10, "early_stopping": False})
        data = _trials_by_hand(X, Y, lengths)
        family = model_for(spec, seed=5).fit(data, progress=False)
    p = family.params_
    for ours, name in ((est.coef_, "k"), (est.intercept_, "bias"), (est.W0_, "W0"),
                       (est.R_, "R"), (est.B_, "B")):
        _close(ours, p[name][:, :, 0] if name == "k" else p[name])
    assert np.abs(est.B_).max() > 1e-3  # the latent is in use
    rates = family.predict_rate(data)[data.mask]
    _close(est.predict(X, Y, groups), rates)
    _close(est.hidden_state(X, Y, groups), family.hidden_state(data)[data.mask])
    _close(est.bits_per_spike(X, Y, groups), bits_per_spike(Y, rates))
    ref = np.mean([d2_tweedie_score(Y[:, u], rates[:, u], power=1) for u in range(4)])
    _close(est.score(X, Y, groups), ref)
