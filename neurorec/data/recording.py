"""Containers for recorded spike trains, before and after binning.

``Recording`` keeps spike times (seconds) and the trials table as recorded; ``BinnedTrials``
is what models consume: counts ordered trial × time × unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError


@dataclass(frozen=True)
class StimulusSeries:
    """A stimulus given as a regularly sampled time series (e.g. an NWB ``TimeSeries``).

    Attributes:
        values: (n_samples, n_channels) stimulus values.
        rate_hz: sampling rate, Hz.
        start_time: time of sample 0, seconds on the recording's clock.
        name: what it is, for reports.
        unit: the values' unit.
    """

    values: np.ndarray
    rate_hz: float
    start_time: float = 0.0
    name: str = "stimulus"
    unit: str = "a.u."

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]


@dataclass(frozen=True)
class Recording:
    """Spike trains of simultaneously recorded units and the trials they were recorded in.

    Attributes:
        spike_times: one sorted float array per unit, seconds from the start of the recording.
        unit_ids: (n_units,) identifiers, same order as ``spike_times``.
        trials: one row per trial with ``start_time``, ``stop_time`` (seconds) and stimulus
            columns (e.g. ``direction`` in degrees); an optional ``split`` column holds
            ``"train"``/``"test"``.
        stimulus_columns: the trials columns that describe the stimulus (conditions).
        source: file path or dataset name, used in error messages.
        metadata: free-form facts (subject, session date, licence, citation, units of columns).
        stimulus: a stimulus time series shared by all trials, or None.
    """

    spike_times: list[np.ndarray]
    unit_ids: np.ndarray
    trials: pd.DataFrame
    stimulus_columns: tuple[str, ...]
    source: str
    metadata: dict = field(default_factory=dict)
    stimulus: StimulusSeries | None = None

    @property
    def n_units(self) -> int:
        return len(self.spike_times)


@dataclass(frozen=True)
class BinnedTrials:
    """Spike counts binned per trial, aligned to each trial's ``start_time``.

    Attributes:
        counts: (n_trials, n_bins, n_units) integer spike counts.
        bin_size: bin width in seconds.
        time: (n_bins,) bin centres in seconds relative to trial start.
        condition: (n_trials,) index of each trial's condition into ``condition_table``.
        condition_table: one row per condition (unique combination of the stimulus columns).
        is_test: (n_trials,) True for held-out trials.
        unit_ids: (n_units,) unit identifiers.
        source: where the data came from, for messages and reports.
        stimulus: (n_trials, n_bins, n_channels) stimulus time series averaged over each bin,
            or None when the recording has none.
        mask: (n_trials, n_bins) bool, True where a bin lies inside its trial (trials of
            unequal length binned with ``unequal="mask"``; counts are 0 where False), or
            None: every bin observed.
    """

    counts: np.ndarray
    bin_size: float
    time: np.ndarray
    condition: np.ndarray
    condition_table: pd.DataFrame
    is_test: np.ndarray
    unit_ids: np.ndarray
    source: str
    stimulus: np.ndarray | None = None
    mask: np.ndarray | None = None

    @property
    def n_conditions(self) -> int:
        return len(self.condition_table)

    @property
    def n_bins(self) -> int:
        return self.counts.shape[1]

    def subset(self, mask: np.ndarray) -> BinnedTrials:
        """Trials where ``mask`` (n_trials,) is True; conditions keep their indices."""
        return BinnedTrials(
            counts=self.counts[mask],
            bin_size=self.bin_size,
            time=self.time,
            condition=self.condition[mask],
            condition_table=self.condition_table,
            is_test=self.is_test[mask],
            unit_ids=self.unit_ids,
            source=self.source,
            stimulus=None if self.stimulus is None else self.stimulus[mask],
            mask=None if self.mask is None else self.mask[mask],
        )


@dataclass(frozen=True)
class TrialLayout:
    """Trials to simulate, without counts: what a spike-train model's
    ``sample(n, *, seed, like=...)`` reads of ``like`` (as it reads a :class:`BinnedTrials`).

    Attributes:
        condition: (n_trials,) condition index of each trial.
        n_bins: bins per trial.
        stimulus: (n_trials, n_bins, n_channels) stimulus series, or None.
    """

    condition: np.ndarray
    n_bins: int
    stimulus: np.ndarray | None = None


def sample_layout(n: int, like: BinnedTrials | TrialLayout | None, n_conditions: int,
                  n_bins: int, source: str) -> tuple[np.ndarray, int, np.ndarray | None]:
    """``(condition (n,), n_bins, stimulus (n, n_bins, n_channels) or None)`` of ``n`` trials
    drawn like ``like``: its first ``n`` trials' conditions and stimulus and its bins per trial
    (DataError when it has fewer than ``n`` trials). ``like`` None: conditions
    ``0, 1, …, n_conditions - 1`` in turn, ``n_bins`` bins (a fitted model's), no stimulus."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise DataError(f"{source}: sample: n must be a number of trials >= 0, got {n!r}")
    if like is None:
        return np.arange(n) % max(1, n_conditions), int(n_bins), None
    condition = np.asarray(like.condition)
    if len(condition) < n:
        raise DataError(f"{source}: sample: like has {len(condition)} trials, {n} asked for")
    stimulus = None if like.stimulus is None else np.asarray(like.stimulus)[:n]
    return condition[:n], int(like.n_bins), stimulus


def counts_to_spike_times(counts: np.ndarray, start_times: np.ndarray,
                          bin_size: float) -> list[np.ndarray]:
    """Spike times (s) that re-bin to ``counts``: ``n`` spikes at the centre of a bin holding ``n``.

    Args:
        counts: (n_trials, n_bins, n_units) non-negative integer counts.
        start_times: (n_trials,) trial start times, seconds, increasing.
        bin_size: bin width, seconds.
    Returns:
        One sorted array per unit.
    """
    _, n_bins, n_units = counts.shape
    centres = (np.asarray(start_times, float)[:, None]
               + (np.arange(n_bins) + 0.5) * bin_size).ravel()
    return [np.repeat(centres, counts[:, :, u].ravel().astype(np.int64)) for u in range(n_units)]
