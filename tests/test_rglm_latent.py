"""The R-GLM's latent term (issue 20): stimulus input ``U s_t``, initial state per condition, its
own L2, the stability guards, and the nested warm start.

References: the states against a numpy loop of ``x_t = W0 y_{t-1} + R x_{t-1} + U s_t (+ x0)``;
the Brian 2 network's drive against the model's to 1e-10; the penalty written out by hand; a
model built to run away (DivergenceError without the guard, a closed-form bound on every drive
with it); the first L-BFGS iterate against the fitted GLM + corr to 1e-10.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neurorec.core.bases import raised_cosine_linear
from neurorec.core.errors import DataError, DivergenceError
from neurorec.data.recording import TrialLayout
from neurorec.families.glm.conformance import v1_small
from neurorec.families.glm.glm import GLM
from neurorec.families.glm.rglm import RGLM
from neurorec.families.glm.spec import GLMSpec, RGLMSpec, SamplingSpec

DIM = 2
_SMALL = {"stimulus": {"n_basis": 4}, "history": {"n_basis": 2, "duration": "30 ms"},
          "penalty": {"l2": 1e-4}, "fit": {"max_iter": 15, "early_stopping": False}}


def hand_model(seed: int = 0, **recurrent) -> tuple[RGLM, object]:
    """An R-GLM with every latent option on (or as given), parameters drawn by hand, shaped for
    the first trials of the small V1 set; returns (model, test data)."""
    _, test = v1_small()
    test = test.subset(np.arange(len(test.condition)) < 4)
    rng = np.random.default_rng(seed)
    n_units, n_cond, n_bins = test.counts.shape[2], test.n_conditions, test.counts.shape[1]
    rec = {"dim": DIM, "stimulus_input": True, "initial_state": True, **recurrent}
    model = RGLM(RGLMSpec(**_SMALL, recurrent=rec))
    model.params_ = {"beta": np.log(0.05) + 0.3 * rng.standard_normal((n_units, n_cond, 4)),
                     "h": -0.5 + 0.1 * rng.standard_normal((n_units, 2)),
                     "W0": 0.3 * rng.standard_normal((DIM, n_units)),
                     "R": 0.7 * np.linalg.qr(rng.standard_normal((DIM, DIM)))[0],
                     "B": 0.5 * rng.standard_normal((n_units, DIM))}
    if rec["stimulus_input"]:
        model.params_["U"] = 0.4 * rng.standard_normal((DIM, n_cond, 4))
    if rec["initial_state"]:
        model.params_["x0"] = rng.standard_normal((n_cond, DIM))
    model.n_bins_, model.n_units_, model.n_conditions_ = n_bins, n_units, n_cond
    model.bin_size_ = test.bin_size
    model.unit_order_ = np.arange(n_units)
    return model, test


def runaway_model(**recurrent) -> RGLM:
    """:func:`hand_model` with an expanding latent (R = 1.08 I) fed by and feeding back
    excitation (W0, B = 0.4): its closed loop runs away with the exp link."""
    model, _ = hand_model(seed=1, stimulus_input=False, initial_state=False, **recurrent)
    n_units = model.n_units_
    model.params_.update(W0=np.full((DIM, n_units), 0.4), R=1.08 * np.eye(DIM),
                         B=np.full((n_units, DIM), 0.4))
    return model


def test_states_with_stimulus_input_and_initial_state_equal_the_loop():
    model, test = hand_model()
    p = model.params_
    S = raised_cosine_linear(test.counts.shape[1], 4)
    want = np.zeros((*test.counts.shape[:2], DIM))
    for b, c in enumerate(test.condition):
        x, y_prev = np.zeros(DIM), np.zeros(test.counts.shape[2])
        for t in range(test.counts.shape[1]):
            x = p["W0"] @ y_prev + p["R"] @ x + p["U"][:, c] @ S[t]
            if t == 0:
                x = x + p["x0"][c]
            want[b, t] = x
            y_prev = test.counts[b, t]
    np.testing.assert_allclose(model.hidden_state(test), want, rtol=0, atol=1e-12)


def test_stimulus_input_reads_the_series_with_a_stimulus_filter():
    """With ``stimulus_filter.enabled`` s_t is the binned stimulus series: U is (dim,
    n_channels); the states equal the loop, and sampling without a series is a DataError."""
    _, test = v1_small()
    test = test.subset(np.arange(len(test.condition)) < 3)
    rng = np.random.default_rng(2)
    n_trials, n_bins, n_units = test.counts.shape
    series = rng.standard_normal((n_trials, n_bins, 2))
    test = dataclasses.replace(test, stimulus=series)
    spec = RGLMSpec(**_SMALL, stimulus_filter={"enabled": True, "n_basis": 2,
                                               "duration": "30 ms"},
                    recurrent={"dim": DIM, "stimulus_input": True})
    model = RGLM(spec)
    model.params_ = {"beta": np.full((n_units, test.n_conditions, 4), -3.0),
                     "h": np.zeros((n_units, 2)), "k": np.zeros((n_units, 2, 2)),
                     "W0": 0.2 * rng.standard_normal((DIM, n_units)), "R": 0.5 * np.eye(DIM),
                     "B": 0.1 * rng.standard_normal((n_units, DIM)),
                     "U": rng.standard_normal((DIM, 2))}
    model.n_bins_, model.n_units_, model.n_conditions_ = n_bins, n_units, test.n_conditions
    model.bin_size_, model.unit_order_ = test.bin_size, np.arange(n_units)
    p = model.params_
    want = np.zeros((n_trials, n_bins, DIM))
    for b in range(n_trials):
        x, y_prev = np.zeros(DIM), np.zeros(n_units)
        for t in range(n_bins):
            x = p["W0"] @ y_prev + p["R"] @ x + p["U"] @ series[b, t]
            want[b, t], y_prev = x, test.counts[b, t]
    np.testing.assert_allclose(model.hidden_state(test), want, rtol=0, atol=1e-12)
    like = TrialLayout(test.condition, test.n_bins, series)
    assert model.sample(len(test.condition), seed=0, like=like).shape == test.counts.shape
    with pytest.raises(DataError, match="stimulus"):
        model.sample(len(test.condition), seed=0, like=TrialLayout(test.condition, test.n_bins))


@pytest.mark.slow  # compiles a Brian 2 network (≈ 1 min on 2 cores)
def test_brian2_drive_equals_the_model_with_every_latent_option():
    pytest.importorskip("brian2")
    from neurorec.families.glm.brian2 import drive_brian2

    model, test = hand_model(max_radius=0.5, saturation=0.8)
    assert np.linalg.norm(model.params_["R"], 2) > 0.5  # the bound does act
    with torch.no_grad():
        ours = model._drive(model._fitted_tensors(), model._design(test)).numpy()
    got = drive_brian2(model, test.counts, test.condition)
    np.testing.assert_allclose(got, ours, rtol=0, atol=1e-10)


def test_latent_l2_is_its_own_group():
    train, _ = v1_small()
    spec = RGLMSpec(**{**_SMALL, "penalty": {"l2": 0.3, "stimulus_l2": 0.0}},
                    coupling={"enabled": True, "n_basis": 2, "duration": "30 ms"},
                    recurrent={"dim": DIM, "stimulus_input": True, "l2": 0.05})
    model = RGLM(spec)
    model.unit_order_ = np.arange(train.counts.shape[2])
    p = model._init_params(train, torch.Generator().manual_seed(0))
    d = model._design(train)
    got = float(model._objective(p, d))
    off = 1 - torch.eye(train.counts.shape[2], dtype=torch.float64)
    want = (float(model._nll(p, d).mean())
            + 0.3 * float((p["h"] ** 2).sum() + ((p["J"] * off[..., None]) ** 2).sum())
            + 0.05 * sum(float((p[k] ** 2).sum()) for k in ("W0", "R", "B", "U")))
    assert got == pytest.approx(want, rel=1e-13)


def test_stability_guard_on_a_model_built_to_run_away():
    """An exp-link R-GLM with an expanding latent (R = 1.08 I) fed by and feeding back
    excitation runs away in closed loop; with ``saturation`` the latent adds at most
    Σ_d |B_id| s to a drive, so every sample stays under that closed-form ceiling."""
    condition = np.arange(8) % 2
    with pytest.raises(DivergenceError, match="simulation diverged"):
        runaway = runaway_model()
        runaway.sample(len(condition), seed=0, like=TrialLayout(condition, runaway.n_bins_))
    s = 1.0
    model = runaway_model(saturation=s)
    counts = model.sample(len(condition), seed=0, like=TrialLayout(condition, model.n_bins_))
    assert np.isfinite(counts).all()
    p = model.params_
    stim = np.einsum("ick,tk->ict", p["beta"], model.stimulus_basis(model.n_bins_)).max()
    history_max = 0.0  # h < 0 here: history only lowers the drive
    assert (p["h"] < 0).all()
    ceiling = stim + history_max + np.abs(p["B"]).sum(axis=1).max() * s
    from neurorec.data.recording import BinnedTrials  # the sample as data, to read its drive
    data = BinnedTrials(counts=counts, bin_size=model.bin_size_,
                        time=(np.arange(model.n_bins_) + 0.5) * model.bin_size_,
                        condition=condition, condition_table=v1_small()[1].condition_table,
                        is_test=np.zeros(len(condition), dtype=bool),
                        unit_ids=np.arange(model.n_units_).astype(str), source="sample")
    with torch.no_grad():
        drive = model._drive(model._fitted_tensors(), model._design(data)).numpy()
    assert drive.max() <= ceiling + 1e-12
    # the unguarded latent would have exceeded it on these very counts
    model.spec = model.spec.model_copy(update={"recurrent": model.spec.recurrent.model_copy(
        update={"saturation": None})})
    model.terms = model.default_terms(model.spec)
    with torch.no_grad():
        assert model._drive(model._fitted_tensors(), model._design(data)).max() > ceiling


def test_runaway_safe_sampling_caps_the_model_built_to_run_away():
    """``sampling.max_rate_hz`` caps each expected count while sampling: the model that raised
    above now samples, no drive exceeds the cap, and a cap never reached changes no draw."""
    model = runaway_model()
    condition = np.arange(8) % 2
    with pytest.raises(DivergenceError):
        model.sample(len(condition), seed=0, like=TrialLayout(condition, model.n_bins_))
    model.spec = model.spec.model_copy(update={"sampling": SamplingSpec(max_rate_hz=200.0)})
    counts = model.sample(len(condition), seed=0, like=TrialLayout(condition, model.n_bins_))
    assert np.isfinite(counts).all() and 0 < model.last_sample_capped < 1
    cap = 200.0 * model.bin_size_
    # Poisson counts under a mean of at most `cap`: far above 30 × cap is impossible in practice
    assert counts.max() < 30 * cap
    calm, _ = hand_model(seed=1, stimulus_input=False, initial_state=False)
    like = TrialLayout(condition, calm.n_bins_)
    free = calm.sample(len(condition), seed=3, like=like)
    calm.spec = calm.spec.model_copy(update={"sampling": SamplingSpec(max_rate_hz=10_000.0)})
    np.testing.assert_array_equal(calm.sample(len(condition), seed=3, like=like), free)
    assert calm.last_sample_capped == 0.0


def test_max_radius_bounds_the_fitted_recurrence():
    train, test = v1_small()
    spec = RGLMSpec(**{**_SMALL, "fit": {"max_iter": 5, "early_stopping": False}},
                    recurrent={"dim": DIM, "max_radius": 0.3, "init_radius": 0.9})
    model = RGLM(spec).fit(train, progress=False)
    assert np.linalg.norm(model.params_["R"], 2) <= 0.3 + 1e-12
    assert np.isfinite(model.score(test))


@pytest.mark.parametrize("options", [{}, {"stimulus_input": True, "initial_state": True,
                                          "saturation": 2.0, "max_radius": 0.9}])
def test_nested_warm_start_first_iterate_is_the_fitted_glm_corr(options):
    """R-GLM + corr starts at GLM + corr: the first iterate's log-likelihood equals that of the
    GLM + corr fitted by batched Newton, to 1e-10."""
    train, _ = v1_small()
    common = {**_SMALL, "coupling": {"enabled": True, "n_basis": 2, "duration": "30 ms"},
              "correlated": {"enabled": True}}
    glm = GLM(GLMSpec(**common)).fit(train, progress=False)
    assert glm.solver() == "newton"
    rglm = RGLM(RGLMSpec(**common, recurrent={"dim": DIM, **options}))
    rglm.unit_order_ = rglm._choose_order(train)
    init = rglm._init_params(train, torch.Generator().manual_seed(rglm.seed))
    rglm.stimulus_centre_ = init["beta"].numpy()
    start = rglm._warm_start(train, init)
    d = rglm._design(train)
    with torch.no_grad():
        ll_start = -float(rglm._nll(start, d).sum())
        ll_glm = -float(glm._nll(glm._fitted_tensors(), glm._design(train)).sum())
    assert ll_start == pytest.approx(ll_glm, rel=1e-10, abs=1e-10)
    assert ll_glm == pytest.approx(glm.log_likelihood(train), rel=1e-10)
    # the fit starts there (same seed, same trials) and can only lower the penalised objective
    rglm.fit(train, progress=False)
    with torch.no_grad():
        first = float(rglm._objective(start, d))
    assert rglm.fit_report_.history[0]["objective"] <= first
    assert rglm.fit_report_.final_objective <= first


@pytest.mark.slow  # compiles a Brian 2 network
def test_brian2_caps_the_runaway_model_like_torch():
    """Brian 2 with ``sampling.max_rate_hz`` samples the model built to run away (it raised
    without), and its mean count per unit-bin agrees with the capped torch sampler."""
    pytest.importorskip("brian2")
    from neurorec.families.glm.brian2 import simulate_brian2

    model = runaway_model()
    condition = np.arange(200) % 2
    with pytest.raises(DivergenceError):
        simulate_brian2(model, condition[:4], seed=0)
    model.spec = model.spec.model_copy(update={"sampling": SamplingSpec(max_rate_hz=200.0)})
    brian = simulate_brian2(model, condition, seed=0)
    torch_counts = model.sample(len(condition), seed=1, like=TrialLayout(condition, model.n_bins_))
    a, b = brian.mean(axis=(0, 2)), torch_counts.mean(axis=(0, 2))  # (n_bins,) per-bin means
    se = np.sqrt(brian.mean(axis=2).var(axis=0) / len(condition)
                 + torch_counts.mean(axis=2).var(axis=0) / len(condition))
    assert np.abs((a - b) / np.maximum(se, 1e-12)).max() < 5.0
    assert brian.max() < 30 * 200.0 * model.bin_size_


# ---------------------------------------------------------------------- saturating link
def test_rate_ceiling_link_closed_form_gradient_and_inverse():
    from neurorec.core.observations import Poisson

    c = 2.5
    d = torch.linspace(-6.0, 40.0, 200, dtype=torch.float64)
    for link, f in (("exp", np.exp), ("softplus", lambda x: np.logaddexp(0.0, x))):
        obs = Poisson(link, ceiling=c)
        fd = f(d.numpy())
        np.testing.assert_allclose(obs.mean(d).numpy(), fd * (1 + (fd / c) ** 4) ** -0.25,
                                   rtol=1e-12)
        assert float(obs.mean(d).max()) <= c * (1 + 1e-12)  # to rounding
        y = torch.poisson(torch.full_like(d, 1.0), generator=torch.Generator().manual_seed(0))
        dd = d[:60].clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda x, o=obs, yy=y[:60]: o.nll(yy, x).sum(), (dd,))
        means = np.array([0.01, 0.3, 1.0])
        back = obs.mean(torch.as_tensor(obs.baseline(means))).numpy()
        np.testing.assert_allclose(back, means, rtol=1e-12)


def test_rate_ceiling_bounds_the_model_built_to_run_away():
    """The same runaway model with ``rate_ceiling_hz`` in the model itself: sampling needs no
    cap, every expected count stays under the ceiling."""
    model = runaway_model()
    model.spec = model.spec.model_copy(update={"rate_ceiling_hz": 200.0})
    model._set_observation(model.bin_size_)
    counts = model.sample(8, seed=0, like=TrialLayout(np.arange(8) % 2, model.n_bins_))
    assert np.isfinite(counts).all() and counts.max() < 30 * 200.0 * model.bin_size_
    assert model.last_sample_capped == 0.0


def test_rate_ceiling_fit_scores_and_round_trips(tmp_path):
    train, test = v1_small()
    spec = GLMSpec(**{**_SMALL, "fit": {"max_iter": 40, "early_stopping": False}},
                   rate_ceiling_hz=500.0)
    model = GLM(spec)
    assert model.solver() == "lbfgs"
    model.fit(train, progress=False)
    assert model.obs.ceiling == pytest.approx(500.0 * train.bin_size)
    assert model.predict_rate(test).max() <= 500.0 * train.bin_size * (1 + 1e-12)
    plain = GLM(spec.model_copy(update={"rate_ceiling_hz": None})).fit(train, progress=False)
    assert abs(model.score(test) - plain.score(test)) < 0.01  # far below the ceiling: ≈ exp
    model.save(tmp_path / "m")
    again = GLM.load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_rate(test), model.predict_rate(test))


@pytest.mark.slow  # compiles a Brian 2 network
def test_brian2_samples_the_rate_ceiling_like_torch():
    """The saturating link in the Brian 2 network: the model built to run away samples there
    with the same per-bin means as the torch sampler (within 5 SE)."""
    pytest.importorskip("brian2")
    from neurorec.families.glm.brian2 import simulate_brian2

    model = runaway_model()
    model.spec = model.spec.model_copy(update={"rate_ceiling_hz": 200.0})
    model._set_observation(model.bin_size_)
    condition = np.arange(200) % 2
    brian = simulate_brian2(model, condition, seed=0)
    torch_counts = model.sample(len(condition), seed=1, like=TrialLayout(condition, model.n_bins_))
    a, b = brian.mean(axis=(0, 2)), torch_counts.mean(axis=(0, 2))
    se = np.sqrt(brian.mean(axis=2).var(axis=0) / len(condition)
                 + torch_counts.mean(axis=2).var(axis=0) / len(condition))
    assert np.abs((a - b) / np.maximum(se, 1e-12)).max() < 5.0


def test_best_iteration_takes_the_lowest_held_back_score_and_fewer_on_ties():
    from neurorec.families.glm.glm import best_iteration
    from neurorec.fit.run import FitLog

    def report(scores):
        return FitLog(converged=True, reason="", n_iter=0, n_evals=0, final_objective=0.0,
                      max_abs_grad=0.0, best_validation_nll=None, fit_time_s=0.0,
                      history=[{"iter": i, "validation_nll": v} for i, v in scores]
                      + [{"iter": 99, "newton_steps": 1}])

    assert best_iteration(report([(0, 5.0), (10, 4.0), (20, 4.5)])) == 10
    assert best_iteration(report([(0, 3.0), (10, 3.0), (20, 4.5)])) == 0
    with pytest.raises(ValueError):
        best_iteration(report([]))


def test_refit_best_refits_all_trials_for_the_held_back_best_count():
    """``fit.refit_best``: the held-back run picks the iteration count, and the kept R-GLM is
    the one a plain run on all training trials gives for that many iterations (bitwise, same
    seed); with 0 iterations it is the warm start itself, i.e. the GLM + corr fitted by
    batched Newton on all training trials (log-likelihood to 1e-10)."""
    from neurorec.families.glm.glm import best_iteration

    train, _ = v1_small()
    common = {**{k: v for k, v in _SMALL.items() if k != "fit"},
              "coupling": {"enabled": True, "n_basis": 2, "duration": "30 ms"},
              "correlated": {"enabled": True}}
    fit = {"max_iter": 20, "check_every": 5, "early_stopping": True, "patience": 100}
    guarded = RGLM(RGLMSpec(**common, recurrent={"dim": DIM},
                            fit={**fit, "refit_best": True})).fit(train, progress=False)
    held_back = [h for h in guarded.fit_report_.history if h["stage"] == "held-back"]
    n_best = best_iteration(dataclasses.replace(guarded.fit_report_, history=held_back))
    assert f"for {n_best} iterations" in guarded.fit_report_.reason
    if n_best:
        plain = RGLM(RGLMSpec(**common, recurrent={"dim": DIM},
                              fit={**fit, "early_stopping": False, "max_iter": n_best}))
        plain.fit(train, progress=False)
        for k in plain.params_:
            np.testing.assert_array_equal(guarded.params_[k], plain.params_[k])
    # the 0-iteration path: the start on all trials is the fitted GLM + corr
    glm = GLM(GLMSpec(**common)).fit(train, progress=False)
    start = RGLM(RGLMSpec(**common, recurrent={"dim": DIM}, fit=fit))
    start.unit_order_ = start._choose_order(train)
    start._set_observation(train.bin_size)
    report = start._lbfgs_run(train, None, start.spec.fit.model_copy(
        update={"early_stopping": False, "max_iter": 0}), progress=False)
    assert report.n_iter == 0
    assert np.all(start.params_["B"] == 0)
    start.n_bins_, start.n_units_ = train.counts.shape[1:]
    start.n_conditions_, start.bin_size_ = train.n_conditions, train.bin_size
    assert start.log_likelihood(train) == pytest.approx(glm.log_likelihood(train), rel=1e-10)
