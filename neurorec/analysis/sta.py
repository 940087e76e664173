"""Spike-triggered average of a stimulus time series, and what a linear filter predicts for it.

For a stimulus drawn from a Gaussian (or any elliptically symmetric) distribution and a
linear-nonlinear-Poisson neuron with filter ``k``, the STA is proportional to ``C k``, ``C`` the
stimulus covariance over lags (Bussgang 1952; Paninski 2003). Comparing the STA with ``C k``
checks a fitted GLM's stimulus filter against the data without the model.
"""

from __future__ import annotations

import numpy as np


def spike_triggered_average(counts: np.ndarray, stimulus: np.ndarray, n_lags: int) -> np.ndarray:
    """Count-weighted mean of the stimulus preceding each bin, lags 0 .. n_lags - 1.

    Args:
        counts: (n_trials, n_bins) spike counts of one unit.
        stimulus: (n_trials, n_bins) binned stimulus (one channel).
        n_lags: number of lags (bins); lags reaching before a trial's start are skipped.
    Returns:
        (n_lags,) ``sta[l] = Σ_t y_t s_{t-l} / Σ_t y_t`` over bins with ``t >= n_lags - 1``.
    """
    _, n_bins = counts.shape
    y = counts[:, n_lags - 1:].astype(float)
    sta = np.array([(y * stimulus[:, n_lags - 1 - lag: n_bins - lag]).sum()
                    for lag in range(n_lags)])
    return sta / y.sum()


def lagged_covariance(stimulus: np.ndarray, n_lags: int) -> np.ndarray:
    """(n_lags, n_lags) covariance of the stimulus at lags ``i`` and ``j`` (Toeplitz, within
    trials, mean removed)."""
    s = stimulus - stimulus.mean()
    n_bins = s.shape[1]
    acov = np.array([(s[:, lag:] * s[:, : n_bins - lag]).sum() / s[:, lag:].size
                     for lag in range(n_lags)])
    idx = np.abs(np.arange(n_lags)[:, None] - np.arange(n_lags)[None, :])
    return acov[idx]


def filter_sta_agreement(filt: np.ndarray, counts: np.ndarray, stimulus: np.ndarray) -> dict:
    """How well a fitted filter explains the STA.

    Args:
        filt: (n_lags,) filter over lags 0 .. n_lags - 1 (drive per stimulus unit).
        counts, stimulus: (n_trials, n_bins) as in :func:`spike_triggered_average`.
    Returns:
        ``sta`` and ``predicted`` (``C k`` scaled by least squares to the STA), both
        (n_lags,), and ``r``, their Pearson correlation.
    """
    n_lags = len(filt)
    sta = spike_triggered_average(counts, stimulus, n_lags)
    ck = lagged_covariance(stimulus, n_lags) @ filt
    scale = float(ck @ sta / (ck @ ck)) if ck @ ck > 0 else 0.0
    return {"sta": sta, "predicted": scale * ck, "r": float(np.corrcoef(sta, ck)[0, 1])}
