"""Checks of a recording against the spec that bins it, made before a fit: what would
otherwise pass silently becomes a warning line (or, where the result would be wrong, a
refusal).

- spike times published on a grid (the V1 sessions: 10 ms) binned at a width that is not a
  multiple of it leave some bins empty in every trial and unit: a warning with the count;
- (trials of unequal length cropped to the shortest: ``bin_trials``' own CroppingWarning,
  one stderr line through the CLI);
- overlapping trials would count the same spikes twice: refused.
"""

from __future__ import annotations

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording

GRIDS_S = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005)
"""Candidate publication grids of spike times, coarsest first (s)."""


def spike_time_grid(recording: Recording, max_spikes: int = 20_000) -> tuple[float, float] | None:
    """``(q, offset)``: the coarsest grid in :data:`GRIDS_S` that every spike time (of the
    first ``max_spikes``) lies on, ``offset + k·q`` to 1e-4 of a step (published binned data:
    the V1 sessions' times are 10 ms bin centres, offset 5 ms); None for continuous times."""
    times = np.unique(np.concatenate([np.asarray(t, float) for t in recording.spike_times]
                                     or [[]])[:max_spikes])
    if times.size < 100:
        return None
    steps = np.diff(times)
    for q in GRIDS_S:
        frac = steps / q
        if np.all(np.abs(frac - np.round(frac)) < 1e-4):
            return q, float(times[0] % q)
    return None


def empty_bins(bin_size: float, duration: float, grid: float, offset: float = 0.0) -> tuple[
        int, int]:
    """(bins holding no grid point, bins) for a trial ``[0, duration)`` cut in ``bin_size``
    bins when spikes can only fall at ``offset + k·grid`` (times relative to the trial's
    start)."""
    n = int(np.floor(duration / bin_size + 1e-9))
    left = bin_size * np.arange(n)
    # first grid point at or after each left edge; a bin is empty if it is past the right edge
    first = offset + np.ceil((left - offset) / grid - 1e-6) * grid
    return int((first >= left + bin_size - 1e-6 * grid).sum()), n


def recording_warnings(spec, recording: Recording) -> list[str]:
    """Warning lines (``SOURCE: data.field: ...``) for a trials-mode spike-train spec."""
    data = getattr(spec, "data", None)
    if data is None or getattr(data, "mode", "trials") != "trials" or recording.trials is None:
        return []
    src, lines = recording.source, []
    trials = recording.trials
    start = trials["start_time"].to_numpy(float)
    stop = trials["stop_time"].to_numpy(float)
    durations = stop - start
    b = float(data.bin_size)
    found = spike_time_grid(recording)
    if found is not None and len(durations):
        grid, offset = found
        ratio = b / grid
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) == 0:
            empty, n = empty_bins(b, float(durations.min()), grid,
                                  float((offset - start[0]) % grid))
            lines.append(f"{src}: warning: data.bin_size: {b * 1e3:g} ms is not a multiple of the "
                         f"{grid * 1e3:g} ms grid the spike times lie on: {empty} of {n} bins "
                         f"can never hold a spike (choose a multiple of {grid * 1e3:g} ms)")
    return lines


def check_trials_disjoint(recording: Recording) -> None:
    """Refuse overlapping trials: their shared spikes would be counted in both."""
    trials = recording.trials
    if trials is None or len(trials) < 2:
        return
    start = trials["start_time"].to_numpy(float)
    stop = trials["stop_time"].to_numpy(float)
    order = np.argsort(start, kind="stable")
    overlap = np.flatnonzero(start[order][1:] < stop[order][:-1] - 1e-9)
    if overlap.size:
        a, b = order[overlap[0]], order[overlap[0] + 1]
        raise DataError(f"{recording.source}: trials: trial {b} (start {start[b]:.6g} s) begins "
                        f"before trial {a} ends ({stop[a]:.6g} s); {overlap.size} overlapping "
                        "pair(s) would count the same spikes twice")


__all__ = ["check_trials_disjoint", "empty_bins", "recording_warnings", "spike_time_grid"]
