"""GLM driven by a stimulus time series (Pillow et al. 2008) on nitime's grasshopper receptor.

References: statsmodels on a hand-built lagged design, the spike-triggered average (STA ∝ C k
for a Gaussian stimulus), exact first moments of samples, and a closed form for binning.
"""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from neurorec.analysis.sta import filter_sta_agreement, spike_triggered_average
from neurorec.core.bases import raised_cosine_log
from neurorec.core.errors import DataError
from neurorec.data.binning import bin_stimulus
from neurorec.data.nwb import read_nwb, write_nwb
from neurorec.data.recording import StimulusSeries, TrialLayout
from neurorec.datasets import load
from neurorec.spec import load_model_spec
from neurorec.workflows.fit_outputs import write_fit_outputs
from neurorec.workflows.pipeline import fit_and_evaluate
from neurorec.workflows.simulate import simulate_fit_dir

SPEC = "models/glm_grasshopper.yaml"


@pytest.fixture(scope="module")
def grasshopper():
    return load("grasshopper:1")


@pytest.fixture(scope="module")
def fitted(grasshopper):
    return fit_and_evaluate(load_model_spec(SPEC), grasshopper, seed=0, progress=False)


def test_bin_stimulus_is_the_mean_of_samples_in_each_bin():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3000, 2))
    series = StimulusSeries(values=values, rate_hz=1000.0, start_time=0.5)
    edges = 0.5 + np.array([[0.0, 0.01, 0.02], [1.0, 1.01, 1.02]])
    got = bin_stimulus(series, edges, "test")
    want = np.stack([values[0:10].mean(0), values[10:20].mean(0)]), \
        np.stack([values[1000:1010].mean(0), values[1010:1020].mean(0)])
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-12)
    with pytest.raises(DataError, match="stimulus: the series covers"):
        bin_stimulus(series, edges + 3.0, "test")


def _lagged(x: np.ndarray, basis: np.ndarray, first_lag: int) -> np.ndarray:
    """(n_trials * n_bins, n_basis) Σ_l basis[l] x[t - l - first_lag], zero before the start."""
    n_trials, n_bins = x.shape
    out = np.zeros((n_trials, n_bins, basis.shape[1]))
    for row in range(basis.shape[0]):
        lag = row + first_lag
        shifted = np.zeros_like(x)
        shifted[:, lag:] = x[:, : n_bins - lag]
        out += shifted[..., None] * basis[row]
    return out.reshape(n_trials * n_bins, -1)


def test_stimulus_filter_glm_equals_statsmodels(grasshopper):
    spec = load_model_spec(SPEC, ["penalty.l2=0", "penalty.stimulus_l2=0",
                                  "fit.early_stopping=false"])
    result = fit_and_evaluate(spec, grasshopper, seed=0, progress=False)
    train, test = result.train, result.test
    stim_basis = raised_cosine_log(25, 12)
    hist_basis = raised_cosine_log(20, 6)

    def design(d):
        return np.column_stack([np.ones(d.counts[:, :, 0].size),
                                _lagged(d.stimulus[:, :, 0], stim_basis, 0),
                                _lagged(d.counts[:, :, 0].astype(float), hist_basis, 1)])

    ref = sm.GLM(train.counts[:, :, 0].ravel(), design(train), family=sm.families.Poisson()
                 ).fit(tol=1e-12)
    p = result.model.params_
    ours = np.concatenate([p["bias"], p["k"].ravel(), p["h"].ravel()])
    np.testing.assert_allclose(ours, ref.params, rtol=1e-6, atol=1e-6)
    rate = np.exp(design(test) @ ref.params)
    ll_ref = stats.poisson.logpmf(test.counts[:, :, 0].ravel(), rate).sum()
    assert result.metrics["log_likelihood"] == pytest.approx(ll_ref, rel=1e-8)


def test_fitted_filter_explains_the_spike_triggered_average(fitted):
    d = fitted.data
    filt = fitted.model.stimulus_filters()[0, 0]
    agreement = filter_sta_agreement(filt, d.counts[:, :, 0], d.stimulus[:, :, 0])
    assert agreement["r"] > 0.85  # measured 0.896 (STA ∝ C k for a Gaussian stimulus)
    # peaks within one 1 ms bin of each other (measured: 6 and 7 ms)
    assert abs(int(np.argmax(agreement["sta"])) - int(np.argmax(agreement["predicted"]))) <= 1
    assert fitted.metrics["bits_per_spike"] > 1.0  # measured 1.30; history + filter


def test_sta_by_hand():
    counts = np.array([[0, 0, 1, 0, 2]])
    stim = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    # spikes at t=2 (×1) and t=4 (×2): lag 0 → (3 + 2·5)/3, lag 1 → (2 + 2·4)/3
    np.testing.assert_allclose(spike_triggered_average(counts, stim, 2), [13 / 3, 10 / 3])


def test_samples_match_exact_rates_without_feedback(grasshopper):
    spec = load_model_spec(SPEC, ["history.enabled=false"])
    result = fit_and_evaluate(spec, grasshopper, seed=0, progress=False)
    test = result.test
    n_rep, n_bins = 400, 150
    stimulus = np.repeat(test.stimulus[:1, :n_bins], n_rep, axis=0)
    samples = result.model.sample(n_rep, seed=1,
                                  like=TrialLayout(np.zeros(n_rep, int), n_bins, stimulus))
    rate = result.model.predict_rate(test)[0, :n_bins, 0]
    mean = samples[:, :, 0].mean(axis=0)
    chi2 = float(((mean - rate) ** 2 / (rate / n_rep)).sum())
    assert chi2 < stats.chi2.ppf(0.999, n_bins)
    with pytest.raises(DataError, match="stimulus filter"):
        result.model.sample(2, seed=1, like=TrialLayout(np.zeros(2, int), n_bins))


def test_fit_dir_simulates_with_its_stimulus_and_nwb_keeps_the_series(fitted, grasshopper,
                                                                       tmp_path):
    write_fit_outputs(fitted, tmp_path / "fit")
    rec = simulate_fit_dir(tmp_path / "fit", seed=0)
    assert len(rec.trials) == len(fitted.test.counts)
    write_nwb(grasshopper, tmp_path / "g.nwb")
    back = read_nwb(tmp_path / "g.nwb")
    np.testing.assert_array_equal(back.stimulus.values, grasshopper.stimulus.values)
    assert back.stimulus.rate_hz == 20_000.0


def test_stimulus_filter_without_a_stimulus_series_is_a_data_error():
    spec = load_model_spec(SPEC, ["data.bin_size=10 ms", "data.conditions=[direction]",
                                  "history.duration=100 ms", "stimulus_filter.duration=200 ms"])
    with pytest.raises(DataError, match=r"stimulus_filter\.enabled needs a stimulus time series"):
        fit_and_evaluate(spec, load("v1_gratings:0"), progress=False)
