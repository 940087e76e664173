"""Checks a :class:`Recording` once, at the public entry points that build one.

Every problem found becomes one ``SOURCE: FIELD: MESSAGE`` line of a single :class:`DataError`,
so a user sees all that is wrong with a file at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording

#: a trials ``split`` column's values (the Neural Latents Benchmark's): ``val`` and ``test``
#: trials are held out, ``none`` trials are dropped (neither fitted nor scored)
SPLIT_VALUES = ("train", "val", "test", "none")
SPLIT_MESSAGE = "values must be one of 'train', 'val', 'test', 'none'"


def _unit_problems(rec: Recording, end_s: float | None) -> list[str]:
    lines: list[str] = []
    src = rec.source
    if len(rec.unit_ids) != len(rec.spike_times):
        lines.append(
            f"{src}: unit_ids: expected one id per unit ({len(rec.spike_times)}), "
            f"got {len(rec.unit_ids)}"
        )
        return lines
    ids = [str(u) for u in rec.unit_ids]
    if len(set(ids)) != len(ids):
        dup = sorted({u for u in ids if ids.count(u) > 1})
        lines.append(f"{src}: unit_ids: duplicated ids {dup}")
    if not ids:
        lines.append(f"{src}: units: the recording has no units")
    for uid, t in zip(ids, rec.spike_times, strict=True):
        where = f"{src}: unit {uid}"
        arr = np.asarray(t)
        if arr.ndim != 1:
            lines.append(f"{where}: spike times must be 1-D, got shape {arr.shape}")
            continue
        if not np.issubdtype(arr.dtype, np.number):
            lines.append(f"{where}: spike times must be numbers (seconds), got dtype {arr.dtype}")
            continue
        if arr.size == 0:
            lines.append(f"{where}: no spikes (empty unit)")
            continue
        arr = arr.astype(float, copy=False)
        n_nan = int(np.count_nonzero(~np.isfinite(arr)))
        if n_nan:
            lines.append(f"{where}: {n_nan} spike times are NaN or infinite")
            arr = arr[np.isfinite(arr)]
            if arr.size == 0:
                continue
        if arr.min() < 0:
            n_neg = int(np.count_nonzero(arr < 0))
            lines.append(f"{where}: {n_neg} negative spike times (first {arr.min():.6g} s)")
        steps = np.diff(arr)
        if np.any(steps < 0):
            i = int(np.argmax(steps < 0))
            lines.append(
                f"{where}: spike times not sorted (spike {i + 1} at {arr[i + 1]:.6g} s "
                f"after {arr[i]:.6g} s)"
            )
        if end_s is not None and arr.max() > end_s:
            n_out = int(np.count_nonzero(arr > end_s))
            lines.append(
                f"{where}: {n_out} spikes after the last trial's stop_time {end_s:.6g} s "
                f"(latest {arr.max():.6g} s), outside the recording"
            )
    return lines


def _trial_problems(rec: Recording) -> tuple[list[str], float | None]:
    lines: list[str] = []
    src = rec.source
    trials = rec.trials
    if not isinstance(trials, pd.DataFrame):
        return [f"{src}: trials: expected a pandas DataFrame, got {type(trials).__name__}"], None
    missing = [c for c in ("start_time", "stop_time") if c not in trials.columns]
    if missing:
        lines.append(f"{src}: trials: missing column(s) {missing}; have {list(trials.columns)}")
    if len(trials) == 0:
        lines.append(f"{src}: trials: the trials table is empty")
    if not rec.stimulus_columns:
        lines.append(f"{src}: trials: no stimulus column (stimulus_columns is empty)")
    absent = [c for c in rec.stimulus_columns if c not in trials.columns]
    if absent:
        lines.append(
            f"{src}: trials: stimulus column(s) {absent} not in the trials table; "
            f"have {list(trials.columns)}"
        )
    for col in rec.stimulus_columns:
        if col in trials.columns and trials[col].isna().any():
            lines.append(f"{src}: trials.{col}: {int(trials[col].isna().sum())} missing values")
    end_s: float | None = None
    if not missing and len(trials):
        start = pd.to_numeric(trials["start_time"], errors="coerce").to_numpy(float)
        stop = pd.to_numeric(trials["stop_time"], errors="coerce").to_numpy(float)
        bad = ~(np.isfinite(start) & np.isfinite(stop))
        if bad.any():
            lines.append(
                f"{src}: trials: {int(bad.sum())} rows with missing or non-numeric "
                "start_time/stop_time"
            )
        ok = ~bad
        short = ok & (stop <= start)
        if short.any():
            i = int(np.argmax(short))
            lines.append(
                f"{src}: trials: {int(short.sum())} trials with stop_time <= start_time "
                f"(first at row {i}: {start[i]:.6g} s to {stop[i]:.6g} s)"
            )
        if ok.any() and start[ok].min() < 0:
            lines.append(f"{src}: trials: negative start_time {start[ok].min():.6g} s")
        if ok.any():
            end_s = float(stop[ok].max())
    if "split" in trials.columns:
        values = set(trials["split"].astype(str).unique()) - set(SPLIT_VALUES)
        if values:
            lines.append(f"{src}: trials.split: {SPLIT_MESSAGE}, got {sorted(values)}")
    return lines, end_s


def validate_recording(rec: Recording) -> None:
    """Raise one :class:`DataError` listing every problem in ``rec``; return None if clean.

    Checked: spike times per unit are 1-D, finite, non-negative, sorted, non-empty and not
    after the last trial's ``stop_time`` (outside the recording); unit ids are unique and one
    per unit; the trials table has ``start_time``/``stop_time`` with ``stop_time >
    start_time``, at least one stimulus column, all ``stimulus_columns`` present without
    missing values; an optional ``split`` column holds only NLB values (``train``, ``val``,
    ``test``, ``none``).
    """
    trial_lines, end_s = _trial_problems(rec)
    lines = _unit_problems(rec, end_s) + trial_lines
    if lines:
        raise DataError(lines)
