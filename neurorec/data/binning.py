"""Spike times → counts per trial (trial × time × unit), conditions and train/test splits."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError
from neurorec.data.recording import BinnedTrials, Recording, StimulusSeries
from neurorec.data.validation import SPLIT_MESSAGE, SPLIT_VALUES

_EPS = 1e-9  # tolerance, in bins, for trial durations that are whole numbers of bins


def _condition_index(
    trials: pd.DataFrame, columns: Sequence[str], source: str
) -> tuple[np.ndarray, pd.DataFrame]:
    """Index of each trial's condition (n_trials,) and the sorted table of unique conditions."""
    cols = list(columns)
    missing = [c for c in cols if c not in trials.columns]
    if missing:
        raise DataError(
            f"{source}: conditions: column(s) {missing} not in the trials table; "
            f"have {list(trials.columns)}"
        )
    if not cols:
        raise DataError(f"{source}: conditions: no condition columns given")
    sub = trials[cols].reset_index(drop=True)
    if sub.isna().to_numpy().any():
        bad = [c for c in cols if sub[c].isna().any()]
        raise DataError(f"{source}: conditions: missing values in column(s) {bad}")
    table = sub.drop_duplicates().sort_values(cols, kind="stable").reset_index(drop=True)
    keyed = table.assign(_condition=np.arange(len(table)))
    merged = sub.merge(keyed, on=cols, how="left", sort=False)
    return merged["_condition"].to_numpy(np.int64), table


