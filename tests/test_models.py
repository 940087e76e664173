"""GLM / R-GLM kernels against explicit numpy implementations, sampling consistency, parameter
recovery from simulated data, observation-model gradients and determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import select_units
from scipy import stats
from scipy.special import expit

from neurorec.core.errors import DataError, NotFittedError
from neurorec.core.observations import Bernoulli, Poisson
from neurorec.data.recording import BinnedTrials, TrialLayout
from neurorec.families import GLM, RGLM
from neurorec.families.glm.glm import history_features
from neurorec.families.glm.rglm import linear_recurrence, time_constants
from neurorec.families.glm.spec import GLMSpec, RGLMSpec

BIN = 0.01


def make_data(counts: np.ndarray, condition: np.ndarray, n_conditions: int,
              source: str = "synthetic") -> BinnedTrials:
    n_trials, n_bins, n_units = counts.shape
    return BinnedTrials(
        counts=np.asarray(counts), bin_size=BIN, time=(np.arange(n_bins) + 0.5) * BIN,
        condition=np.asarray(condition, dtype=np.int64),
        condition_table=pd.DataFrame({"direction": 90.0 * np.arange(n_conditions)}),
        is_test=np.zeros(n_trials, dtype=bool),
        unit_ids=np.array([f"u{i}" for i in range(n_units)]), source=source)


def set_fitted(model: GLM, params: dict[str, np.ndarray], n_bins: int, n_units: int,
               n_conditions: int) -> GLM:
    """Give a model parameters by hand, as ``neurorec.workflows.simulate.load_fitted`` does."""
    model.params_ = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    model.n_bins_, model.n_units_, model.n_conditions_ = n_bins, n_units, n_conditions
    model.bin_size_ = BIN
    return model


def numpy_glm_drive(model: GLM, counts: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """The GLM equation of ``neurorec/models/glm.py``'s docstring, written out with loops."""
    p = model.params_
    n_trials, n_bins, n_units = counts.shape
    drive = np.zeros(counts.shape)
    if "beta" in p:
        S = model.stimulus_basis(n_bins)
        for b in range(n_trials):
            drive[b] = S @ p["beta"][:, condition[b]].T
    hist = model.history_filters()  # (unit, lag); lag index 0 is one bin back
    coup = model.coupling_filters()  # (post, pre, lag)
    for b in range(n_trials):
        for t in range(n_bins):
            for i in range(n_units):
                if hist is not None:
                    for lag in range(1, hist.shape[1] + 1):
                        if t - lag >= 0:
                            drive[b, t, i] += hist[i, lag - 1] * counts[b, t - lag, i]
                if coup is not None:
                    for j in range(n_units):
                        for lag in range(1, coup.shape[2] + 1):
                            if j != i and t - lag >= 0:
                                drive[b, t, i] += coup[i, j, lag - 1] * counts[b, t - lag, j]
    return drive


@pytest.fixture
def small_glm():
    """A GLM with stimulus drive, self-history and coupling, parameters set by hand."""
    rng = np.random.default_rng(0)
    n_units, n_cond, n_bins = 4, 2, 25
    spec = GLMSpec(stimulus={"n_basis": 4}, history={"n_basis": 3, "duration": 0.05},
                   coupling={"enabled": True, "n_basis": 2, "duration": 0.03})
    model = GLM(spec, seed=0)
    params = {"beta": np.log(0.2) + 0.5 * rng.standard_normal((n_units, n_cond, 4)),
              "h": -0.8 + 0.3 * rng.standard_normal((n_units, 3)),
              "J": 0.3 * rng.standard_normal((n_units, n_units, 2))}
    set_fitted(model, params, n_bins, n_units, n_cond)
    counts = rng.poisson(0.3, size=(6, n_bins, n_units))
    condition = np.array([0, 1, 0, 1, 1, 0])
    return model, make_data(counts, condition, n_cond)


# ---------------------------------------------------------------------- kernels
def test_history_features_equal_numpy_convolution():
    rng = np.random.default_rng(1)
    y = rng.poisson(0.7, size=(3, 20, 4)).astype(float)
    basis = rng.standard_normal((6, 3))  # row l weighs lag l + 1
    out = history_features(torch.as_tensor(y), torch.as_tensor(basis)).numpy()
    assert out.shape == (3, 20, 4, 3)
    for b in range(3):
        for j in range(4):
            for k in range(3):
                kernel = np.concatenate([[0.0], basis[:, k]])  # no weight on lag 0: causal
                expected = np.convolve(y[b, :, j], kernel)[:20]  # zeros before trial start
                np.testing.assert_allclose(out[b, :, j, k], expected, rtol=1e-13, atol=1e-13)
    # each trial's history starts empty: the first bin never sees the previous trial
    np.testing.assert_array_equal(out[:, 0], 0.0)


