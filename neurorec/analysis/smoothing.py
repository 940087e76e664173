"""The Neural Latents Benchmark's spike-smoothing baseline for co-smoothing (Pei et al. 2021).

Held-in spikes are convolved with a Gaussian kernel (per trial, zero outside the trial, as
``nlb_tools`` does with ``scipy.signal.convolve`` in 'same' mode), and a Poisson GLM with log
link maps ``log(smoothed + log_offset)`` of the held-in units (plus an intercept) to each
held-out unit's counts, fitted on the training trials (scikit-learn ``PoissonRegressor``,
objective ``deviance / (2 n) + alpha/2 ‖w‖²``). Held-out rates on test trials then come from
held-in spikes only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d


def smooth_spikes(counts: np.ndarray, sigma_bins: float) -> np.ndarray:
    """(n_trials, n_bins, n_units) counts convolved along time with a unit-area Gaussian of
    std ``sigma_bins`` bins, truncated at 4 σ, zero padding at trial edges."""
    return gaussian_filter1d(counts.astype(float), sigma_bins, axis=1, mode="constant",
                             truncate=4.0)


def smoothed_features(counts: np.ndarray, sigma_bins: float, log_offset: float | None
                      ) -> np.ndarray:
    """(n_trials · n_bins, n_units) regressors: smoothed counts, optionally log-transformed."""
    s = smooth_spikes(counts, sigma_bins).reshape(-1, counts.shape[2])
    return np.log(s + log_offset) if log_offset is not None else s


@dataclass
class SmoothingBaseline:
    """Fitted smoothing baseline. ``coef_`` (n_heldout, n_heldin), ``intercept_`` (n_heldout,)
    act on the features of :func:`smoothed_features`; ``fit_time_s``."""

    sigma_bins: float
    log_offset: float | None
    coef_: np.ndarray
    intercept_: np.ndarray
    fit_time_s: float

    def predict(self, heldin_counts: np.ndarray) -> np.ndarray:
        """(n_trials, n_bins, n_heldout) expected counts from held-in counts (n_trials,
        n_bins, n_heldin)."""
        x = smoothed_features(heldin_counts, self.sigma_bins, self.log_offset)
        rate = np.exp(x @ self.coef_.T + self.intercept_)
        return rate.reshape(*heldin_counts.shape[:2], -1)


def fit_smoothing(train_heldin: np.ndarray, train_heldout: np.ndarray, sigma_bins: float,
                  alpha: float = 1e-3, log_offset: float | None = 1e-4,
                  max_iter: int = 1000) -> SmoothingBaseline:
    """Fit one Poisson GLM per held-out unit on smoothed held-in spikes (training trials).

    Args:
        train_heldin: (n_trials, n_bins, n_heldin) training counts of held-in units.
        train_heldout: (n_trials, n_bins, n_heldout) training counts of held-out units.
        sigma_bins: kernel std in bins (NLB: 40-60 ms; e.g. 5 bins of 10 ms).
        alpha: L2 weight of ``PoissonRegressor`` (0: maximum likelihood).
        log_offset: features are ``log(smoothed + log_offset)``; None: smoothed counts.
    """
    from sklearn.linear_model import PoissonRegressor

    start = time.perf_counter()
    x = smoothed_features(train_heldin, sigma_bins, log_offset)
    y = train_heldout.reshape(-1, train_heldout.shape[2]).astype(float)
    coef = np.zeros((y.shape[1], x.shape[1]))
    intercept = np.zeros(y.shape[1])
    for j in range(y.shape[1]):
        reg = PoissonRegressor(alpha=alpha, max_iter=max_iter, tol=1e-8).fit(x, y[:, j])
        coef[j], intercept[j] = reg.coef_, reg.intercept_
    return SmoothingBaseline(sigma_bins, log_offset, coef, intercept,
                             time.perf_counter() - start)
