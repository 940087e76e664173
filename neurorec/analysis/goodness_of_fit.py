"""Time-rescaling goodness of fit for binned point-process models (pure numpy).

The time-rescaling theorem (Brown et al. 2002, Neural Computation 14:325) maps the intervals
between spikes of a point process, integrated under its conditional intensity, to independent
unit-rate exponentials. With binned data (10 ms bins, several spikes per bin possible, a
Bernoulli model's probability per bin) the textbook sum of the intensity over the interval
is biased; the discrete-time version (Haslinger, Pipa & Brown 2010, Neural Computation
22:2477) uses, per bin, the probability of at least one spike ``p_t`` (Poisson:
``1 - exp(-λ_t)``, λ the expected count; Bernoulli: the model's probability) and draws where
inside the spike bin the interval ends:

    q_t = -log(1 - p_t)
    τ_k = Σ_{t_{k-1} < t < t_k} q_t  -  log(1 - δ_k p_{t_k}),   δ_k ~ Uniform(0, 1)
    z_k = 1 - exp(-τ_k)  ~  Uniform(0, 1), independent, under the model

where ``t_k`` are the bins holding a spike (a bin with several spikes counts once; the first
interval runs from the first bin, the last, censored stretch after the last spike is
dropped). The KS statistic of the ``z_k`` against Uniform(0, 1) is inside the 95 % band when
``D ≤ 1.36 / sqrt(n)``; the autocorrelation of ``Φ⁻¹(z_k)`` tests their independence (band
``± 1.96 / sqrt(n)``).

``p_t`` must be each unit's full conditional intensity given everything the model conditions
on before the unit's draw (its spike history, the other units' past, same-bin counts of units
earlier in an in-bin order, a latent filtered from the past): a model's one-step-ahead
``predict_rate``. Trials (or session segments) are concatenated in order: under the model
each bin's probability is conditional on everything before it, so the theorem holds for the
concatenation.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: the 95 % KS band is ``KS_BAND_95 / sqrt(n)`` (asymptotic Kolmogorov quantile)
KS_BAND_95 = 1.36
#: the 95 % band of an autocorrelation is ``ACF_BAND_95 / sqrt(n)``
ACF_BAND_95 = 1.96
#: units with fewer rescaled intervals are reported but not counted in fractions
MIN_INTERVALS = 10
_P_MAX = 1.0 - 1e-12


def spike_probability(rates: np.ndarray, observation: str = "poisson") -> np.ndarray:
    """Probability of at least one spike per bin.

    Args:
        rates: expected count per bin (Poisson) or spike probability (Bernoulli), any shape.
        observation: ``poisson`` or ``bernoulli``.
    Returns:
        ``p`` of the same shape, in [0, 1).
    """
    rates = np.asarray(rates, dtype=float)
    if observation == "poisson":
        p = -np.expm1(-np.clip(rates, 0.0, None))
    elif observation == "bernoulli":
        p = rates
    else:
        raise ValueError(f"time rescaling needs poisson or bernoulli observations, got "
                         f"{observation!r}")
    return np.clip(p, 0.0, _P_MAX)


def rescaled_intervals(spiked: np.ndarray, prob: np.ndarray, rng: np.random.Generator,
                       correction: bool = True) -> np.ndarray:
    """Rescaled inter-spike intervals of one unit, mapped to Uniform(0, 1) under the model.

    Args:
        spiked: (n_bins,) bool, a spike (one or more) in the bin.
        prob: (n_bins,) spike probability per bin (:func:`spike_probability`); with
            ``correction=False`` the expected count per bin.
        rng: draws the position inside each spike bin (``correction=True`` only).
        correction: the discrete-time correction (Haslinger et al. 2010). False: the
            continuous-time sum of the expected counts from the bin after the previous spike
            to the spike bin, inclusive (biased when counts per bin are not small).
    Returns:
        (n_spike_bins,) ``z_k = 1 - exp(-τ_k)``, in spike order (the first from bin 0).
    """
    spike_bins = np.flatnonzero(np.asarray(spiked, bool))
    if spike_bins.size == 0:
        return np.empty(0)
    prob = np.asarray(prob, dtype=float)
    previous = np.concatenate([[-1], spike_bins[:-1]])
    if correction:
        q = -np.log1p(-np.clip(prob, 0.0, _P_MAX))
        cum = np.concatenate([[0.0], np.cumsum(q)])  # cum[b] = Σ_{t < b} q_t
        delta = rng.uniform(size=spike_bins.size)
        tail = -np.log1p(-delta * prob[spike_bins])
        tau = cum[spike_bins] - cum[previous + 1] + tail
    else:
        cum = np.concatenate([[0.0], np.cumsum(prob)])
        tau = cum[spike_bins + 1] - cum[previous + 1]
    return -np.expm1(-tau)


def ks_statistic(z: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of the sample ``z`` from Uniform(0, 1) (NaN when empty)."""
    if len(z) == 0:
        return float("nan")
    return float(stats.kstest(z, "uniform").statistic)


def rescaled_autocorrelation(z: np.ndarray, max_lag: int = 10) -> np.ndarray:
    """(max_lag,) autocorrelation at lags 1..max_lag of ``Φ⁻¹(z)`` (NaN where undefined)."""
    out = np.full(max_lag, np.nan)
    if len(z) < 3:
        return out
    g = stats.norm.ppf(np.clip(z, 1e-12, 1 - 1e-12))
    g = g - g.mean()
    denom = float(g @ g)
    if denom == 0:
        return out
    for lag in range(1, min(max_lag, len(g) - 1) + 1):
        out[lag - 1] = float(g[:-lag] @ g[lag:]) / denom
    return out


