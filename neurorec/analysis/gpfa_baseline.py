"""GPFA co-smoothing baseline (Yu et al. 2009) with Elephant's ``elephant.gpfa.GPFA``.

GPFA is fitted (EM) to the held-in units' spike trains of the training trials, binned at the
data's bin size; the latents (orthonormalised posterior means) of every trial are then inferred
from held-in spikes alone, and a Poisson GLM (log link, intercept; scikit-learn
``PoissonRegressor``) maps them to each held-out unit's counts, fitted on the training trials.
Elephant bins spike trains itself: counts are turned back into spike times at bin centres
(:func:`neurorec.data.recording.counts_to_spike_times`), which re-bin to the same counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from neurorec.core.errors import DataError


def to_spiketrains(counts: np.ndarray, bin_size: float) -> list[list]:
    """One list of ``neo.SpikeTrain`` (one per unit, seconds from trial start) per trial."""
    import neo
    import quantities as pq

    _n_trials, n_bins, n_units = counts.shape
    stop = n_bins * bin_size
    centres = (np.arange(n_bins) + 0.5) * bin_size
    out = []
    for trial in counts:
        out.append([neo.SpikeTrain(np.repeat(centres, trial[:, j].astype(int)) * pq.s,
                                   t_start=0.0 * pq.s, t_stop=stop * pq.s)
                    for j in range(n_units)])
    return out


@dataclass
class GPFABaseline:
    """Fitted GPFA + Poisson readout. ``gpfa`` (the Elephant object), ``coef_`` (n_heldout,
    x_dim) acting on latents standardised by ``z_mean_``, ``z_std_`` (training trials; the
    readout's L2 penalty then does not depend on the latents' arbitrary scale),
    ``intercept_`` (n_heldout,), ``fit_time_s``."""

    gpfa: object
    bin_size: float
    coef_: np.ndarray
    intercept_: np.ndarray
    fit_time_s: float
    z_mean_: np.ndarray | float = 0.0
    z_std_: np.ndarray | float = 1.0

    def latents(self, heldin_counts: np.ndarray) -> np.ndarray:
        """(n_trials, n_bins, x_dim) orthonormalised latents from held-in counts."""
        trains = to_spiketrains(heldin_counts, self.bin_size)
        x = self.gpfa.transform(trains, returned_data=["latent_variable_orth"])
        if isinstance(x, dict):
            x = x["latent_variable_orth"]
        return np.stack([np.asarray(t).T for t in x])

    def predict(self, heldin_counts: np.ndarray) -> np.ndarray:
        """(n_trials, n_bins, n_heldout) expected counts from held-in counts."""
        z = (self.latents(heldin_counts) - self.z_mean_) / self.z_std_
        return np.exp(z @ self.coef_.T + self.intercept_)


def fit_gpfa(train_heldin: np.ndarray, train_heldout: np.ndarray, bin_size: float,
             x_dim: int = 4, em_max_iters: int = 100, alpha: float = 1e-3,
             seed: int = 0) -> GPFABaseline:
    """Fit GPFA on held-in training spikes and the Poisson readout to held-out units.

    Args:
        train_heldin, train_heldout: (n_trials, n_bins, n_heldin / n_heldout) counts.
        bin_size: seconds; GPFA bins at this width (the counts' own bins).
        x_dim: latent dimensions (≤ n_heldin).
        em_max_iters: EM iterations (Elephant's default 500 is slow on 2000 trials).
        alpha: L2 weight of the readout's ``PoissonRegressor``.
        seed: seeds numpy's global generator, which Elephant's factor-analysis
            initialisation may draw from.
    """
    import quantities as pq
    from elephant.gpfa import GPFA
    from sklearn.linear_model import PoissonRegressor

    if x_dim > train_heldin.shape[2]:
        raise DataError(f"gpfa: x_dim: {x_dim} latents need ≥ {x_dim} held-in units, "
                        f"got {train_heldin.shape[2]}")
    start = time.perf_counter()
    np.random.seed(seed)  # noqa: NPY002  (Elephant draws from the global generator)
    gpfa = GPFA(bin_size=bin_size * 1000 * pq.ms, x_dim=x_dim, em_max_iters=em_max_iters)
    trains = to_spiketrains(train_heldin, bin_size)
    gpfa.fit(trains)
    base = GPFABaseline(gpfa, bin_size, np.zeros((train_heldout.shape[2], x_dim)),
                        np.zeros(train_heldout.shape[2]), 0.0)
    z = base.latents(train_heldin).reshape(-1, x_dim)
    base.z_mean_, base.z_std_ = z.mean(axis=0), np.clip(z.std(axis=0), 1e-12, None)
    z = (z - base.z_mean_) / base.z_std_
    y = train_heldout.reshape(-1, train_heldout.shape[2]).astype(float)
    for j in range(y.shape[1]):
        reg = PoissonRegressor(alpha=alpha, max_iter=1000, tol=1e-8).fit(z, y[:, j])
        base.coef_[j], base.intercept_[j] = reg.coef_, reg.intercept_
    base.fit_time_s = time.perf_counter() - start
    return base