def test_linear_recurrence_equals_loop():
    rng = np.random.default_rng(2)
    u = rng.standard_normal((2, 15, 3))
    R = 0.4 * rng.standard_normal((3, 3))
    out = linear_recurrence(torch.as_tensor(u), torch.as_tensor(R)).numpy()
    expected = np.zeros_like(u)
    for b in range(2):
        x = np.zeros(3)
        for t in range(15):
            x = u[b, t] + R @ x
            expected[b, t] = x
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)


def test_time_constants_closed_form():
    eig, tau = time_constants(np.diag([0.5, 0.9]), 0.01)
    np.testing.assert_allclose(eig, [0.9, 0.5])  # sorted by modulus, largest first
    np.testing.assert_allclose(tau, [-0.01 / np.log(0.9), -0.01 / np.log(0.5)], rtol=1e-14)
    r, theta = 0.8, 0.3
    rot = r * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    eig, tau = time_constants(rot, 0.005)
    np.testing.assert_allclose(np.abs(eig), [r, r], rtol=1e-14)
    np.testing.assert_allclose(sorted(np.angle(eig)), [-theta, theta], rtol=1e-13)
    np.testing.assert_allclose(tau, -0.005 / np.log(r), rtol=1e-13)
    # a non-decaying mode has τ = inf, a zero eigenvalue τ = 0
    _, tau = time_constants(np.diag([1.0, 0.0]), 0.01)
    assert tau.tolist() == [math.inf, 0.0]


def test_glm_drive_equals_numpy_equation(small_glm):
    model, data = small_glm
    expected = np.exp(numpy_glm_drive(model, data.counts, data.condition))
    np.testing.assert_allclose(model.predict_rate(data), expected, rtol=1e-12)


def test_rglm_drive_equals_numpy_equation(small_glm):
    glm, data = small_glm
    rng = np.random.default_rng(3)
    dim = 3
    rglm = RGLM(RGLMSpec(**{**glm.spec.model_dump(), "kind": "rglm"}, recurrent={"dim": dim}))
    extra = {"W0": 0.2 * rng.standard_normal((dim, 4)), "R": 0.5 * np.eye(dim),
             "B": 0.3 * rng.standard_normal((4, dim))}
    set_fitted(rglm, {**glm.params_, **extra}, 25, 4, 2)
    # x_t = W0 y_{t-1} + R x_{t-1}, drive = GLM drive + B x_t
    y = data.counts.astype(float)
    x = np.zeros((len(y), dim))
    latent = np.zeros(y.shape)
    for t in range(y.shape[1]):
        y_prev = y[:, t - 1] if t > 0 else np.zeros_like(y[:, 0])
        x = y_prev @ extra["W0"].T + x @ extra["R"].T
        latent[:, t] = x @ extra["B"].T
    expected = np.exp(numpy_glm_drive(glm, data.counts, data.condition) + latent)
    np.testing.assert_allclose(rglm.predict_rate(data), expected, rtol=1e-12)


@pytest.mark.parametrize("zeroed", ["W0", "B"])
def test_rglm_without_recurrent_input_is_the_glm(small_glm, zeroed):
    glm, data = small_glm
    rng = np.random.default_rng(4)
    dim = 3
    rglm = RGLM(RGLMSpec(**{**glm.spec.model_dump(), "kind": "rglm"}, recurrent={"dim": dim}))
    extra = {"W0": rng.standard_normal((dim, 4)), "R": 0.7 * np.eye(dim),
             "B": rng.standard_normal((4, dim))}
    extra[zeroed] = np.zeros_like(extra[zeroed])
    set_fitted(rglm, {**glm.params_, **extra}, 25, 4, 2)
    np.testing.assert_array_equal(rglm.predict_rate(data), glm.predict_rate(data))
    assert rglm.n_parameters() == glm.n_parameters() + 3 * 4 + 3 * 3 + 4 * 3


# ---------------------------------------------------------------------- sampling
class RecordingObservation:
    """Wraps an observation model and keeps every drive ``sample`` was called with."""

    def __init__(self, obs):
        self.obs, self.drives = obs, []

    def __getattr__(self, name):
        return getattr(self.obs, name)

    def sample(self, drive, generator, *rest):
        self.drives.append(drive.clone())
        return self.obs.sample(drive, generator, *rest)


