"""Tuning curves to drifting gratings and the indices computed from them.

One definition of each index, used for model units and recorded neurons alike:

* **DI** (direction index) ``= 1 − r_nonpref / r_pref``: ``r_pref`` the largest mean response
  over directions, ``r_nonpref`` the mean response to the opposite direction (pref + 180°).
  Responses must be non-negative (rectified model responses ``max(z, 0)``, spike counts);
  DI is in [0, 1], NaN when ``r_pref = 0``.
* **DSI / OSI** (vector selectivity): ``|Σ_θ r(θ) e^{ikθ}| / Σ_θ r(θ)`` with k = 1 (direction,
  angle = preferred direction) or k = 2 (orientation, angle/2 = preferred orientation, where the
  orientation of a grating is taken as its drift direction mod 180°).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurorec.core.errors import DataError


def _opposite_index(directions_deg: np.ndarray) -> np.ndarray:
    d = np.mod(np.asarray(directions_deg, float), 360.0)
    opp = np.mod(d + 180.0, 360.0)
    # circular distance to every direction; the opposite must be in the set to within a
    # quarter of the spacing (monkey D's directions are stored rounded to whole degrees)
    dist = np.abs((opp[:, None] - d[None, :] + 180.0) % 360.0 - 180.0)
    idx = dist.argmin(axis=1)
    spacing = 360.0 / len(d)
    off = dist[np.arange(len(d)), idx] > spacing / 4
    if np.any(off):
        bad = d[off][0]
        raise DataError(f"directions: {bad:g} deg has no opposite direction in the set")
    return idx


def direction_index(responses: np.ndarray, directions_deg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """DI per unit and each unit's preferred direction.

    Args:
        responses: (n_units, n_directions) non-negative mean responses.
        directions_deg: (n_directions,) drift directions; each one's opposite must be present.
    Returns:
        di (n_units,) in [0, 1] (NaN where the unit never responds) and preferred direction
        (n_units,) in degrees.
    """
    r = np.asarray(responses, float)
    if r.ndim != 2 or r.shape[1] != len(directions_deg):
        raise DataError(f"responses: expected (n_units, {len(directions_deg)}), got {r.shape}")
    if np.any(r < 0):
        raise DataError("responses: DI needs non-negative responses (rectify first)")
    opp = _opposite_index(directions_deg)
    pref = r.argmax(axis=1)
    rows = np.arange(len(r))
    r_pref, r_non = r[rows, pref], r[rows, opp[pref]]
    with np.errstate(invalid="ignore", divide="ignore"):
        di = np.where(r_pref > 0, 1.0 - r_non / r_pref, np.nan)
    return di, np.asarray(directions_deg, float)[pref]


def vector_selectivity(responses: np.ndarray, directions_deg: np.ndarray, order: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Vector-sum selectivity of order 1 (direction) or 2 (orientation).

    Returns:
        magnitude (n_units,) in [0, 1] (NaN for silent units) and preferred angle (n_units,):
        direction in [0, 360) for order 1, orientation in [0, 180) for order 2, degrees.
    """
    r = np.asarray(responses, float)
    phase = np.exp(1j * order * np.deg2rad(np.asarray(directions_deg, float)))
    total = r.sum(axis=1)
    vec = r @ phase
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(total > 0, np.abs(vec) / total, np.nan)
    angle = np.mod(np.rad2deg(np.angle(vec)) / order, 360.0 / order)
    return mag, angle


def half_width(responses: np.ndarray) -> np.ndarray:
    """Half-width at half-height of each direction-tuning curve, degrees.

    The directions whose response is at least half the peak, counted contiguously from the
    peak on both sides (circularly), times the direction step, halved: with 16 directions a
    unit that answers one direction has half-width 11.25°, one that answers all 180°.

    Args:
        responses: (n_units, n_directions) non-negative responses at evenly spaced directions
            starting anywhere (the order must be the circular order).
    Returns:
        (n_units,) degrees, NaN for silent units.
    """
    r = np.asarray(responses, float)
    n_dir = r.shape[1]
    out = np.full(len(r), np.nan)
    for k, c in enumerate(r):
        peak = c.max()
        if not peak > 0:
            continue
        p, above, n = int(c.argmax()), c >= 0.5 * peak, 1
        for sign in (1, -1):
            d = 1
            while n < n_dir and above[(p + sign * d) % n_dir]:
                n, d = n + 1, d + 1
        out[k] = n * 180.0 / n_dir
    return out


