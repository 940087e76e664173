"""Likelihood-based scores of predicted rates against observed counts (numpy, float64).

bits/spike follows the Neural Latents Benchmark (Pei et al. 2021):
``(NLL_null - NLL_model) / (n_spikes * ln 2)``, Poisson NLL including ``log y!``, the null
model predicting each neuron's mean count over the evaluated bins, rates clipped at 1e-9.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, xlogy

RATE_FLOOR = 1e-9  # as in nlb_tools, so that a zero rate with a spike stays finite


def poisson_nll(counts: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Elementwise Poisson NLL; ``counts``, ``rates`` broadcastable, rates = expected counts."""
    rates = np.clip(rates, RATE_FLOOR, None)
    return rates - xlogy(counts, rates) + gammaln(counts + 1.0)


def bernoulli_nll(counts: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Elementwise Bernoulli NLL of spike / no spike (counts > 0)."""
    y = (counts > 0).astype(float)
    p = np.clip(probs, RATE_FLOOR, 1.0 - RATE_FLOOR)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def _flat(counts: np.ndarray) -> np.ndarray:
    return counts.reshape(-1, counts.shape[-1]).astype(float)


def log_likelihood(counts: np.ndarray, rates: np.ndarray, observation: str = "poisson") -> float:
    """Total log-likelihood in nats of ``counts`` (trial × time × unit) under ``rates``."""
    nll = poisson_nll if observation == "poisson" else bernoulli_nll
    return float(-nll(_flat(counts), _flat(rates)).sum())


def _null_rates(counts: np.ndarray, observation: str) -> np.ndarray:
    y = _flat(counts)
    if observation == "bernoulli":
        y = (y > 0).astype(float)
    return np.broadcast_to(y.mean(axis=0, keepdims=True), y.shape)


def per_neuron_bits_per_spike(counts: np.ndarray, rates: np.ndarray,
                              observation: str = "poisson") -> np.ndarray:
    """(n_units,) bits/spike of each unit; NaN for a unit without spikes in ``counts``."""
    nll = poisson_nll if observation == "poisson" else bernoulli_nll
    y, r = _flat(counts), _flat(rates)
    gain = (nll(y, _null_rates(counts, observation)) - nll(y, r)).sum(axis=0)
    spikes = y.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spikes > 0, gain / (spikes * np.log(2.0)), np.nan)


def bits_per_spike(counts: np.ndarray, rates: np.ndarray, observation: str = "poisson") -> float:
    """Population bits/spike (NLB): summed over units and bins, divided by all spikes."""
    nll = poisson_nll if observation == "poisson" else bernoulli_nll
    y, r = _flat(counts), _flat(rates)
    gain = (nll(y, _null_rates(counts, observation)) - nll(y, r)).sum()
    return float(gain / (y.sum() * np.log(2.0)))


def aic(train_log_likelihood: float, n_parameters: int) -> float:
    """Akaike information criterion ``2k - 2 LL`` (LL on the training data, nats)."""
    return 2.0 * n_parameters - 2.0 * train_log_likelihood
