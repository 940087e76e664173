"""Co-smoothing: co-bps against a hand computation, the held-in/held-out split, GLM/R-GLM
co-smoothing mode (held-out spikes provably enter no prediction), the smoothing baseline
against statsmodels, the GPFA baseline on real V1 data, and the data-constrained ct-RNN
(BPTT gradient vs finite differences, recovery of a known network's rates)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from neurorec.core.errors import DataError
from neurorec.data.recording import BinnedTrials
from neurorec.families import model_for
from neurorec.families.ctrnn_obs.model import CTRNNObs, ObservedCTRNN
from neurorec.families.ctrnn_obs.spec import CTRNNObsSpec
from neurorec.families.glm.spec import RGLMSpec
from neurorec.spec import validate_spec
from neurorec.workflows.cosmoothing import co_bps, cosmoothing_metrics, heldout_mask

BIN = 0.01


def make_data(counts: np.ndarray, condition: np.ndarray, n_conditions: int) -> BinnedTrials:
    n_trials, n_bins, n_units = counts.shape
    return BinnedTrials(
        counts=np.asarray(counts), bin_size=BIN, time=(np.arange(n_bins) + 0.5) * BIN,
        condition=np.asarray(condition, dtype=np.int64),
        condition_table=pd.DataFrame({"direction": 90.0 * np.arange(n_conditions)}),
        is_test=np.zeros(n_trials, dtype=bool),
        unit_ids=np.array([f"u{i}" for i in range(n_units)]), source="synthetic")


# --------------------------------------------------------------------------- co-bps
def test_co_bps_matches_hand_computation():
    counts = np.array([[[0, 2], [1, 0]], [[3, 1], [0, 1]]])  # 2 trials × 2 bins × 2 units
    rates = np.array([[[0.5, 1.5], [0.8, 0.2]], [[2.0, 0.7], [0.1, 0.9]]])
    y, r = counts.reshape(-1, 2), rates.reshape(-1, 2)

    def nll(k, lam):  # Poisson NLL with log k!
        return lam - k * math.log(lam) + math.lgamma(k + 1)

    mean = y.mean(axis=0)  # NLB null: each unit's mean count over the evaluated bins
    gain = sum(nll(y[b, i], mean[i]) - nll(y[b, i], r[b, i]) for b in range(4) for i in range(2))
    assert co_bps(counts, rates) == pytest.approx(gain / (y.sum() * math.log(2)), rel=1e-12)
    train_mean = np.array([1.0, 0.5])
    gain_t = sum(nll(y[b, i], train_mean[i]) - nll(y[b, i], r[b, i])
                 for b in range(4) for i in range(2))
    assert co_bps(counts, rates, train_mean) == pytest.approx(gain_t / (8 * math.log(2)),
                                                              rel=1e-12)
    # the test-trial mean is the best constant: a training-trial null can only look worse
    assert co_bps(counts, rates, train_mean) >= co_bps(counts, rates)
    # predicting the null itself scores exactly 0
    assert co_bps(counts, np.broadcast_to(mean, counts.shape)) == pytest.approx(0, abs=1e-12)


def test_cosmoothing_metrics_select_heldout_units():
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, size=(3, 5, 4))
    rates = rng.uniform(0.5, 1.5, size=(3, 5, 4))
    ho = np.array([False, True, False, True])
    m = cosmoothing_metrics(counts, rates, rng.poisson(1.0, size=(6, 5, 4)), ho)
    assert m["co_bps"] == pytest.approx(co_bps(counts[..., ho], rates[..., ho]))
    assert m["heldout_units"] == [1, 3] and m["n_heldin_neurons"] == 2


def test_heldout_mask_fraction_list_and_errors():
    ids = np.array(["a", "b", "c", "d", "e", "f", "g", "h"])
    m = heldout_mask(ids, "0.25", seed=3)
    assert m.sum() == 2 and np.array_equal(m, heldout_mask(ids, 0.25, seed=3))
    assert np.flatnonzero(heldout_mask(ids, "b,e")).tolist() == [1, 4]
    assert np.flatnonzero(heldout_mask(np.array([10, 20, 30]), "20")).tolist() == [1]
    assert np.flatnonzero(heldout_mask(ids, "0,7")).tolist() == [0, 7]  # positions
    for bad in ("zz", "1.5", "a,b,c,d,e,f,g,h"):
        with pytest.raises(DataError, match="--heldout-neurons"):
            heldout_mask(ids, bad)


# --------------------------------------------------------------------------- GLM / R-GLM
@pytest.mark.parametrize("kind", ["glm", "rglm"])
def test_glm_cosmoothing_heldout_spikes_never_enter_a_prediction(kind):
    rng = np.random.default_rng(1)
    n_trials, n_bins, n_units = 24, 30, 5
    cond = np.arange(n_trials) % 2
    counts = rng.poisson(0.3 + 0.3 * cond[:, None, None], size=(n_trials, n_bins, n_units))
    data = make_data(counts, cond, 2)
    spec = RGLMSpec.model_validate({
        "kind": "rglm", "stimulus": {"n_basis": 3}, "history": {"n_basis": 2,
                                                                "duration": "30 ms"},
        "coupling": {"enabled": True, "n_basis": 2, "duration": "30 ms"},
        "correlated": {"enabled": True}, "recurrent": {"dim": 2},
        "fit": {"max_iter": 25, "early_stopping": False, "newton_polish": False}})
    if kind == "glm":
        spec = validate_spec(
            {k: v for k, v in spec.model_dump().items() if k != "recurrent"} | {"kind": "glm"})
    heldout = np.array([False, True, False, False, True])
    model = model_for(spec, seed=0)
    model.heldout = heldout
    model.fit(data, progress=False)
    p = model.params_
    assert np.all(p["h"][heldout] == 0)  # no self-history of held-out units
    assert np.all(p["J"][:, heldout] == 0)  # no coupling from them
    assert np.all(p["A"][:, heldout] == 0) or np.all((p["A"] * model._order_mask().numpy())
                                                     [:, heldout] == 0)
    if kind == "rglm":
        assert np.all(p["W0"][:, heldout] == 0)
    assert np.abs(p["J"][:, ~heldout]).sum() > 0  # held-in coupling was fitted
    test = make_data(rng.poisson(0.5, size=(6, n_bins, n_units)), np.arange(6) % 2, 2)
    before = model.predict_rate(test)
    perturbed = test.counts.copy()
    perturbed[..., heldout] = rng.poisson(3.0, size=perturbed[..., heldout].shape)
    after = model.predict_rate(dataclasses.replace(test, counts=perturbed))
    np.testing.assert_array_equal(before, after)  # every unit, bit for bit
    # the test has power: the same perturbation on a held-in unit changes predictions
    other = test.counts.copy()
    other[..., 0] = rng.poisson(3.0, size=other[..., 0].shape)
    assert np.abs(model.predict_rate(dataclasses.replace(test, counts=other)) - before).max() > 0


def test_glm_without_heldout_unchanged_by_the_new_mode():
    rng = np.random.default_rng(2)
    counts = rng.poisson(0.4, size=(10, 20, 3))
    data = make_data(counts, np.arange(10) % 2, 2)
    spec = validate_spec({
        "kind": "glm", "stimulus": {"n_basis": 3}, "history": {"n_basis": 2,
                                                               "duration": "30 ms"},
        "coupling": {"enabled": True, "n_basis": 2, "duration": "30 ms"},
        "fit": {"max_iter": 10, "early_stopping": False, "newton_polish": False}})
    a = model_for(spec, seed=0).fit(data, progress=False)
    b = model_for(spec, seed=0)
    b.heldout = None
    b.fit(data, progress=False)
    np.testing.assert_array_equal(a.predict_rate(data), b.predict_rate(data))


# --------------------------------------------------------------------------- baselines
def test_smoothing_baseline_matches_statsmodels():
    import statsmodels.api as sm

    from neurorec.analysis.smoothing import fit_smoothing, smoothed_features

    rng = np.random.default_rng(3)
    latent = np.exp(np.sin(np.linspace(0, 6, 40))[None, :, None] + rng.normal(0, .3, (20, 1, 1)))
    heldin = rng.poisson(0.3 * latent * np.ones((1, 1, 3)))
    heldout = rng.poisson(0.2 * latent * np.ones((1, 1, 2)))
    fitted = fit_smoothing(heldin, heldout, sigma_bins=3.0, alpha=0.0)
    x = smoothed_features(heldin, 3.0, 1e-4)
    for j in range(2):
        ref = sm.GLM(heldout[..., j].ravel(), sm.add_constant(x),
                     family=sm.families.Poisson()).fit(tol=1e-12)
        np.testing.assert_allclose(fitted.coef_[j], ref.params[1:], rtol=1e-4, atol=1e-5)
        assert fitted.intercept_[j] == pytest.approx(ref.params[0], abs=1e-5)
    np.testing.assert_allclose(fitted.predict(heldin)[..., 0].ravel(),
                               sm.GLM(heldout[..., 0].ravel(), sm.add_constant(x),
                                      family=sm.families.Poisson()).fit(tol=1e-12)
                               .fittedvalues, rtol=1e-4)


def test_gpfa_baseline_deterministic_and_positive_on_v1():
    from neurorec.analysis.gpfa_baseline import fit_gpfa
    from neurorec.data import bin_trials
    from neurorec.datasets import load_v1_gratings

    data = bin_trials(load_v1_gratings(14, max_contamination=0.05), 0.02, test_fraction=0.2,
                      seed=0, window=(0.2, 0.7))  # stimulus period, 20 ms bins: 25 bins
    train, test = data.subset(~data.is_test), data.subset(data.is_test)
    train = train.subset(np.arange(len(train.counts)) < 64)  # small: the test stays fast
    ho = heldout_mask(data.unit_ids, 0.25, 0)
    runs = [fit_gpfa(train.counts[..., ~ho], train.counts[..., ho], data.bin_size, x_dim=2,
                     em_max_iters=8, seed=0) for _ in range(2)]
    preds = [g.predict(test.counts[..., ~ho]) for g in runs]
    np.testing.assert_array_equal(preds[0], preds[1])
    assert co_bps(test.counts[..., ho], preds[0]) > 0.0


# --------------------------------------------------------------------------- ct-RNN
def small_spec(**extra) -> CTRNNObsSpec:
    base = {"kind": "ctrnn_obs", "data": {"bin_size": "10 ms"},
            "network": {"n_units": 4, "tau": "20 ms", "dt": "10 ms", "nonlinearity": "tanh",
                        "init": {"gain": 0.9, "w_in_scale": 1.0}},
            "training": {"n_steps": 300, "batch_size": 32, "learning_rate": 0.03,
                         "early_stopping": False, "l2": 0.0, "dtype": "float64"}}
    for key, value in extra.items():
        base[key] = base.get(key, {}) | value if isinstance(value, dict) else value
    return CTRNNObsSpec.model_validate(base)


def test_ctrnn_obs_gradient_matches_finite_differences():
    spec = small_spec()
    rng = np.random.default_rng(4)
    module = ObservedCTRNN(spec, 2, 3, 2, 0, seed=0, device="cpu", dtype=torch.float64)
    inputs = torch.as_tensor(rng.normal(size=(2, 8, 2)))
    y = torch.as_tensor(rng.poisson(1.0, size=(2, 8, 3)), dtype=torch.float64)
    cond = torch.tensor([0, 1])
    model = CTRNNObs(spec)

    def loss() -> torch.Tensor:
        return model.obs.nll(y, module(inputs, cond)[0]).sum()

    for p in (module.net.w_rec_raw, module.net.w_in, module.r0, module.d):
        module.zero_grad()
        loss().backward()
        grad = p.grad.clone()
        eps = 1e-6
        fd = torch.zeros_like(p)
        with torch.no_grad():
            for idx in np.ndindex(*p.shape):
                p[idx] += eps
                up = loss()
                p[idx] -= 2 * eps
                down = loss()
                p[idx] += eps
                fd[idx] = (up - down) / (2 * eps)
        mask = module.net.mask if p is module.net.w_rec_raw else torch.ones_like(p)
        torch.testing.assert_close(grad, fd * mask, rtol=1e-6, atol=1e-7)


def test_ctrnn_obs_recovers_a_known_networks_rates():
    spec = small_spec()
    n_cond, n_bins, n_rec = 3, 30, 6
    table = pd.DataFrame({"direction": [0.0, 120.0, 240.0]})
    truth = ObservedCTRNN(spec, n_cond, n_rec, n_cond, 0, seed=11, device="cpu",
                          dtype=torch.float64)
    with torch.no_grad():
        truth.net.w_out.mul_(4.0)  # readout strong enough that the network shows in spikes
        truth.d.fill_(-0.5)
    from neurorec.families.ctrnn_obs.model import condition_inputs

    inputs = torch.as_tensor(condition_inputs(spec, table, n_bins, 0.0))
    cond = np.arange(90) % n_cond
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        drive = truth(inputs[cond], torch.as_tensor(cond))[0]
        rate = torch.nn.functional.softplus(drive)
        counts = torch.poisson(rate, generator=gen).numpy()
    data = dataclasses.replace(make_data(counts, cond, n_cond), condition_table=table)
    fitted = CTRNNObs(spec, seed=1).fit(data, progress=False)
    pred = fitted.predict_rate(make_data(counts[:n_cond], np.arange(n_cond), n_cond))
    true = rate[:n_cond].numpy()
    r = np.corrcoef(pred.ravel(), true.ravel())[0, 1]
    assert r > 0.95
    # the fitted likelihood of the data is at least that of the true rates, minus little
    nll_fit = float(CTRNNObs(spec).obs.nll(torch.as_tensor(counts), torch.as_tensor(
        np.log(np.expm1(fitted.predict_rate(data))))).sum())
    nll_true = float(CTRNNObs(spec).obs.nll(torch.as_tensor(counts), drive).sum())
    assert nll_fit < nll_true + 0.02 * abs(nll_true)


def test_ctrnn_obs_encoder_needs_heldout_and_ignores_heldout_spikes():
    rng = np.random.default_rng(5)
    counts = rng.poisson(0.8, size=(12, 10, 4))
    data = make_data(counts, np.arange(12) % 2, 2)
    spec = small_spec(initial_state="encoder", training={"n_steps": 5})
    with pytest.raises(DataError, match="encoder"):
        CTRNNObs(spec).fit(data, progress=False)
    model = CTRNNObs(spec)
    model.heldout = np.array([False, False, True, True])
    model.fit(data, progress=False)
    before = model.predict_rate(data)
    changed = counts.copy()
    changed[..., 2:] = rng.poisson(4.0, size=changed[..., 2:].shape)
    np.testing.assert_array_equal(before, model.predict_rate(
        dataclasses.replace(data, counts=changed)))
    changed[..., 0] += 3  # held-in spikes do reach the prediction through the encoder
    assert np.abs(model.predict_rate(dataclasses.replace(data, counts=changed)) - before).max() > 0
