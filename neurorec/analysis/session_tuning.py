"""Tuning curves of a session's units against its behavioural covariates, by pynapple.

:func:`data_tuning_curves` wraps ``pynapple.compute_tuning_curves`` (pynapple ≥ 0.11; the
successor of ``compute_1d_tuning_curves`` / ``compute_2d_tuning_curves``): the counts of the
chosen bins as a ``TsdFrame`` divided by the bin width (so the mean per feature bin is a rate
in Hz), the covariate as a ``Tsd`` / ``TsdFrame`` on the same bin centres, restricted to the
chosen bins (an ``IntervalSet`` of their runs).
"""

from __future__ import annotations

import numpy as np

from neurorec.data.session import BinnedSession


def _runs(time: np.ndarray, rows: np.ndarray, bin_size: float):
    """An IntervalSet of the runs of consecutive chosen bins."""
    import pynapple as nap

    idx = np.flatnonzero(rows)
    if idx.size == 0:
        return nap.IntervalSet(start=[], end=[])
    cut = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = [time[r[0]] - bin_size / 2 for r in np.split(idx, cut)]
    ends = [time[r[-1]] + bin_size / 2 for r in np.split(idx, cut)]
    return nap.IntervalSet(start=starts, end=ends)


def data_tuning_curves(session: BinnedSession, covariate: np.ndarray,
                       bins: int | tuple[int, int], ranges: list[tuple[float, float]],
                       rows: np.ndarray | None = None,
                       circular: bool = False) -> tuple[np.ndarray, list[np.ndarray],
                                                        np.ndarray]:
    """Mean firing rate of every unit per covariate bin (pynapple).

    Args:
        covariate: (n_bins,) or (n_bins, 2) values on the session's bins.
        bins: bins per dimension.
        ranges: one (lo, hi) per dimension.
        rows: (n_bins,) bool, the session bins used (default: every bin not split ``none``).
        circular: wrap a 1-D angle into ``ranges[0]`` first.
    Returns:
        ``curves`` (n_units, *bins) Hz (NaN where the animal never was), ``centres`` one
        (bins_d,) array per dimension, ``occupancy`` (*bins) bins of data per feature bin.
    """
    import pynapple as nap

    rows = ~session.mask("none") if rows is None else np.asarray(rows, bool)
    x = np.asarray(covariate, dtype=float)
    if circular:
        lo, hi = ranges[0]
        x = lo + np.mod(x - lo, hi - lo)
    t = session.time
    data = nap.TsdFrame(t=t, d=session.counts / session.bin_size)
    feature = nap.Tsd(t=t, d=x) if x.ndim == 1 else nap.TsdFrame(t=t, d=x)
    ep = _runs(t, rows, session.bin_size)
    n_bins = bins if isinstance(bins, int) else list(bins)
    tc = nap.compute_tuning_curves(data, feature, bins=n_bins, range=list(ranges), epochs=ep)
    edges = tc.attrs["bin_edges"]
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    occupancy = np.asarray(tc.attrs["occupancy"], dtype=float)
    return np.asarray(tc.values, dtype=float), centres, occupancy


__all__ = ["data_tuning_curves"]