def test_sample_uses_the_fitted_drive_on_its_own_past(small_glm):
    """Ancestral sampling: the drive at bin t, recomputed from the finished sample, equals the
    drive the sampler used, so no bin saw its own or a future spike."""
    model, _ = small_glm
    condition = np.tile([0, 1], 10)
    recorder = RecordingObservation(model.obs)
    model.obs = recorder
    counts = model.sample(len(condition), seed=3, like=TrialLayout(condition, model.n_bins_))
    model.obs = recorder.obs
    used = torch.stack(recorder.drives, dim=1).numpy()  # (trial, bin, unit)
    assert counts.shape == used.shape == (20, 25, 4)
    assert counts.sum() > 50
    np.testing.assert_allclose(used, numpy_glm_drive(model, counts, condition), rtol=1e-12,
                               atol=1e-12)


def test_sample_seeds(small_glm):
    model, _ = small_glm
    condition = np.array([0, 1, 0, 1])
    like = TrialLayout(condition, model.n_bins_)
    a = model.sample(len(condition), seed=7, like=like)
    np.testing.assert_array_equal(a, model.sample(len(condition), seed=7, like=like))
    assert not np.array_equal(a, model.sample(len(condition), seed=8, like=like))
    assert a.shape == (4, 25, 4)
    assert (a >= 0).all() and (a == np.round(a)).all()


@pytest.mark.parametrize("observation", ["poisson", "bernoulli"])
def test_sample_mean_equals_rate_without_history(observation):
    """Without history the bins are independent: the mean of N samples is within 5 standard
    errors (sqrt(var / N), Poisson var = rate, Bernoulli var = p(1-p)) of the predicted mean."""
    rng = np.random.default_rng(5)
    link = "exp" if observation == "poisson" else "logistic"
    spec = GLMSpec(observation=observation, link=link, stimulus={"n_basis": 5},
                   history={"enabled": False})
    model = set_fitted(GLM(spec), {"beta": -1.5 + rng.standard_normal((3, 2, 5))}, 30, 3, 2)
    n = 3000
    condition = np.repeat([0, 1], n)
    samples = model.sample(len(condition), seed=11, like=TrialLayout(condition, model.n_bins_))
    rates = model.predict_rate(make_data(np.zeros((2, 30, 3)), np.array([0, 1]), 2))
    for c in (0, 1):
        mean = samples[condition == c].mean(axis=0)
        var = rates[c] if observation == "poisson" else rates[c] * (1 - rates[c])
        z = (mean - rates[c]) / np.sqrt(var / n)
        assert np.abs(z).max() < 5.0


# ---------------------------------------------------------------------- parameter recovery
# Rates and history chosen so that every lag sees hundreds of spike pairs: the 5-SE check
# relies on the MLE's asymptotic normality, which fails for lags with a handful of events
# (a refractory lag with ~4 expected pairs has an MLE near -inf about as often as not).
N_UNITS, N_COND, N_BINS, N_TRAIN, N_TEST = 10, 2, 50, 600, 200


@pytest.fixture(scope="module")
def recovery():
    """Counts sampled from a GLM with stimulus drive and refractory self-history; a fresh
    model of the same spec fitted to them by unpenalised maximum likelihood."""
    rng = np.random.default_rng(6)
    spec = GLMSpec(stimulus={"n_basis": 5}, history={"n_basis": 3, "duration": 0.05},
                   fit={"early_stopping": False, "max_iter": 5000, "tol": 1e-8})
    beta = (np.log(rng.uniform(0.15, 0.4, N_UNITS))[:, None, None]
            + 0.4 * rng.standard_normal((N_UNITS, N_COND, 5)))
    h = np.array([-1.0, -0.5, -0.2]) + 0.2 * rng.standard_normal((N_UNITS, 3))
    truth = set_fitted(GLM(spec), {"beta": beta, "h": h}, N_BINS, N_UNITS, N_COND)
    condition = np.arange(N_TRAIN + N_TEST) % N_COND
    counts = truth.sample(len(condition), seed=1, like=TrialLayout(condition, truth.n_bins_))
    train = make_data(counts[:N_TRAIN], condition[:N_TRAIN], N_COND, "train")
    test = make_data(counts[N_TRAIN:], condition[N_TRAIN:], N_COND, "test")
    fitted = GLM(spec, seed=0).fit(train, progress=False)
    return truth, fitted, train, test


