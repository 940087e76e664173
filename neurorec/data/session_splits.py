"""Held-out bins of a continuous session: contiguous blocks with guard bands.

Public API (stable):

- ``gap_bins(gap_s, bin_size) -> int``: guard band in bins, ``ceil(gap_s / bin_size)``, at
  least 1 (None: 1).
- ``guard_gap_s(spec) -> float``: the longest filter of a model spec (``history``,
  ``coupling``, ``stimulus_filter`` durations and any temporal covariate term's ``duration``), or
  ``spec.data.gap`` when set.
- ``default_split_labels(time, segment, bin_size, test_fraction=0.2, test_blocks=5,
  gap_s=None) -> (split, segment)``: per-bin labels and segments of the default split.
- ``default_split(session, test_fraction=0.2, test_blocks=5, gap_s=None) -> BinnedSession``.
- ``blocked_folds(session, k, gap_s=None, within=("train",), label="test")
  -> list[BinnedSession]``: K contiguous folds over the ``within`` bins.
- ``restart_segments(segment, split) -> segment``: new ids where the label leaves a value
  other than ``none``.
- ``heldout_split(time, segment, bin_size, eligible, heldout, gap_s, label="test")
  -> (split, segment)``: the rule both use.

The rule: a bin of ``eligible`` is ``label`` when in ``heldout``, ``none`` when it lies
within ``gap_bins`` bins (in time, before or after) of a held-out bin, else ``train`` (the
guard band is taken from the training side);
bins outside ``eligible`` are ``none``. A model whose filters are at most ``gap_s`` long
then never reads a held-out bin when predicting a training bin, nor the reverse. Segments
restart wherever the label leaves a value other than ``none`` (a guard band starts a new
segment and warms up the block after it), so recurrences and history never run from a
training block into a held-out one.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.session import BinnedSession


def gap_bins(gap_s: float | None, bin_size: float) -> int:
    """Guard band in bins: ``ceil(gap_s / bin_size - 1e-9)``, at least 1 (None: 1)."""
    if gap_s is None:
        return 1
    if not np.isfinite(gap_s) or gap_s < 0:
        raise DataError(f"gap: must be a non-negative number of seconds, got {gap_s}")
    return max(1, math.ceil(float(gap_s) / bin_size - 1e-9))


def guard_gap_s(spec) -> float:
    """The guard band a spec needs, seconds: ``spec.data.gap`` when set, else the longest of
    its filters (``history``, ``coupling``, ``stimulus_filter`` when enabled, and the
    ``duration`` of every ``raised_cosine_lags`` covariate entry), at least
    ``spec.data.bin_size``."""
    data = spec.data
    if getattr(data, "gap", None) is not None:
        return float(data.gap)
    longest = float(data.bin_size)
    for name in ("history", "coupling", "stimulus_filter"):
        part = getattr(spec, name, None)
        if part is not None and getattr(part, "enabled", False):
            longest = max(longest, float(part.duration))
    covs = getattr(spec, "covariates", None)
    entries = covs.values() if isinstance(covs, dict) else (covs or ())
    for entry in entries:
        if getattr(entry, "basis", "raised_cosine_lags") != "raised_cosine_lags":
            continue  # only temporal filters reach back in time
        duration = getattr(entry, "duration", None)
        if duration is not None:
            longest = max(longest, float(duration))
    return longest


def restart_segments(segment: np.ndarray, split: np.ndarray) -> np.ndarray:
    """(n_bins,) segments with a new id wherever ``segment`` changes or the label ``split``
    leaves a value other than ``none`` (a run of ``none`` joins the block after it)."""
    if split.size == 0:
        return segment.astype(np.int64)
    leave = (split[1:] != split[:-1]) & (split[:-1] != "none")
    new = (np.diff(segment) != 0) | leave
    return np.concatenate([[0], np.cumsum(new)]).astype(np.int64)


def heldout_split(time: np.ndarray, segment: np.ndarray, bin_size: float,
                  eligible: np.ndarray, heldout: np.ndarray, gap_s: float | None,
                  label: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Labels and segments for held-out bins ``heldout`` among ``eligible`` (both (n_bins,)
    bool), with guard bands of :func:`gap_bins` bins; see the module docstring."""
    time = np.asarray(time, float)
    eligible = np.asarray(eligible, bool)
    heldout = np.asarray(heldout, bool) & eligible
    train = eligible & ~heldout
    g = gap_bins(gap_s, bin_size)
    # bin distance from each bin to the nearest bin of the other kind (time-based, so that
    # bins separated by a jump between segments count as far apart)
    near_held = _within(time, time[heldout], g, bin_size)
    split = np.full(time.size, "none", dtype="<U5")
    split[train & ~near_held] = "train"
    split[heldout] = label
    return split, restart_segments(np.asarray(segment), split)


