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


# ---------------------------------------------------------------- sessions (issue 29)
#: what to use instead of each costly part, for the refusal message
_INSTEAD = {
    "dense coupling Gram": "the latent instead of dense coupling (kind: rglm, coupling."
                           "enabled: false), fewer coupling bases (coupling.n_basis), or "
                           "--device cuda",
    "dense coupling features": "the latent instead of dense coupling (kind: rglm, coupling."
                               "enabled: false), fewer coupling bases (coupling.n_basis), or "
                               "--device cuda",
    "history features": "fewer history bases (history.n_basis) or a larger data.bin_size",
    "latent drive offset": "fit.dtype: float32 or a larger data.bin_size",
}


def session_shape(source: str, bin_size: float) -> tuple[int, int, float]:
    """(n_bins, n_units, train fraction) of a session, from metadata only (no binning).

    NWB: the units table's row count and the recording's extent (epochs' start/stop, else
    the behaviour series' first and last timestamps, else the last spike), read with h5py;
    a bundled ``open_field[:choice]`` from its simulation arguments. Train fraction: 0.8
    (the default split; an epochs ``split`` column changes it little for the estimate).
    """
    from neurorec.core.errors import DataError

    text = str(source)
    path = Path(text)
    if path.suffix.lower() == ".nwb" or path.exists():
        import h5py

        if not path.exists():
            raise DataError(f"{text}: file: not found")
        with h5py.File(path, "r") as f:
            if "units" not in f:
                raise DataError(f"{text}: units: no units table")
            units = f["units"]
            index = units.get("spike_times_index")
            n_units = int(len(index) if index is not None else len(units["id"]))
            t0 = t1 = None
            if "intervals/epochs" in f:
                ep = f["intervals/epochs"]
                t0, t1 = float(np.min(ep["start_time"][:])), float(np.max(ep["stop_time"][:]))
            else:
                ends: list[float] = []

                def visit(name, obj):
                    if isinstance(obj, h5py.Dataset) and name.endswith("timestamps") \
                            and obj.shape and obj.shape[0]:
                        ends.extend([float(obj[0]), float(obj[-1])])

                if "processing" in f:
                    f["processing"].visititems(visit)
                if ends:
                    t0, t1 = min(ends), max(ends)
                else:
                    st = units["spike_times"][:]
                    t0, t1 = 0.0, float(st.max()) if st.size else 0.0
        return max(1, math.floor((t1 - t0) / bin_size + 1e-9)), n_units, 0.8
    from neurorec.datasets.registry import OPEN_FIELD_SESSIONS

    name, _, choice = text.partition(":")
    kw = OPEN_FIELD_SESSIONS.get(choice.strip()) if name.strip() == "open_field" else None
    if kw is None:
        raise DataError(f"{text}: dataset: unknown session; give an NWB file or open_field")
    return math.floor(kw["duration_s"] / bin_size + 1e-9), int(kw["n_units"]), 0.8


def estimate_session_memory(spec, n_bins: int, n_units: int,
                            train_fraction: float = 0.8) -> MemoryEstimate:
    """Predicted peak memory of fitting ``spec`` to a session of this size."""
    from neurorec.families.glm.resources import session_fit_memory

    parts = {**session_fit_memory(spec, n_bins, n_units, train_fraction),
             "process": SESSION_PROCESS_BYTES}
    return MemoryEstimate(int(sum(parts.values())), parts, (1, n_bins, n_units))


#: the interpreter with torch, numpy, scipy, pandas and pynapple imported (measured here)
SESSION_PROCESS_BYTES = 420 * 2**20


def check_session_memory(spec, source: str, available: int | None = None,
                         echo=None) -> MemoryEstimate:
    """The preflight of a session fit: predict its peak from the spec and the file's
    metadata, print it (``echo``, e.g. ``click.echo(err=True)``), and refuse a fit that does
    not fit in the memory available, naming the part that costs it and what to use instead.

    Raises:
        NeurorecError: one line (the caller exits 2), before any data are binned.
    """
    n_bins, n_units, frac = session_shape(source, spec.data.bin_size)
    est = estimate_session_memory(spec, n_bins, n_units, frac)
    available = available_memory_bytes() if available is None else available
    if echo is not None:
        echo(f"memory preflight: {spec.name} on {n_bins} bins × {n_units} units: predicted "
             f"peak {gib(est.total_bytes)} ("
             + ", ".join(f"{k} {gib(v)}" for k, v in
                         sorted(est.parts.items(), key=lambda kv: -kv[1])[:3])
             + f"); available {gib(available) if available else 'unknown'}")
    if available is not None and est.total_bytes > available:
        term, size = max(est.parts.items(), key=lambda kv: kv[1])
        instead = _INSTEAD.get(term, "a larger data.bin_size, fewer units or a shorter "
                                     "session, or --device cuda")
        raise NeurorecError(
            f"{source}: memory: fitting {spec.name} to {n_bins} bins × {n_units} units needs "
            f"about {gib(est.total_bytes)} ({term}: {gib(size)}), {gib(available)} available; "
            f"use {instead}")
    return est