def fisher_covariance(model: GLM, data: BinnedTrials, unit: int) -> np.ndarray:
    """Inverse Fisher information of one unit's (beta, h) under Poisson-exp, at ``model``'s
    parameters: (X' diag(rate) X)⁻¹ with X the unit's design written out by hand."""
    n_trials, n_bins, _ = data.counts.shape
    S = model.stimulus_basis(n_bins)
    X_stim = np.zeros((n_trials, n_bins, N_COND, S.shape[1]))
    X_stim[np.arange(n_trials), :, data.condition, :] = S
    H = history_features(torch.as_tensor(data.counts[:, :, [unit]], dtype=torch.float64),
                         torch.as_tensor(model.history_basis(BIN))).numpy()[:, :, 0, :]
    X = np.concatenate([X_stim.reshape(n_trials * n_bins, -1),
                        H.reshape(n_trials * n_bins, -1)], axis=1)
    rate = model.predict_rate(data)[:, :, unit].reshape(-1)
    return np.linalg.inv(X.T @ (rate[:, None] * X))


def test_fit_converges(recovery):
    _, fitted, _, _ = recovery
    assert fitted.fit_report_.converged, fitted.fit_report_.reason
    assert fitted.fit_report_.max_abs_grad < 1e-8


def test_recovered_filters_within_standard_errors(recovery):
    """The MLE is asymptotically N(truth, I⁻¹): every recovered history filter value and
    stimulus drive value lies within 5 standard errors (I⁻¹ at the true parameters, mapped
    through the bases) of the truth. 5 SE keeps the chance of a false failure over the
    ~1000 correlated comparisons below 1e-3, while a wrong lag or sign of the history moves
    values by many SE."""
    truth, fitted, train, _ = recovery
    H = truth.history_basis(BIN)  # (lag, basis)
    S = truth.stimulus_basis(N_BINS)  # (bin, basis)
    n_beta = N_COND * S.shape[1]
    worst_h, worst_s = 0.0, 0.0
    for i in range(N_UNITS):
        cov = fisher_covariance(truth, train, i)
        cov_h = cov[n_beta:, n_beta:]
        se_h = np.sqrt(np.einsum("lk,km,lm->l", H, cov_h, H))
        err_h = fitted.history_filters()[i] - truth.history_filters()[i]
        worst_h = max(worst_h, np.abs(err_h / se_h).max())
        for c in range(N_COND):
            block = slice(c * S.shape[1], (c + 1) * S.shape[1])
            se_s = np.sqrt(np.einsum("tk,km,tm->t", S, cov[block, block], S))
            err_s = fitted.stimulus_drive()[i, c] - truth.stimulus_drive()[i, c]
            worst_s = max(worst_s, np.abs(err_s / se_s).max())
    assert worst_h < 5.0
    assert worst_s < 5.0


def test_recovered_model_predicts_held_out_trials(recovery):
    truth, fitted, _, test = recovery
    true_score, fitted_score = truth.score(test), fitted.score(test)
    assert true_score > 0.1
    assert fitted_score >= 0.95 * true_score
    # the training objective at the fit is no worse than at the truth (it is the MLE)
    assert fitted.log_likelihood(recovery[2]) >= truth.log_likelihood(recovery[2])