def split_trials(
    trials: pd.DataFrame,
    condition: np.ndarray,
    test_fraction: float,
    seed: int,
    *,
    source: str = "trials",
) -> np.ndarray:
    """Which trials are held out for testing.

    Args:
        trials: the trials table; when it has a ``split`` column (NLB values ``train``,
            ``val``, ``test``, ``none``), that column decides (``val`` and ``test`` are held
            out; :func:`bin_trials` drops ``none`` trials first) and
            ``test_fraction``/``seed`` are ignored.
        condition: (n_trials,) condition index of each trial.
        test_fraction: share of each condition's trials held out, in [0, 1).
        seed: seed of the ``numpy.random.Generator`` that picks test trials.
        source: where the trials come from, for error messages.

    Returns:
        (n_trials,) bool, True for test trials. Stratified: within each condition (in
        increasing index order) ``floor(test_fraction * n_c + 0.5)`` trials are drawn without
        replacement, at least 1 and at most ``n_c - 1`` when the condition has >= 2 trials
        and ``test_fraction > 0``; a condition with a single trial keeps it for training
        unless rounding asks for it. The same inputs and seed give the same split.
    """
    condition = np.asarray(condition)
    if condition.shape != (len(trials),):
        raise DataError(
            f"{source}: condition: expected shape ({len(trials)},), got {condition.shape}"
        )
    if "split" in trials.columns:
        values = trials["split"].astype(str).to_numpy()
        bad = sorted(set(values) - set(SPLIT_VALUES))
        if bad:
            raise DataError(f"{source}: split: {SPLIT_MESSAGE}, got {bad}")
        return np.isin(values, ("val", "test"))
    if not 0.0 <= float(test_fraction) < 1.0:
        raise DataError(f"{source}: test_fraction: must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(trials), dtype=bool)
    for c in np.unique(condition):
        idx = np.flatnonzero(condition == c)
        n_c = idx.size
        k = int(np.floor(test_fraction * n_c + 0.5))
        if test_fraction > 0 and n_c >= 2:
            k = min(max(k, 1), n_c - 1)
        if k:
            is_test[rng.permutation(idx)[:k]] = True
    return is_test


def bin_stimulus(series: StimulusSeries, edges: np.ndarray, source: str) -> np.ndarray:
    """Average a sampled stimulus over bins.

    Args:
        series: the stimulus; sample ``k`` is at ``start_time + k / rate_hz`` seconds.
        edges: (n_trials, n_bins + 1) bin edges, seconds.
        source: for error messages.
    Returns:
        (n_trials, n_bins, n_channels): the mean of the samples ``e_i <= t_k < e_{i+1}``.
    """
    values = np.asarray(series.values, dtype=float)
    # first sample at or after each edge; the small slack absorbs rounding of k / rate
    index = np.ceil((edges - series.start_time) * series.rate_hz - 1e-6).astype(np.int64)
    if index.min() < 0 or index.max() > len(values):
        covered = (series.start_time, series.start_time + len(values) / series.rate_hz)
        raise DataError(f"{source}: stimulus: the series covers {covered[0]:.6g}–{covered[1]:.6g}"
                        f" s, but the binned trials span {edges.min():.6g}–{edges.max():.6g} s")
    n_per_bin = np.diff(index, axis=1)
    if n_per_bin.min() < 1:
        raise DataError(f"{source}: stimulus: sampled at {series.rate_hz:g} Hz, coarser than "
                        f"the bins (some bins hold no sample); use larger bins")
    cumulative = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    sums = cumulative[index[:, 1:]] - cumulative[index[:, :-1]]
    return sums / n_per_bin[..., None]


class CroppingWarning(UserWarning):
    """Trials of unequal length were cut to the shortest (``unequal="crop"``)."""


def _anchors(trials: pd.DataFrame, align: str | None, src: str) -> np.ndarray:
    """(n_trials,) time each trial's window is relative to: ``start_time`` or ``align``."""
    if align is None:
        return trials["start_time"].to_numpy(float)
    if align not in trials.columns:
        raise DataError(f"{src}: data.align: column {align!r} not in the trials table; "
                        f"have {list(trials.columns)}")
    event = pd.to_numeric(trials[align], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(event)
    if bad.any():
        raise DataError(f"{src}: data.align: {int(bad.sum())} trials with a missing or "
                        f"non-numeric {align!r} (first at row {int(np.argmax(bad))})")
    return event


def bin_trials(
    rec: Recording,
    bin_size: float,
    conditions: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    window: tuple[float, float] | None = None,
    align: str | None = None,
    unequal: str = "crop",
) -> BinnedTrials:
    """Count spikes in bins aligned to each trial's ``start_time`` (or to an event column).

    Args:
        rec: the recording (spike times sorted per unit, as ``validate_recording`` ensures).
        bin_size: bin width in seconds.
        conditions: trials columns whose unique combinations are the conditions; default
            ``rec.stimulus_columns``.
        test_fraction, seed: passed to :func:`split_trials` (a ``split`` column wins; its
            ``none`` trials are dropped before anything else).
        window: ``(t0, t1)`` seconds relative to the anchor; default ``(0, shortest trial
            duration after the anchor)`` (``unequal="crop"``) or ``(0, longest)``
            (``"mask"``). ``n_bins = floor((t1 - t0) / bin_size + 1e-9)``.
        align: a trials column of event times (s, e.g. ``stimulus_onset``): the anchor of
            each trial's window instead of its ``start_time``.
        unequal: ``"crop"``: every trial is cut to the window (with the default window, to
            the shortest trial; a :class:`CroppingWarning` says so when that loses at least
            one bin of a longer trial); ``"mask"``: trials keep their length, bins past a
            trial's ``stop_time`` (or before its ``start_time``) count 0 and are False in
            ``BinnedTrials.mask``.

    Returns:
        ``BinnedTrials`` with ``counts`` (n_trials, n_bins, n_units) int64, where bin ``i``
        of trial ``j`` counts spikes ``t`` with ``e_i <= t < e_{i+1}``, ``e_i = a_j + t0 + i
        * bin_size`` (``a_j`` the anchor); ``time`` (n_bins,) bin centres relative to the
        anchor; trials keep the order of ``rec.trials``; ``mask`` (n_trials, n_bins) bool
        with ``unequal="mask"``, else None.
    """
    src = rec.source
    if not np.isfinite(bin_size) or bin_size <= 0:
        raise DataError(f"{src}: bin_size: must be a positive number of seconds, got {bin_size}")
    if unequal not in ("crop", "mask"):
        raise DataError(f"{src}: unequal: expected 'crop' or 'mask', got {unequal!r}")
    trials = rec.trials
    for col in ("start_time", "stop_time"):
        if col not in trials.columns:
            raise DataError(f"{src}: trials: missing column {col!r}")
    if "split" in trials.columns:
        keep = trials["split"].astype(str).to_numpy() != "none"
        if not keep.all():
            trials = trials[keep].reset_index(drop=True)
    if len(trials) == 0:
        raise DataError(f"{src}: trials: the trials table is empty")
    start = trials["start_time"].to_numpy(float)
    stop = trials["stop_time"].to_numpy(float)
    anchor = _anchors(trials, align, src)
    if align is not None and np.any(anchor > stop):
        i = int(np.argmax(anchor > stop))
        raise DataError(f"{src}: data.align: {align!r} of trial {i} ({anchor[i]:.6g} s) is "
                        f"after its stop_time ({stop[i]:.6g} s)")
    after = stop - anchor
    if window is None:
        t0, t1 = 0.0, float(np.min(after) if unequal == "crop" else np.max(after))
        lost = np.floor(np.max(after) / bin_size + _EPS) - np.floor(t1 / bin_size + _EPS)
        if unequal == "crop" and lost >= 1:
            warnings.warn(f"{src}: trials: durations after the anchor range "
                          f"{np.min(after):.6g}–{np.max(after):.6g} s; every trial is cropped "
                          f"to the shortest, dropping up to {int(lost)} bins of the longest "
                          "(set data.window, data.unequal: mask, or use data.mode: session)",
                          CroppingWarning, stacklevel=2)
    else:
        t0, t1 = float(window[0]), float(window[1])
        if not t1 > t0:
            raise DataError(f"{src}: window: expected t0 < t1, got {window}")
    n_bins = int(np.floor((t1 - t0) / bin_size + _EPS))
    if n_bins < 1:
        raise DataError(
            f"{src}: bin_size: {bin_size} s is longer than the window of {t1 - t0:.6g} s"
        )
    cols = tuple(rec.stimulus_columns) if conditions is None else tuple(conditions)
    condition, table = _condition_index(trials, cols, src)
    is_test = split_trials(trials, condition, test_fraction, seed, source=src)

    offsets = t0 + np.arange(n_bins + 1) * bin_size  # (n_bins + 1,)
    edge_grid = anchor[:, None] + offsets[None, :]  # (n_trials, n_bins + 1)
    edges = edge_grid.ravel()  # (n_trials * (n_bins + 1),)
    n_trials = len(trials)
    counts = np.empty((n_trials, n_bins, rec.n_units), dtype=np.int64)
    for u, t in enumerate(rec.spike_times):
        below = np.searchsorted(np.asarray(t, dtype=float), edges, side="left")
        counts[:, :, u] = np.diff(below.reshape(n_trials, n_bins + 1), axis=1)
    mask = None
    if unequal == "mask":
        # a bin is observed when it lies wholly inside its trial (slack of 1e-9 bins)
        slack = _EPS * bin_size
        mask = ((edge_grid[:, :-1] >= start[:, None] - slack)
                & (edge_grid[:, 1:] <= stop[:, None] + slack))
        counts[~mask] = 0
    stimulus = None
    if rec.stimulus is not None:
        stimulus = bin_stimulus(rec.stimulus, edges.reshape(n_trials, n_bins + 1), src)
    return BinnedTrials(
        counts=counts,
        bin_size=float(bin_size),
        time=t0 + (np.arange(n_bins) + 0.5) * bin_size,
        condition=condition,
        condition_table=table,
        is_test=is_test,
        unit_ids=np.asarray(rec.unit_ids),
        source=src,
        stimulus=stimulus,
        mask=mask,
    )
