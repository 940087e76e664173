"""In-silico connectomics: testable predictions about connections from a learned ``R``.

``R[j, k]`` is the weight from unit k (presynaptic, frame t−1) to unit j (postsynaptic, frame t).
A unit's "strongest outgoing connections" are its ``k_top`` largest positive ``R[j, k]`` over
``j ≠ k``. Every prediction comes with a permutation p-value (tuning labels shuffled across
units, ``R`` kept) and a bootstrap CI (presynaptic units resampled with replacement, since the
connections of one unit are not independent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurorec.analysis.statistics import bootstrap_ci


@dataclass(frozen=True)
class Prediction:
    """One checkable statement: the effect, its 95 % bootstrap CI, a permutation p-value."""

    statement: str
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    n_units: int
    effect_name: str


def rf_centres(W: np.ndarray, patch_px: int, degrees_per_px: float) -> np.ndarray:
    """(n_units, 2) receptive-field centres (x right, y up; degrees from the patch centre): the
    centroid of each column's energy ``w²`` on the patch."""
    c = (np.arange(patch_px) - (patch_px - 1) / 2) * degrees_per_px
    x, y = np.meshgrid(c, -c)
    e = np.asarray(W, float) ** 2  # (D, n)
    e = e / e.sum(axis=0, keepdims=True)
    return np.stack([x.ravel() @ e, y.ravel() @ e], axis=1)


def angle_difference(a: np.ndarray, b: np.ndarray, period: float) -> np.ndarray:
    """|a − b| on a circle of ``period`` (degrees), in [0, period/2]."""
    d = np.mod(np.asarray(a, float) - np.asarray(b, float), period)
    return np.minimum(d, period - d)


def strongest_targets(R: np.ndarray, k_top: int, candidates: np.ndarray | None = None
                      ) -> np.ndarray:
    """(n_pre, k_top) indices of each presynaptic unit's largest positive outgoing weights.

    ``candidates``: boolean (n,) mask of allowed targets (and presynaptic units); -1 pads
    where a unit has fewer than ``k_top`` positive weights.
    """
    n = len(R)
    mask = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool)
    Rm = np.where(mask[:, None], np.asarray(R, float), -np.inf)  # rows = targets
    np.fill_diagonal(Rm, -np.inf)
    order = np.argsort(-Rm, axis=0)[:k_top].T  # (n, k_top)
    vals = np.take_along_axis(Rm.T, order, axis=1)
    return np.where(vals > 0, order, -1)