# ---------------------------------------------------------------------- observation models
def test_poisson_exp_nll_value_and_gradient():
    y = torch.tensor([0.0, 1.0, 3.0, 7.0], dtype=torch.float64)
    d = torch.tensor([-2.0, 0.1, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
    nll = Poisson("exp").nll(y, d)
    np.testing.assert_allclose(nll.detach().numpy(),
                               -stats.poisson.logpmf(y.numpy(), np.exp(d.detach().numpy())),
                               rtol=1e-13)
    (grad,) = torch.autograd.grad(nll.sum(), d)
    np.testing.assert_allclose(grad.numpy(), np.exp(d.detach().numpy()) - y.numpy(), rtol=1e-13)


def test_poisson_softplus_nll_value_and_gradient():
    y = torch.tensor([0.0, 1.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    d = torch.tensor([-3.0, 0.0, 1.5, 4.0, -40.0], dtype=torch.float64, requires_grad=True)
    obs = Poisson("softplus")
    nll = obs.nll(y, d)
    dn = d.detach().numpy()
    lam = np.logaddexp(0.0, dn)  # softplus
    # far below -30, softplus(d) = exp(d) to double precision
    np.testing.assert_allclose(nll.detach().numpy(), -stats.poisson.logpmf(y.numpy(), lam),
                               rtol=1e-12)
    (grad,) = torch.autograd.grad(nll.sum(), d)
    # d/dd [softplus(d) - y log softplus(d)] = sigmoid(d) (1 - y / softplus(d))
    np.testing.assert_allclose(grad.numpy(), expit(dn) * (1 - y.numpy() / lam), rtol=1e-10)
    assert torch.autograd.gradcheck(lambda x: obs.nll(y[:4], x).sum(),
                                    (d[:4].detach().clone().requires_grad_(),))


def test_bernoulli_nll_value_and_gradient():
    y = torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    d = torch.tensor([-2.0, 0.3, 3.0, 1.0], dtype=torch.float64, requires_grad=True)
    obs = Bernoulli()
    nll = obs.nll(y, d)
    p = expit(d.detach().numpy())
    np.testing.assert_allclose(nll.detach().numpy(), -stats.bernoulli.logpmf(y.numpy(), p),
                               rtol=1e-13)
    (grad,) = torch.autograd.grad(nll.sum(), d)
    np.testing.assert_allclose(grad.numpy(), p - y.numpy(), rtol=1e-13)
    assert obs.prepare(torch.tensor([0.0, 1.0, 4.0])).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(("observation", "link"), [("poisson", "exp"), ("poisson", "softplus"),
                                                   ("bernoulli", "logistic")])
def test_model_objective_gradient_matches_finite_differences(small_glm, observation, link):
    glm, data = small_glm
    spec = glm.spec.model_copy(update={"observation": observation, "link": link,
                                       "penalty": glm.spec.penalty.model_copy(
                                           update={"l2": 0.1, "l1": 0.05,
                                                   "stimulus_l2": 0.1})})
    model = GLM(spec)
    model.stimulus_centre_ = 0.5 * glm.params_["beta"]  # any centre: fit sets it from data
    design = model._design(data)
    names = sorted(glm.params_)
    shapes = [glm.params_[k].shape for k in names]

    def objective(flat):
        parts, i = {}, 0
        for k, shape in zip(names, shapes, strict=True):
            n = int(np.prod(shape))
            parts[k] = flat[i: i + n].reshape(shape)
            i += n
        return model._objective(parts, design)

    flat = torch.as_tensor(np.concatenate([glm.params_[k].ravel() for k in names]) * 0.5,
                           dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(objective, (flat,), eps=1e-6, atol=1e-7, rtol=1e-5)


# ---------------------------------------------------------------------- errors
def test_not_fitted_error(small_glm):
    _, data = small_glm
    model = GLM(GLMSpec())
    with pytest.raises(NotFittedError, match=r"GLM: call fit\(\) before using the model"):
        model.predict_rate(data)
    with pytest.raises(NotFittedError, match=r"RGLM: call fit\(\)"):
        RGLM(RGLMSpec()).time_constants()


def test_shape_mismatch_is_a_data_error(small_glm):
    model, data = small_glm
    wrong = make_data(data.counts[:, :, :3], data.condition, 2, "other.nwb")
    with pytest.raises(DataError, match=r"^other\.nwb: counts: model was fitted to 25 bins × 4 "
                                        r"units × 2 conditions, got 25 × 3 × 2$"):
        model.predict_rate(wrong)
    with pytest.raises(DataError, match=r"got 20 × 4 × 2$"):
        model.predict_rate(make_data(data.counts[:, :20], data.condition, 2))


def test_fit_needs_two_trials(small_glm):
    _, data = small_glm
    one = make_data(data.counts[:1], data.condition[:1], 2, "tiny")
    with pytest.raises(DataError, match=r"^tiny: counts: expected ≥ 2 trials × bins × units, "
                                        r"got shape \(1, 25, 4\)$"):
        GLM(GLMSpec()).fit(one, progress=False)


# ---------------------------------------------------------------------- determinism
def test_rglm_fit_is_deterministic(v1_session0):
    train = v1_session0.subset(~v1_session0.is_test)
    data = select_units(train.subset(np.arange(len(train.counts)) < 80), np.array([0, 3, 21]))
    spec = RGLMSpec(recurrent={"dim": 2}, fit={"max_iter": 10, "early_stopping": False})
    a = RGLM(spec, seed=3).fit(data, progress=False)
    b = RGLM(spec, seed=3).fit(data, progress=False)
    assert sorted(a.params_) == ["B", "R", "W0", "beta", "h"]
    for k in a.params_:
        np.testing.assert_array_equal(a.params_[k], b.params_[k])
    c = RGLM(spec, seed=4).fit(data, progress=False)
    assert not np.array_equal(a.params_["W0"], c.params_["W0"])
