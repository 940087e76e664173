"""Time rescaling with the discrete-time correction (Haslinger, Pipa & Brown 2010): exact
uniformity under the true conditional intensity, the continuous-time formula's bias at coarse
bins, agreement with the Eden-Kramer lab's ``time-rescale`` package where the correction
vanishes, and KS / autocorrelation against closed forms and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurorec.analysis.goodness_of_fit import (
    KS_BAND_95,
    rescaled_autocorrelation,
    rescaled_intervals,
    rescaling_summary,
    spike_probability,
    time_rescaling,
)


def history_process(n_bins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A discrete-time Bernoulli process with a strong refractory history: the probability
    of a spike depends on the bins since the last one and a slow sinusoidal drive.
    Returns (spiked (n_bins,) bool, p (n_bins,) the true conditional probability)."""
    rng = np.random.default_rng(seed)
    drive = 0.25 + 0.15 * np.sin(np.arange(n_bins) * 2 * np.pi / 500)
    spiked = np.zeros(n_bins, bool)
    p = np.zeros(n_bins)
    since = 100
    for t in range(n_bins):
        p[t] = drive[t] * (1.0 - np.exp(-since / 3.0))  # refractory recovery, τ = 3 bins
        spiked[t] = rng.random() < p[t]
        since = 1 if spiked[t] else since + 1
    return spiked, p


def test_true_conditional_intensity_gives_uniform_intervals():
    spiked, p = history_process(40_000, seed=1)
    z = rescaled_intervals(spiked, p, np.random.default_rng(0))
    assert len(z) == spiked.sum() > 5000
    assert stats.kstest(z, "uniform").statistic < KS_BAND_95 / np.sqrt(len(z))
    # the history-free model (the mean rate in each bin, no refractoriness) is rejected
    z_bad = rescaled_intervals(spiked, np.full_like(p, spiked.mean()),
                               np.random.default_rng(0))
    assert stats.kstest(z_bad, "uniform").statistic > 3 * KS_BAND_95 / np.sqrt(len(z))


def test_correction_removes_the_coarse_bin_bias():
    """Poisson counts at ~50 Hz in 10 ms bins (λ = 0.5 per bin): the continuous-time sum is
    biased (KS far outside the band), the corrected intervals are uniform."""
    rng = np.random.default_rng(2)
    lam = 0.5 + 0.3 * np.sin(np.arange(20_000) / 40.0)
    counts = rng.poisson(lam)
    z = rescaled_intervals(counts > 0, spike_probability(lam), np.random.default_rng(3))
    z_naive = rescaled_intervals(counts > 0, lam, None, correction=False)
    band = KS_BAND_95 / np.sqrt(len(z))
    assert stats.kstest(z, "uniform").statistic < band
    assert stats.kstest(z_naive, "uniform").statistic > 5 * band


def test_bernoulli_probabilities_are_used_as_given():
    p = np.array([0.1, 0.9, 0.5])
    np.testing.assert_array_equal(spike_probability(p, "bernoulli"), p)
    np.testing.assert_allclose(spike_probability(np.array([0.0, 1.0, 2.0])),
                               1 - np.exp(-np.array([0.0, 1.0, 2.0])))


def test_intervals_by_hand():
    """τ = Σ q over the empty bins between spikes + the drawn part of the spike bin."""
    p = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    spiked = np.array([False, True, False, False, True, False])
    delta = np.random.default_rng(7).uniform(size=2)
    q = -np.log1p(-p)
    tau = [q[0] - np.log1p(-delta[0] * p[1]), q[2] + q[3] - np.log1p(-delta[1] * p[4])]
    z = rescaled_intervals(spiked, p, np.random.default_rng(7))
    np.testing.assert_allclose(z, 1 - np.exp(-np.array(tau)), rtol=1e-14)