def _target_mean(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean of ``values[k, targets[k]]`` over valid targets, per presynaptic row k."""
    valid = targets >= 0
    vals = np.take_along_axis(values, np.where(valid, targets, 0), axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(valid.any(1), (vals * valid).sum(1) / valid.sum(1), np.nan)


def coorientation(R: np.ndarray, orientation_deg: np.ndarray, tuned: np.ndarray, k_top: int = 3,
                  n_perm: int = 2000, n_boot: int = 2000, seed: int = 0) -> Prediction:
    """Do a unit's strongest outgoing connections go to co-oriented units?

    Effect: (mean |Δori| of random pairs among tuned units) − (mean |Δori| to the ``k_top``
    strongest targets), degrees; > 0 means connections prefer co-oriented units. One-sided
    permutation p (orientations shuffled among tuned units).
    """
    rng = np.random.default_rng(seed)
    tuned = np.asarray(tuned, bool)
    idx = np.flatnonzero(tuned)
    targets = strongest_targets(R[np.ix_(idx, idx)], k_top)
    ori = np.asarray(orientation_deg, float)[idx]

    def per_unit(o: np.ndarray) -> np.ndarray:
        return _target_mean(angle_difference(o[:, None], o[None, :], 180.0), targets)

    pair = angle_difference(ori[:, None], ori[None, :], 180.0)
    chance = pair[~np.eye(len(ori), dtype=bool)].mean()
    observed = per_unit(ori)
    stat = chance - np.nanmean(observed)
    null = np.array([chance - np.nanmean(per_unit(rng.permutation(ori)))
                     for _ in range(n_perm)])
    p = (1 + np.sum(null >= stat)) / (1 + n_perm)
    lo, hi = bootstrap_ci(chance - observed, n_boot, rng)
    return Prediction(f"a unit's {k_top} strongest outgoing connections target units of similar "
                      f"preferred orientation", float(stat), lo, hi, float(p),
                      int(np.isfinite(observed).sum()),
                      "chance |Δori| − target |Δori| (deg)")


def weight_vs_orientation(R: np.ndarray, orientation_deg: np.ndarray, tuned: np.ndarray,
                          n_perm: int = 2000, n_boot: int = 2000, seed: int = 0,
                          n_bins: int = 6) -> tuple[Prediction, np.ndarray, np.ndarray]:
    """Correlation over all ordered pairs of tuned units between ``R[j, k]`` and
    ``cos(2 Δori)`` (1 for co-oriented, −1 for orthogonal); two-sided permutation p.

    Returns:
        the prediction, bin centres of |Δori| (deg) and the mean weight per bin.
    """
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(np.asarray(tuned, bool))
    Rt = np.asarray(R, float)[np.ix_(idx, idx)]
    ori = np.asarray(orientation_deg, float)[idx]
    off = ~np.eye(len(idx), dtype=bool)

    def corr(o: np.ndarray, cols: np.ndarray | None = None) -> float:
        sim = np.cos(np.deg2rad(2 * (o[:, None] - o[None, :])))
        if cols is None:
            w, s = Rt[off], sim[off]
        else:
            sub = off[:, cols]
            w, s = Rt[:, cols][sub], sim[:, cols][sub]
        return float(np.corrcoef(w, s)[0, 1])

    r_obs = corr(ori)
    null = np.array([corr(rng.permutation(ori)) for _ in range(n_perm)])
    p = (1 + np.sum(np.abs(null) >= abs(r_obs))) / (1 + n_perm)
    boots = np.array([corr(ori, rng.integers(len(idx), size=len(idx)))
                      for _ in range(n_boot)])
    d = angle_difference(ori[:, None], ori[None, :], 180.0)[off]
    edges = np.linspace(0, 90, n_bins + 1)
    which = np.clip(np.digitize(d, edges) - 1, 0, n_bins - 1)
    means = np.array([Rt[off][which == b].mean() if np.any(which == b) else np.nan
                      for b in range(n_bins)])
    pred = Prediction("connection weight grows with orientation similarity",
                      r_obs, float(np.nanquantile(boots, 0.025)),
                      float(np.nanquantile(boots, 0.975)), float(p), len(idx),
                      "Pearson r(weight, cos 2Δori)")
    return pred, (edges[:-1] + edges[1:]) / 2, means


def projection_along_direction(R: np.ndarray, preferred_direction_deg: np.ndarray,
                               centres: np.ndarray, selective: np.ndarray, k_top: int = 3,
                               n_perm: int = 2000, n_boot: int = 2000, seed: int = 0,
                               min_distance: float = 1e-6) -> Prediction:
    """Do direction-selective units project along their preferred direction in visual space?

    For each selective unit k and each of its ``k_top`` strongest targets j (any unit), the
    cosine between the displacement of receptive-field centres ``c_j − c_k`` and k's preferred
    direction; effect = the mean cosine (0 by chance, > 0: forward projection). One-sided
    permutation p (preferred directions shuffled among selective units).
    """
    rng = np.random.default_rng(seed)
    sel = np.flatnonzero(np.asarray(selective, bool))
    targets = strongest_targets(R, k_top)[sel]
    c = np.asarray(centres, float)
    disp = c[None, :, :] - c[sel, None, :]  # (n_sel, n, 2)
    dist = np.linalg.norm(disp, axis=-1)
    ang = np.arctan2(disp[..., 1], disp[..., 0])
    far = dist > min_distance
    targets = np.where((targets >= 0) & np.take_along_axis(far, np.maximum(targets, 0), 1),
                       targets, -1)
    pref = np.deg2rad(np.asarray(preferred_direction_deg, float)[sel])

    def per_unit(p: np.ndarray) -> np.ndarray:
        return _target_mean(np.cos(ang - p[:, None]), targets)

    observed = per_unit(pref)
    stat = float(np.nanmean(observed))
    null = np.array([np.nanmean(per_unit(rng.permutation(pref))) for _ in range(n_perm)])
    p = (1 + np.sum(null >= stat)) / (1 + n_perm)
    lo, hi = bootstrap_ci(observed, n_boot, rng)
    return Prediction(f"direction-selective units' {k_top} strongest outgoing connections lie "
                      f"along their preferred direction in visual space", stat, lo, hi,
                      float(p), int(np.isfinite(observed).sum()),
                      "mean cos(displacement angle − preferred direction)")


def weight_vs_direction(R: np.ndarray, preferred_direction_deg: np.ndarray,
                        selective: np.ndarray, n_perm: int = 2000, n_boot: int = 2000,
                        seed: int = 0) -> Prediction:
    """Correlation over ordered pairs of direction-selective units between ``R[j, k]`` and
    ``cos Δdir`` (connections between units preferring the same direction); two-sided p."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(np.asarray(selective, bool))
    Rt = np.asarray(R, float)[np.ix_(idx, idx)]
    d = np.deg2rad(np.asarray(preferred_direction_deg, float)[idx])
    off = ~np.eye(len(idx), dtype=bool)

    def corr(dd: np.ndarray, cols: np.ndarray | None = None) -> float:
        sim = np.cos(dd[:, None] - dd[None, :])
        cols = np.arange(len(idx)) if cols is None else cols
        sub = off[:, cols]
        return float(np.corrcoef(Rt[:, cols][sub], sim[:, cols][sub])[0, 1])

    r_obs = corr(d)
    null = np.array([corr(rng.permutation(d)) for _ in range(n_perm)])
    p = (1 + np.sum(np.abs(null) >= abs(r_obs))) / (1 + n_perm)
    boots = np.array([corr(d, rng.integers(len(idx), size=len(idx))) for _ in range(n_boot)])
    return Prediction("connection weight grows with preferred-direction similarity", r_obs,
                      float(np.nanquantile(boots, 0.025)), float(np.nanquantile(boots, 0.975)),
                      float(p), len(idx), "Pearson r(weight, cos Δdir)")
