"""Memory a fit will need, estimated from the spec and the data's shape before anything runs.

A spec can be valid and still ask for more than the machine has (``data.bin_size: 1 us`` on
hour-long trials, ``recurrent.dim: 2048`` on hundreds of units). Such a run is refused up front
with the estimate, instead of thrashing swap or being killed by the kernel an hour in.

The estimate counts the arrays the GLM family allocates (counts, design tensors, autograd
intermediates of one objective evaluation, L-BFGS history); the constants below were
calibrated against the peak resident memory of real fits (see tests/test_reliability_data.py
and the issue-9 closing note): the estimate is an upper bound within a small factor.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurorec.core.errors import NeurorecError
from neurorec.data.recording import Recording

# the interpreter with torch, numpy, pandas and the bundled data loaded (measured: 313 MiB)
PROCESS_BASE_BYTES = 320 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak memory of a fit, in bytes, with the parts that make it up."""

    total_bytes: int
    parts: dict[str, int]
    shape: tuple[int, int, int]  # (n_trials, n_bins, n_units)

    def describe(self) -> str:
        big = sorted(self.parts.items(), key=lambda kv: -kv[1])[:3]
        t, b, n = self.shape
        return (f"{gib(self.total_bytes)} for {t} trials × {b} bins × {n} units ("
                + ", ".join(f"{k} {gib(v)}" for k, v in big) + ")")


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def available_memory_bytes() -> int | None:
    """Memory the kernel can give this process now: MemAvailable, else physical pages."""
    meminfo = Path("/proc/meminfo")
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None


def _data_shape(spec, recording: Recording) -> tuple[int, int, int, int]:
    """(n_trials, n_bins, n_units, n_conditions) that binning ``recording`` for ``spec`` gives."""
    d = spec.data
    trials = recording.trials
    start = trials["start_time"].to_numpy(float)
    stop = trials["stop_time"].to_numpy(float)
    if d.window is None:
        t0, t1 = 0.0, float(np.min(stop - start)) if len(trials) else 0.0
    else:
        t0, t1 = float(d.window[0]), float(d.window[1])
    n_bins = max(0, math.floor((t1 - t0) / d.bin_size + 1e-9))
    cols = [c for c in (d.conditions or recording.stimulus_columns) if c in trials.columns]
    n_cond = len(trials[cols].drop_duplicates()) if cols else 1
    return len(trials), n_bins, recording.n_units, max(1, n_cond)


def estimate_fit_memory(spec, recording: Recording) -> MemoryEstimate | None:
    """Peak memory of fitting ``spec`` to ``recording``, from the family's own estimate
    (``Family.memory_estimate``); None for families that declare none."""
    from neurorec.families import family_of

    estimate = family_of(spec.kind).memory_estimate
    data = getattr(spec, "data", None)
    if estimate is None or data is None or not hasattr(data, "bin_size"):
        return None
    shape = _data_shape(spec, recording)
    parts = {**estimate(spec, shape), "process": PROCESS_BASE_BYTES}
    return MemoryEstimate(int(sum(parts.values())), parts, shape[:3])


def check_fit_memory(spec, recording: Recording, available: int | None = None) -> None:
    """Refuse a fit whose estimated peak memory exceeds what the machine has available.

    Raises:
        NeurorecError: one line with the estimate, what is available and what to change.
    """
    est = estimate_fit_memory(spec, recording)
    if est is None:
        return
    available = available_memory_bytes() if available is None else available
    if available is not None and est.total_bytes > available:
        raise NeurorecError(
            f"{recording.source}: memory: fitting {spec.name} needs about {est.describe()}, "
            f"but {gib(available)} are available; use a larger data.bin_size, a shorter "
            "data.window, fewer units or trials, or smaller history/coupling/recurrent sizes")