@dataclass(frozen=True)
class Tuning:
    """Tuning of each unit to drifting gratings.

    Attributes:
        responses: (n_units, n_directions, n_speeds, n_sf) mean rectified responses.
        directions, speeds, spatial_frequencies: the grid (deg, deg/s, cyc/deg).
        di: (n_units,) DI at the unit's preferred speed and spatial frequency.
        preferred_direction: (n_units,) deg (argmax, at the preferred speed and sf).
        dsi, osi: (n_units,) vector selectivities; preferred_orientation (n_units,) deg.
        preferred_speed: (n_units,) deg/s; speed_curve: (n_units, n_speeds) responses at the
            preferred direction and spatial frequency.
        preferred_spatial_frequency: (n_units,) cyc/deg.
    """

    responses: np.ndarray
    directions: np.ndarray
    speeds: np.ndarray
    spatial_frequencies: np.ndarray
    di: np.ndarray
    preferred_direction: np.ndarray
    dsi: np.ndarray
    osi: np.ndarray
    preferred_orientation: np.ndarray
    preferred_speed: np.ndarray
    speed_curve: np.ndarray
    preferred_spatial_frequency: np.ndarray | None = None


def grating_tuning(responses: np.ndarray, directions: np.ndarray, speeds: np.ndarray,
                   spatial_frequencies: np.ndarray) -> Tuning:
    """Indices from a full direction × speed × spatial-frequency response grid.

    Each unit's preferred (speed, sf) is the one with the largest direction-averaged response;
    its direction tuning there gives DI, DSI, OSI; its speed curve is taken at the preferred
    direction and sf.
    """
    r = np.asarray(responses, float)
    n = len(r)
    mean_dir = r.mean(axis=1)  # (n, n_speeds, n_sf)
    flat = mean_dir.reshape(n, -1).argmax(axis=1)
    s_idx, f_idx = np.unravel_index(flat, mean_dir.shape[1:])
    rows = np.arange(n)
    curves = r[rows, :, s_idx, f_idx]  # (n, n_dirs)
    di, pref = direction_index(curves, directions)
    dsi, _ = vector_selectivity(curves, directions, 1)
    osi, ori = vector_selectivity(curves, directions, 2)
    d_idx = curves.argmax(axis=1)
    speed_curve = r[rows, d_idx, :, f_idx]
    return Tuning(r, np.asarray(directions, float), np.asarray(speeds, float),
                  np.asarray(spatial_frequencies, float), di, pref, dsi, osi, ori,
                  np.asarray(speeds, float)[speed_curve.argmax(axis=1)], speed_curve,
                  np.asarray(spatial_frequencies, float)[f_idx])


def responsive_units(r_pref: np.ndarray, fraction: float) -> np.ndarray:
    """(n_units,) bool: the response to the preferred grating is positive and at least
    ``fraction`` of the 90th percentile of the preferred responses over units (a unit that
    barely responds gets a DI from two tiny numbers)."""
    r = np.nan_to_num(np.asarray(r_pref, float))
    if not np.any(r > 0):
        return np.zeros(len(r), bool)
    return (r > 0) & (r >= fraction * np.quantile(r, 0.9))


def di_summary(di: np.ndarray, responsive: np.ndarray, selective: float = 0.3
               ) -> dict[str, float]:
    """Median DI, fraction with DI > 0.5 and the number with DI ≥ ``selective`` over the
    responsive units (NaN entries, silent units, are left out)."""
    d = np.asarray(di, float)[np.asarray(responsive, bool)]
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return {"n": 0, "median": float("nan"), "frac_above_0_5": float("nan"), "n_ds": 0}
    return {"n": len(d), "median": float(np.median(d)),
            "frac_above_0_5": float(np.mean(d > 0.5)), "n_ds": int(np.sum(d >= selective))}


def v1_direction_responses(session: int, max_contamination: float = 0.05,
                           window_s: tuple[float, float] = (0.0, 0.5),
                           subtract_baseline: bool = False
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Mean spike count per trial in ``window_s`` after stimulus onset, per unit and direction,
    for one bundled V1 session (Ecker et al. 2010), units with contamination below the limit.

    With ``subtract_baseline`` the unit's spontaneous count expected in the window (its mean
    rate over the 200 ms before onset, all trials, times the window's length) is subtracted
    and the result rectified at 0.

    Returns:
        responses (n_units, n_directions) and directions (n_directions,) in degrees.
    """
    from neurorec.data.binning import bin_trials
    from neurorec.datasets import load_v1_gratings
    from neurorec.datasets.v1_gratings import PRE_S

    rec = load_v1_gratings(session, max_contamination=max_contamination)
    binned = bin_trials(rec, 0.01, conditions=["direction"],
                        window=(PRE_S + window_s[0], PRE_S + window_s[1]))
    counts = binned.counts.sum(axis=1)  # (trials, units)
    dirs = binned.condition_table["direction"].to_numpy(float)
    resp = np.stack([counts[binned.condition == c].mean(axis=0) for c in range(len(dirs))],
                    axis=1)
    if subtract_baseline:
        pre = bin_trials(rec, 0.01, conditions=["direction"], window=(0.0, PRE_S))
        rate = pre.counts.sum(axis=1).mean(axis=0) / PRE_S  # spikes/s per unit
        resp = np.maximum(resp - rate[:, None] * (window_s[1] - window_s[0]), 0.0)
    order = np.argsort(dirs)
    return resp[:, order], dirs[order]
