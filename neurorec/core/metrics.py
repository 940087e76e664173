"""Likelihood-based scores of predicted rates against observed counts (numpy, float64).

bits/spike follows the Neural Latents Benchmark (Pei et al. 2021):
``(NLL_null - NLL_model) / (n_spikes * ln 2)``, Poisson NLL including ``log y!``, the null
model predicting each neuron's mean count over the evaluated bins, rates clipped at 1e-9.
"""

from __future__ import annotations

import itertools

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


def deviance_explained(counts: np.ndarray, rates: np.ndarray,
                       observation: str = "poisson") -> float:
    """D², the fraction of deviance explained, averaged uniformly over units (scikit-learn's
    ``PoissonRegressor.score`` / ``d2_log_loss_score`` for one unit).

    ``1 - Σ (NLL_model - NLL_saturated) / Σ (NLL_null - NLL_saturated)`` per unit, sums over
    bins, the null predicting the unit's mean over these bins and the saturated model the
    observations themselves; NLLs are the observation model's (rates clipped at
    :data:`RATE_FLOOR`). A unit whose null deviance is 0 scores 1 if predicted as well, else 0.

    Args:
        counts: (..., n_units) observed counts (Bernoulli: spike / no spike).
        rates: (..., n_units) expected counts (Bernoulli: probabilities), same shape.
    """
    obs = make_observation(observation)
    y = _flat(counts)
    model, null = obs.score_tables(y, _flat(rates))
    saturated = obs.np_nll(y, obs.observed(y))
    num = (model - saturated).sum(axis=0)
    den = (null - saturated).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d2 = np.where(den > 0, 1.0 - num / den, np.where(num <= den, 1.0, 0.0))
    return float(np.mean(d2))


def aic(train_log_likelihood: float, n_parameters: int) -> float:
    """Akaike information criterion ``2k - 2 LL`` (LL on the training data, nats)."""
    return 2.0 * n_parameters - 2.0 * train_log_likelihood


# ------------------------------------------------------------ Neural Latents Benchmark scores
# co-bps and fp-bps are :func:`bits_per_spike` on the held-out units / the forward window
# (NLB's ``bits_per_spike`` on those arrays); PSTH R² and behaviour R² below follow
# ``nlb_tools.evaluation.eval_psth`` and ``velocity_decoding`` (tests compare to 1e-6).

#: the ridge penalties NLB's velocity decoder searches (``np.logspace(-4, 0, 9)``)
NLB_RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-4, 0, 9))


