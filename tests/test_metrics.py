"""Likelihood scores against scipy's distributions and the NLB definition of bits/spike."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurorec.core.metrics import (
    aic,
    bits_per_spike,
    log_likelihood,
    per_neuron_bits_per_spike,
)

LN2 = np.log(2.0)


@pytest.fixture
def small():
    """(7 trials, 11 bins, 5 units) counts, rates of the right scale but unrelated to counts."""
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.4, size=(7, 11, 5))
    counts[0, 0, :] = 3  # every unit has spikes
    rates = rng.gamma(2.0, 0.2, size=counts.shape)
    return counts, rates


def reference_bits(counts: np.ndarray, rates: np.ndarray) -> tuple[float, np.ndarray]:
    """NLB bits/spike by hand: scipy Poisson log pmf, null = each unit's mean over all bins."""
    y = counts.reshape(-1, counts.shape[-1])
    r = rates.reshape(-1, rates.shape[-1])
    ll_model = stats.poisson.logpmf(y, r).sum(axis=0)
    ll_null = stats.poisson.logpmf(y, y.mean(axis=0)).sum(axis=0)
    per_unit = (ll_model - ll_null) / (y.sum(axis=0) * LN2)
    population = (ll_model - ll_null).sum() / (y.sum() * LN2)
    return population, per_unit


def test_bits_per_spike_matches_hand_computation(small):
    counts, rates = small
    population, per_unit = reference_bits(counts, rates)
    assert bits_per_spike(counts, rates) == pytest.approx(population, rel=1e-12)
    np.testing.assert_allclose(per_neuron_bits_per_spike(counts, rates), per_unit, rtol=1e-12)
    # population = spike-weighted mean of the per-unit values
    spikes = counts.sum(axis=(0, 1))
    assert population == pytest.approx((per_unit * spikes).sum() / spikes.sum(), rel=1e-12)


def test_null_model_scores_zero(small):
    counts, _ = small
    null = np.broadcast_to(counts.mean(axis=(0, 1)), counts.shape)
    assert bits_per_spike(counts, null) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(per_neuron_bits_per_spike(counts, null), 0.0, atol=1e-14)


def test_true_rates_score_positive():
    """Strongly modulated Poisson data: the generating rates beat the per-unit mean."""
    rng = np.random.default_rng(2)
    t = np.arange(100)
    rates = 0.5 * np.exp(1.5 * np.sin(2 * np.pi * t / 50))[None, :, None] * np.ones((40, 1, 6))
    counts = rng.poisson(rates)
    population, _ = reference_bits(counts, rates)
    assert bits_per_spike(counts, rates) == pytest.approx(population, rel=1e-12)
    # expected gain per spike: E[y log(r / r̄)] / E[y] in bits, close to the sample value
    expected = (rates[0, :, 0] * np.log(rates[0, :, 0] / rates[0, :, 0].mean())).sum() / (
        rates[0, :, 0].sum() * LN2)
    assert expected > 0.5
    assert bits_per_spike(counts, rates) == pytest.approx(expected, abs=0.05)
    assert (per_neuron_bits_per_spike(counts, rates) > 0.4).all()


def test_unit_without_spikes_is_nan(small):
    counts, rates = small
    counts = counts.copy()
    counts[:, :, 2] = 0
    per_unit = per_neuron_bits_per_spike(counts, rates)
    assert np.isnan(per_unit[2])
    assert np.isfinite(np.delete(per_unit, 2)).all()
    # the silent unit still costs likelihood in the population score: Σ rates over its bins
    _, ref = reference_bits(np.delete(counts, 2, axis=2), np.delete(rates, 2, axis=2))
    np.testing.assert_allclose(np.delete(per_unit, 2), ref, rtol=1e-12)
    spikes = counts.sum()
    # its null rate is 0 (clipped to 1e-9), so it contributes -(Σ rate - n_bins · 1e-9) nats
    extra = -(rates[:, :, 2].sum() - rates[:, :, 2].size * 1e-9)
    gain = (np.delete(per_unit, 2) * np.delete(counts.sum(axis=(0, 1)), 2)).sum() * LN2
    assert bits_per_spike(counts, rates) == pytest.approx((gain + extra) / (spikes * LN2),
                                                          rel=1e-10)


def test_poisson_log_likelihood_equals_scipy(small):
    counts, rates = small
    assert log_likelihood(counts, rates) == pytest.approx(
        stats.poisson.logpmf(counts, rates).sum(), rel=1e-13)
    assert log_likelihood(counts, rates, "poisson") == log_likelihood(counts, rates)


def test_bernoulli_log_likelihood_equals_scipy(small):
    counts, rates = small
    probs = rates / (1 + rates)  # in (0, 1)
    spiked = (counts > 0).astype(int)  # counts > 1 count as one spike
    assert log_likelihood(counts, probs, "bernoulli") == pytest.approx(
        stats.bernoulli.logpmf(spiked, probs).sum(), rel=1e-13)


def test_bernoulli_bits_per_spike_by_hand(small):
    counts, rates = small
    probs = rates / (1 + rates)
    y = (counts > 0).reshape(-1, counts.shape[-1]).astype(int)
    p = probs.reshape(y.shape)
    gain = (stats.bernoulli.logpmf(y, p) - stats.bernoulli.logpmf(y, y.mean(axis=0))).sum()
    assert bits_per_spike(counts, probs, "bernoulli") == pytest.approx(gain / (y.sum() * LN2),
                                                                       rel=1e-12)


def test_aic_closed_form():
    assert aic(-1234.5, 17) == 2 * 17 + 2 * 1234.5
    assert aic(0.0, 0) == 0.0
