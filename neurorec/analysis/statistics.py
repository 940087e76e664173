"""Spatiotemporal statistics of spike counts, for comparing model samples with data.

All functions take counts ordered trial × time × unit and return plain arrays, except
:func:`bootstrap_ci`, the percentile bootstrap the analyses share.
"""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator,
                 stat=np.mean) -> tuple[float, float]:
    """95 % percentile bootstrap CI of ``stat`` over the finite entries of ``values`` (n,),
    resampled with replacement ``n_boot`` times; (nan, nan) with fewer than 2 of them."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    idx = rng.integers(len(values), size=(n_boot, len(values)))
    boots = stat(values[idx], axis=1)
    return float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def psth(counts: np.ndarray, condition: np.ndarray, n_conditions: int) -> np.ndarray:
    """(n_conditions, n_bins, n_units) mean count per bin for each condition (NaN if absent)."""
    out = np.full((n_conditions, *counts.shape[1:]), np.nan)
    for c in range(n_conditions):
        sel = condition == c
        if sel.any():
            out[c] = counts[sel].mean(axis=0)
    return out


def minus_condition_mean(x: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """``x`` (n_trials, ...) as float with each condition's trial mean subtracted."""
    resid = x.astype(float)  # a copy
    for c in np.unique(condition):
        sel = condition == c
        resid[sel] -= x[sel].mean(axis=0)
    return resid


def noise_correlations(counts: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """(n_units, n_units) Pearson correlation of trial spike counts after removing each
    condition's mean (noise / spike-count correlations, as in Ecker et al. 2010)."""
    resid = minus_condition_mean(counts.sum(axis=1), condition)  # (trials, units)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(resid, rowvar=False)


def bin_correlations(counts: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """(n_units, n_units) correlation of single-bin counts after removing the PSTH: the
    within-bin (instantaneous) correlations that the in-bin coupling ``A`` models."""
    resid = minus_condition_mean(counts, condition)
    flat = resid.reshape(-1, counts.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(flat, rowvar=False)


def cross_correlogram(counts: np.ndarray, condition: np.ndarray, i: int, j: int,
                      max_lag: int) -> np.ndarray:
    """(2 max_lag + 1,) shift-predictor-corrected cross-correlogram of units ``i`` and ``j``:
    mean over trials and bins of ``δy_i(t) δy_j(t + lag)``, ``δy`` = count minus PSTH."""
    resid = minus_condition_mean(counts, condition)
    a, b = resid[:, :, i], resid[:, :, j]
    n_bins = counts.shape[1]
    out = np.empty(2 * max_lag + 1)
    for k, lag in enumerate(range(-max_lag, max_lag + 1)):
        if lag >= 0:
            out[k] = (a[:, : n_bins - lag] * b[:, lag:]).mean()
        else:
            out[k] = (a[:, -lag:] * b[:, : n_bins + lag]).mean()
    return out


def offdiag(matrix: np.ndarray) -> np.ndarray:
    """Upper-triangle entries (pairs i < j), NaN-free pairs only."""
    values = matrix[np.triu_indices_from(matrix, k=1)]
    return values[np.isfinite(values)]


def structure_agreement(data_counts: np.ndarray, data_condition: np.ndarray,
                        model_counts: np.ndarray, model_condition: np.ndarray) -> dict:
    """Correlation between data and model of noise correlations, in-bin correlations and
    PSTHs (each over unit pairs or condition × bin × unit entries)."""
    n_cond = int(max(data_condition.max(), model_condition.max())) + 1

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        ok = np.isfinite(a) & np.isfinite(b)
        return float(np.corrcoef(a[ok], b[ok])[0, 1])

    nc_d = noise_correlations(data_counts, data_condition)
    nc_m = noise_correlations(model_counts, model_condition)
    bc_d = bin_correlations(data_counts, data_condition)
    bc_m = bin_correlations(model_counts, model_condition)
    iu = np.triu_indices(data_counts.shape[2], k=1)
    return {
        "noise_correlation_r": corr(nc_d[iu], nc_m[iu]),
        "bin_correlation_r": corr(bc_d[iu], bc_m[iu]),
        "psth_r": corr(psth(data_counts, data_condition, n_cond).ravel(),
                       psth(model_counts, model_condition, n_cond).ravel()),
        "mean_noise_correlation_data": float(np.nanmean(nc_d[iu])),
        "mean_noise_correlation_model": float(np.nanmean(nc_m[iu])),
        "mean_bin_correlation_data": float(np.nanmean(bc_d[iu])),
        "mean_bin_correlation_model": float(np.nanmean(bc_m[iu])),
    }