def test_fine_bins_match_the_time_rescale_package():
    """An inhomogeneous Poisson process at 0.1 ms bins (λ·dt ≤ 0.004): the correction
    vanishes and the rescaled intervals equal the continuous-time package's (Brown et al.
    2002, trapezoid integral; no short-trial adjustment) to within the bin's mass."""
    time_rescale = pytest.importorskip("time_rescale")
    dt = 1e-4
    t = np.arange(600_000) * dt  # 60 s
    rate_hz = 20.0 + 15.0 * np.sin(2 * np.pi * t / 2.0)
    rng = np.random.default_rng(4)
    spiked = rng.random(len(t)) < rate_hz * dt
    ours = rescaled_intervals(spiked, spike_probability(rate_hz * dt), np.random.default_rng(5))
    ref = time_rescale.TimeRescaling(rate_hz * dt, spiked, adjust_for_short_trials=False)
    theirs = ref.uniform_rescaled_ISIs()
    assert len(ours) == len(theirs) == spiked.sum() > 1000
    assert np.abs(ours - theirs).max() < 5e-3
    # their statistic is max |sorted z - (k + 1/2)/n|; ours (scipy's exact D) on our z
    n = len(ours)
    theirs_ks = ref.ks_statistic()
    ours_ks_their_way = np.abs(np.sort(ours) - (np.arange(n) + 0.5) / n).max()
    assert ours_ks_their_way == pytest.approx(theirs_ks, abs=3e-3)
    assert stats.kstest(ours, "uniform").statistic < KS_BAND_95 / np.sqrt(n)


def test_ks_statistic_closed_form():
    z = np.random.default_rng(8).beta(1.3, 1.0, size=400)
    res = time_rescaling(np.ones((1, 1, 1)), np.ones((1, 1, 1)))  # shape smoke of the API
    assert res[0].n_intervals == 1
    zs = np.sort(z)
    n = len(z)
    d = max((np.arange(1, n + 1) / n - zs).max(), (zs - np.arange(n) / n).max())
    assert stats.kstest(z, "uniform").statistic == pytest.approx(d, rel=1e-12)


def test_autocorrelation_equals_statsmodels():
    from statsmodels.tsa.stattools import acf

    z = np.random.default_rng(9).uniform(size=300)
    g = stats.norm.ppf(z)
    np.testing.assert_allclose(rescaled_autocorrelation(z, 8), acf(g, nlags=8, fft=False)[1:],
                               rtol=1e-10)


def test_per_unit_summary_and_seeds():
    """Units independent of each other's draws; failing units named."""
    rng = np.random.default_rng(10)
    lam = np.full((50, 100, 3), 0.2)
    counts = rng.poisson(lam)
    counts[..., 2] = rng.poisson(0.6, size=(50, 100))  # unit 2 fires 3× the model's rate
    res = time_rescaling(counts, lam, seed=3)
    again = time_rescaling(counts[..., :2], lam[..., :2], seed=3)
    np.testing.assert_array_equal(res[1].z, again[1].z)
    summary = rescaling_summary(res, np.array(["a", "b", "c"]))
    assert [k["inside"] for k in summary["ks"]] == [True, True, False]
    assert summary["ks_failing_units"] == ["c"]
    assert summary["ks_fraction_in_band"] == pytest.approx(2 / 3)
    assert summary["ks"][0]["band"] == pytest.approx(1.36 / np.sqrt(res[0].n_intervals))


def test_segments_restart_the_intervals():
    """Each stretch starts its first interval at its own first bin; the tail is censored."""
    p = np.full(6, 0.3)
    spiked = np.array([False, True, False, False, True, False])
    seg = np.array([0, 0, 0, 1, 1, 1])
    res = time_rescaling(spiked[:, None].astype(int), -np.log1p(-p)[:, None], seed=0,
                         segments=seg)
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(1)[0])
    q = -np.log1p(-0.3)
    d = rng.uniform(size=1), rng.uniform(size=1)
    tau = [q - np.log1p(-d[0][0] * 0.3), q - np.log1p(-d[1][0] * 0.3)]  # bins 0|1 and 3|4
    np.testing.assert_allclose(res[0].z, 1 - np.exp(-np.array(tau)), rtol=1e-12)