@dataclass(frozen=True)
class UnitRescaling:
    """Time rescaling of one unit: ``z`` (its rescaled intervals), KS and autocorrelation."""

    z: np.ndarray
    statistic: float
    band: float
    acf: np.ndarray
    acf_band: float

    @property
    def n_intervals(self) -> int:
        return len(self.z)

    @property
    def inside(self) -> bool | None:
        """KS statistic inside the 95 % band; None with fewer than MIN_INTERVALS intervals."""
        if self.n_intervals < MIN_INTERVALS:
            return None
        return bool(self.statistic <= self.band)

    @property
    def acf_fraction_in_band(self) -> float | None:
        ok = np.isfinite(self.acf)
        if self.n_intervals < MIN_INTERVALS or not ok.any():
            return None
        return float(np.mean(np.abs(self.acf[ok]) <= self.acf_band))


def time_rescaling(counts: np.ndarray, rates: np.ndarray, observation: str = "poisson",
                   seed: int = 0, correction: bool = True, max_lag: int = 10,
                   segments: np.ndarray | None = None) -> list[UnitRescaling]:
    """Time-rescaling test of every unit.

    Args:
        counts: (n_trials, n_bins, n_units) or (n_bins, n_units) observed counts; trials (or
            segments) are concatenated in order.
        rates: the same shape, the model's one-step-ahead expected counts (Bernoulli:
            probabilities) given the observed past.
        observation: ``poisson`` or ``bernoulli``.
        seed: seeds the in-bin draws; unit ``i`` uses the ``i``-th child of
            ``numpy.random.SeedSequence(seed)`` (the same draws whatever other units exist).
        correction: the discrete-time correction (False: the continuous-time formula).
        max_lag: autocorrelation lags 1..max_lag.
        segments: (n_bins,) stretch id of each (flattened) bin: intervals restart where it
            changes (the first interval of a stretch runs from its first bin, the censored
            tail of each stretch is dropped) — for the test blocks of a session, whose bins
            are not adjacent across a gap. None: one stretch.
    Returns:
        One :class:`UnitRescaling` per unit.
    """
    counts = np.asarray(counts)
    n_units = counts.shape[-1]
    y = counts.reshape(-1, n_units)
    r = np.asarray(rates, dtype=float).reshape(-1, n_units)
    if y.shape != r.shape:
        raise ValueError(f"counts {counts.shape} and rates {np.shape(rates)} differ in shape")
    prob = spike_probability(r, observation) if correction else r
    children = np.random.SeedSequence(seed).spawn(n_units)
    out = []
    if segments is None:
        bounds = [(0, len(y))]
    else:
        seg = np.asarray(segments).reshape(-1)
        cuts = np.flatnonzero(seg[1:] != seg[:-1]) + 1
        edges = np.concatenate([[0], cuts, [len(seg)]])
        bounds = list(itertools.pairwise(edges))
    for u in range(n_units):
        rng = np.random.default_rng(children[u])
        z = np.concatenate([rescaled_intervals(y[a:b, u] > 0, prob[a:b, u], rng,
                                               correction=correction) for a, b in bounds])
        n = len(z)
        band = KS_BAND_95 / np.sqrt(n) if n else float("nan")
        acf_band = ACF_BAND_95 / np.sqrt(n) if n else float("nan")
        out.append(UnitRescaling(z, ks_statistic(z), float(band),
                                 rescaled_autocorrelation(z, max_lag), float(acf_band)))
    return out


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def rescaling_summary(results: list[UnitRescaling], unit_ids: np.ndarray) -> dict:
    """The ``metrics.json`` / ``evaluation.json`` entries of a time-rescaling test.

    Returns ``ks`` (per unit: ``unit_id``, ``statistic``, ``band`` (half-width 1.36/√n),
    ``inside``, ``n_intervals``), ``ks_fraction_in_band`` (over units with ≥ MIN_INTERVALS
    intervals), ``ks_failing_units``, ``rescaled_autocorrelation`` (per unit: ``unit_id``,
    ``acf`` at lags 1..L, ``band``, ``fraction_in_band``) and
    ``rescaled_autocorrelation_fraction_in_band`` (mean over units).
    """
    ks, acf = [], []
    for uid, res in zip(unit_ids, results, strict=True):
        ks.append({"unit_id": str(uid), "statistic": _num(res.statistic),
                   "band": _num(res.band), "inside": res.inside,
                   "n_intervals": res.n_intervals})
        acf.append({"unit_id": str(uid), "acf": [_num(a) for a in res.acf],
                    "band": _num(res.acf_band), "fraction_in_band": res.acf_fraction_in_band})
    tested = [k["inside"] for k in ks if k["inside"] is not None]
    acf_tested = [a["fraction_in_band"] for a in acf if a["fraction_in_band"] is not None]
    return {
        "ks": ks,
        "ks_fraction_in_band": float(np.mean(tested)) if tested else None,
        "ks_n_units_tested": len(tested),
        "ks_failing_units": [k["unit_id"] for k in ks if k["inside"] is False],
        "rescaled_autocorrelation": acf,
        "rescaled_autocorrelation_fraction_in_band":
            float(np.mean(acf_tested)) if acf_tested else None,
    }