def _within(time: np.ndarray, others: np.ndarray, g: int, bin_size: float) -> np.ndarray:
    """(n,) bool: a bin of ``others`` lies within ``g`` bins of each ``time``."""
    if others.size == 0:
        return np.zeros(time.size, bool)
    i = np.searchsorted(others, time)
    left = np.abs(time - others[np.clip(i - 1, 0, others.size - 1)])
    right = np.abs(others[np.clip(i, 0, others.size - 1)] - time)
    return np.minimum(left, right) < (g + 0.5) * bin_size


def default_split_labels(time: np.ndarray, segment: np.ndarray, bin_size: float,
                         test_fraction: float = 0.2, test_blocks: int = 5,
                         gap_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The default held-out bins: the session (in bin order) cut into ``test_blocks`` equal
    chunks, the last ``round(test_fraction × chunk)`` bins of each held out as ``test``,
    guard bands of ``gap_s`` taken from the training side. Returns (split, segment)."""
    n = int(np.asarray(time).size)
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    if test_blocks < 1 or n < 2 * test_blocks:
        raise DataError(f"test_blocks: {test_blocks} blocks need at least {2 * test_blocks} "
                        f"bins, the session has {n}")
    bounds = np.linspace(0, n, test_blocks + 1).round().astype(int)
    heldout = np.zeros(n, bool)
    for a, b in itertools.pairwise(bounds):
        k = max(1, round(test_fraction * int(b - a)))
        heldout[b - k:b] = True
    return heldout_split(time, segment, bin_size, np.ones(n, bool), heldout, gap_s)


def default_split(session: BinnedSession, test_fraction: float = 0.2, test_blocks: int = 5,
                  gap_s: float | None = None) -> BinnedSession:
    """``session`` with the split of :func:`default_split_labels` in place of its own (bins
    where a covariate is NaN, i.e. unobserved, are ``none``)."""
    split, segment = default_split_labels(session.time, session.segment, session.bin_size,
                                          test_fraction, test_blocks, gap_s)
    for values in session.covariates.values():
        split = np.where(np.isnan(values).any(axis=1), "none", split)
    return session.with_split(split, segment=segment)


def blocked_folds(session: BinnedSession, k: int, gap_s: float | None = None,
                  within: tuple[str, ...] = ("train",),
                  label: str = "test") -> list[BinnedSession]:
    """K blocked cross-validation folds over the bins whose split is in ``within``.

    Those bins, in order, are cut into ``k`` contiguous blocks of (nearly) equal size; fold
    ``i`` labels block ``i`` as ``label``, the other ``within`` bins ``train`` except those
    within the guard band of ``gap_s`` seconds of block ``i`` (``none``), and every other bin
    (the session's own held-out data) ``none``. Segments restart at each guard band.

    Returns:
        ``k`` sessions sharing counts and covariates with ``session``.
    """
    if k < 2:
        raise DataError(f"--cv: need at least 2 folds, got {k}")
    eligible = session.mask(*within)
    idx = np.flatnonzero(eligible)
    if idx.size < 2 * k:
        raise DataError(f"{session.source}: --cv {k}: only {idx.size} bins in {list(within)}")
    bounds = np.linspace(0, idx.size, k + 1).round().astype(int)
    folds = []
    for a, b in itertools.pairwise(bounds):
        heldout = np.zeros(session.n_bins, bool)
        heldout[idx[a:b]] = True
        split, segment = heldout_split(session.time, session.segment, session.bin_size,
                                       eligible, heldout, gap_s, label)
        folds.append(session.with_split(split, segment=segment))
    return folds