def r2_uniform(true: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination per column of (n_samples, n_outputs) arrays, averaged
    over columns (scikit-learn's ``r2_score``: a constant column scores 1 if predicted
    exactly, else 0)."""
    true = np.asarray(true, float)
    true = true[:, None] if true.ndim == 1 else true
    pred = np.asarray(pred, float).reshape(true.shape)  # a one-column fit predicts (n,)
    ss_res = ((true - pred) ** 2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
    return float(r2.mean())


def condition_psth(counts: np.ndarray, condition: np.ndarray, n_conditions: int,
                   smooth_bins: float = 0.0) -> np.ndarray:
    """(n_conditions, n_bins, n_units) trial-averaged counts per bin of each condition,
    each trial first smoothed along time with a Gaussian of SD ``smooth_bins`` bins
    (0: none; ``scipy.ndimage.gaussian_filter1d``, mode ``nearest``); NaN for a condition
    without trials.

    Args:
        counts: (n_trials, n_bins, n_units).
        condition: (n_trials,) condition index of each trial.
    """
    from scipy.ndimage import gaussian_filter1d

    y = np.asarray(counts, float)
    if smooth_bins > 0:
        y = gaussian_filter1d(y, smooth_bins, axis=1, mode="nearest")
    out = np.full((n_conditions, *y.shape[1:]), np.nan)
    for c in range(n_conditions):
        sel = np.asarray(condition) == c
        if sel.any():
            out[c] = y[sel].mean(axis=0)
    return out


def psth_r2(psth: np.ndarray, rates: np.ndarray, condition: np.ndarray) -> float:
    """NLB's PSTH R²: each condition's trial-averaged predicted rates against its true PSTH,
    conditions stacked along time, R² per unit averaged over units
    (``nlb_tools.evaluation.eval_psth`` without jitter).

    Args:
        psth: (n_conditions, n_bins, n_units) true PSTH (counts per bin); bins where unit 0's
            PSTH is NaN are left out, as NLB does.
        rates: (n_trials, n_bins, n_units) predicted rates of the evaluated trials.
        condition: (n_trials,) condition index of each evaluated trial; conditions without
            evaluated trials are skipped.
    """
    true, pred = [], []
    condition = np.asarray(condition)
    for c in range(psth.shape[0]):
        sel = condition == c
        if not sel.any():
            continue
        keep = ~np.isnan(psth[c, :, 0])
        true.append(psth[c][keep])
        pred.append(np.asarray(rates, float)[sel].mean(axis=0)[keep])
    return r2_uniform(np.vstack(true), np.vstack(pred))


def ridge_decoding_r2(train_rates: np.ndarray, train_target: np.ndarray,
                      eval_rates: np.ndarray, eval_target: np.ndarray,
                      alphas: tuple[float, ...] = NLB_RIDGE_ALPHAS) -> float:
    """NLB's behaviour decoding: ridge regression (with intercept) from rates to a behavioural
    target, the penalty chosen by 5-fold cross-validation (scikit-learn
    ``GridSearchCV(Ridge())``: folds in order, mean fold R²) on the training rows, R²
    (averaged over target columns) on the evaluated rows
    (``nlb_tools.evaluation.fit_and_eval_decoder``). Rows where the target is NaN are left
    out.

    Args:
        train_rates, eval_rates: (n_rows, n_units) predicted rates.
        train_target, eval_target: (n_rows, n_dims) behaviour.
    """
    def rows(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(t, float).reshape(len(t), -1)
        keep = ~np.isnan(t).any(axis=1)
        return np.asarray(x, float)[keep], t[keep]

    xtr, ytr = rows(train_rates, train_target)
    xev, yev = rows(eval_rates, eval_target)
    # GridSearchCV(Ridge()) written out on Gram matrices (one pass over the rows instead of
    # 5 × len(alphas) Ridge fits): KFold(5) in order, fold sizes as scikit-learn's, the mean
    # fold R² per alpha, the first best alpha, then the refit on every training row
    n = len(xtr)
    sizes = np.full(5, n // 5)
    sizes[: n % 5] += 1
    edges = np.concatenate([[0], np.cumsum(sizes)])
    parts = [(xtr[a:b], ytr[a:b]) for a, b in itertools.pairwise(edges)]
    stats = [(len(x), x.sum(0), y.sum(0), x.T @ x, x.T @ y) for x, y in parts]

    def solve(keep: list[int], alpha: float) -> tuple[np.ndarray, np.ndarray]:
        m = sum(stats[i][0] for i in keep)
        sx, sy = sum(stats[i][1] for i in keep), sum(stats[i][2] for i in keep)
        gxx = sum(stats[i][3] for i in keep) - np.outer(sx, sx) / m
        gxy = sum(stats[i][4] for i in keep) - np.outer(sx, sy) / m
        w = np.linalg.solve(gxx + alpha * np.eye(len(gxx)), gxy)
        return w, sy / m - (sx / m) @ w

    scores = np.zeros(len(alphas))
    for f, (x, y) in enumerate(parts):
        others = [i for i in range(5) if i != f]
        for a, alpha in enumerate(alphas):
            w, b = solve(others, alpha)
            scores[a] += r2_uniform(y, x @ w + b) / 5
    w, b = solve(list(range(5)), alphas[int(np.argmax(scores))])
    return r2_uniform(yev, xev @ w + b)
