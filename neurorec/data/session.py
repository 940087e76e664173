"""A continuous recording binned on one clock: the data type of ``data.mode: session``.

Trials-mode data (:class:`neurorec.data.recording.BinnedTrials`) are trial × time × unit; a
session is one long time axis (possibly several disjoint epochs) with behavioural covariates
sampled on the same bins. Held-out data are bins, not trials: ``split`` labels every bin with
an NLB split value, and ``segment`` numbers the contiguous stretches so that history filters
and recurrences never run across a gap (an epoch boundary or a fold's guard band).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

#: the Neural Latents Benchmark's split values; ``none`` bins are neither fitted nor scored
SESSION_SPLITS = ("train", "val", "test", "none")


def segment_bounds(segment: np.ndarray) -> np.ndarray:
    """(n_segments + 1,) int64: the index where each run of equal ids in ``segment``
    (n_bins,) starts, then n_bins; segment ``s`` is bins ``bounds[s]:bounds[s + 1]``."""
    segment = np.asarray(segment)
    change = np.flatnonzero(np.diff(segment) != 0) + 1
    return np.concatenate([[0], change, [len(segment)]]).astype(np.int64)


@dataclass(frozen=True)
class BinnedSession:
    """Spike counts and covariates of one continuous session, binned on one clock.

    Attributes:
        counts: (n_bins, n_units) integer spike counts (kept integer: int32 or int64).
        bin_size: bin width, seconds.
        time: (n_bins,) bin centres, seconds on the recording's clock (increasing; may jump
            between segments).
        covariates: name -> (n_bins, n_dims) float64 behavioural series averaged (or
            interpolated) onto the bins, e.g. ``position`` (metres, 2 columns),
            ``head_direction`` (radians, 1 column), ``speed`` (m/s). NaN where unobserved.
        split: (n_bins,) str, one of :data:`SESSION_SPLITS` per bin.
        segment: (n_bins,) int64, id of the contiguous stretch each bin belongs to;
            consecutive bins with different ids are not adjacent in time.
        unit_ids: (n_units,) unit identifiers.
        source: where the data came from, for messages and reports.
        truth: ground truth of simulated data (e.g. ``rates``: (n_bins, n_units) expected
            counts per bin of the generating model); empty for recorded data.
        metadata: free-form facts (citation, licence, "simulated": True, units of covariates).
    """

    counts: np.ndarray
    bin_size: float
    time: np.ndarray
    covariates: dict[str, np.ndarray]
    split: np.ndarray
    segment: np.ndarray
    unit_ids: np.ndarray
    source: str
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.counts.shape[1])

    def mask(self, *splits: str) -> np.ndarray:
        """(n_bins,) bool: bins whose split is one of ``splits``."""
        unknown = set(splits) - set(SESSION_SPLITS)
        if unknown:
            raise ValueError(f"unknown split value(s) {sorted(unknown)}; known {SESSION_SPLITS}")
        return np.isin(self.split, list(splits))

    def with_split(self, split: np.ndarray, segment: np.ndarray | None = None) -> BinnedSession:
        """The same session with other split labels (e.g. one blocked fold) and, when given,
        other segment ids ((n_bins,) each)."""
        split = np.asarray(split).astype("<U5")
        if split.shape != (self.n_bins,):
            raise ValueError(f"split: expected shape ({self.n_bins},), got {split.shape}")
        unknown = set(np.unique(split)) - set(SESSION_SPLITS)
        if unknown:
            raise ValueError(f"unknown split value(s) {sorted(unknown)}; known {SESSION_SPLITS}")
        if segment is None:
            return replace(self, split=split)
        segment = np.asarray(segment, dtype=np.int64)
        if segment.shape != (self.n_bins,):
            raise ValueError(f"segment: expected shape ({self.n_bins},), got {segment.shape}")
        return replace(self, split=split, segment=segment)

    def covariate(self, name: str) -> np.ndarray:
        """(n_bins, n_dims) covariate by name (``position``) or by the NWB path it was read
        from (``processing/behavior/Position/position``, with or without ``processing/``;
        ``metadata["paths"]``)."""
        if name in self.covariates:
            return self.covariates[name]
        want = name.strip("/").removeprefix("processing/")
        for key, path in self.metadata.get("paths", {}).items():
            if path.strip("/").removeprefix("processing/") == want and key in self.covariates:
                return self.covariates[key]
        raise KeyError(f"{self.source}: covariate {name!r} not in the session; have "
                       f"{sorted(self.covariates)}")

    def segment_bounds(self) -> np.ndarray:
        """(n_segments + 1,) indices where segments start, and n_bins: segment ``s`` is bins
        ``bounds[s]:bounds[s + 1]`` (segments are contiguous runs of equal ids)."""
        return segment_bounds(self.segment)

    def select(self, mask: np.ndarray) -> BinnedSession:
        """The bins where ``mask`` (n_bins,) is True, in order; segments renumbered so that
        bins that were not adjacent (a dropped bin between them, or another segment) are
        in different segments. Truth arrays with n_bins rows are selected too."""
        mask = np.asarray(mask, bool)
        if mask.shape != (self.n_bins,):
            raise ValueError(f"mask: expected shape ({self.n_bins},), got {mask.shape}")
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            segment = np.zeros(0, np.int64)
        else:
            new = (np.diff(idx) != 1) | (np.diff(self.segment[idx]) != 0)
            segment = np.concatenate([[0], np.cumsum(new)]).astype(np.int64)
        truth = {k: (v[idx] if np.ndim(v) >= 1 and len(v) == self.n_bins else v)
                 for k, v in self.truth.items()}
        return replace(self, counts=self.counts[idx], time=self.time[idx],
                       covariates={k: v[idx] for k, v in self.covariates.items()},
                       split=self.split[idx], segment=segment, truth=truth)
