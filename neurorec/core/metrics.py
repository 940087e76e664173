"""Likelihood-based scores of predicted rates against observed counts (numpy, float64).

bits/spike follows the Neural Latents Benchmark (Pei et al. 2021):
``(NLL_null - NLL_model) / (n_spikes * ln 2)``, Poisson NLL including ``log y!``, the null
model predicting each neuron's mean count over the evaluated bins, rates clipped at 1e-9.
"""

from __future__ import annotations

import numpy as np

from neurorec.core.observations import (  # noqa: F401 (re-exported: the scores' public home)
    RATE_FLOOR,
    bernoulli_nll,
    gaussian_nll,
    make_observation,
    poisson_nll,
)


def _flat(counts: np.ndarray) -> np.ndarray:
    return counts.reshape(-1, counts.shape[-1]).astype(float)


def _observed(counts: np.ndarray, observation: str) -> np.ndarray:
    """(bins, units) what the observation model scores: counts, or spike / no spike."""
    return make_observation(observation).observed(_flat(counts))


def nll_tables(counts: np.ndarray, rates: np.ndarray, observation: str,
                scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(bins, units) NLL of the model and of the null (each unit's mean over these bins);
    the observation model (:mod:`neurorec.core.observations`) owns both."""
    return make_observation(observation).score_tables(_flat(counts), _flat(rates), scale)


def log_likelihood(counts: np.ndarray, rates: np.ndarray, observation: str = "poisson",
                   scale: np.ndarray | None = None) -> float:
    """Total log-likelihood in nats of ``counts`` (trial × time × unit) under ``rates``
    (expected counts; Gaussian: means with standard deviations ``scale``, one per unit)."""
    return float(-nll_tables(counts, rates, observation, scale)[0].sum())


def per_neuron_bits_per_spike(counts: np.ndarray, rates: np.ndarray,
                              observation: str = "poisson",
                              scale: np.ndarray | None = None) -> np.ndarray:
    """(n_units,) bits/spike of each unit; NaN for a unit without spikes in ``counts``."""
    model, null = nll_tables(counts, rates, observation, scale)
    gain = (null - model).sum(axis=0)
    spikes = _observed(counts, observation).sum(axis=0)  # Bernoulli: bins with a spike
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spikes > 0, gain / (spikes * np.log(2.0)), np.nan)


def bits_per_spike(counts: np.ndarray, rates: np.ndarray, observation: str = "poisson",
                   scale: np.ndarray | None = None) -> float:
    """Population bits/spike (NLB): summed over units and bins, divided by all spikes.

    For Bernoulli and Gaussian observations the same information gain over the family's own
    null model (per-unit mean; Gaussian: and variance), per spike.
    """
    model, null = nll_tables(counts, rates, observation, scale)
    return float((null - model).sum() / (_observed(counts, observation).sum() * np.log(2.0)))


def aic(train_log_likelihood: float, n_parameters: int) -> float:
    """Akaike information criterion ``2k - 2 LL`` (LL on the training data, nats)."""
    return 2.0 * n_parameters - 2.0 * train_log_likelihood
