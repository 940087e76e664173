"""Read and write :class:`Recording` objects as NWB files (pynwb; readable by pynapple).

A file neurorec writes keeps, besides the units and trials tables, a JSON block in the
NWB ``notes`` field (``{"neurorec": {...}}``) with the stimulus columns, the source and the
metadata, so that ``read_nwb(write_nwb(rec, p))`` gives back the same recording.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError
from neurorec.core.outputs import chmod_per_umask
from neurorec.data.recording import Recording, StimulusSeries
from neurorec.data.validation import validate_recording

NOTES_KEY = "neurorec"
UNIT_NAME_COLUMN = "unit_name"
# trials columns never taken as stimulus columns when they are not given
BOOKKEEPING_COLUMNS = frozenset(
    {
        "start_time", "stop_time", "split", "tags", "timeseries", "id", "trial", "trial_id",
        "trial_index", "trial_number", "trial_in_group", "repetition", "rep", "block",
        "session", "epoch",
    }
)  # fmt: skip
_BOOKKEEPING_SUFFIXES = ("_time", "_onset", "_offset", "_index", "_id")


def _default_stimulus_columns(trials: pd.DataFrame) -> tuple[str, ...]:
    """Trials columns that are neither bookkeeping nor event times nor ragged."""
    cols = []
    for c in trials.columns:
        name = str(c)
        if name.lower() in BOOKKEEPING_COLUMNS or name.lower().endswith(_BOOKKEEPING_SUFFIXES):
            continue
        if trials[c].map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
            continue
        cols.append(name)
    return tuple(cols)


def read_nwb(path: str | os.PathLike, stimulus_columns: Sequence[str] | None = None) -> Recording:
    """Load the units and trials of an NWB file as a validated :class:`Recording`.

    Args:
        path: an NWB (HDF5) file with a ``units`` table (``spike_times`` in seconds) and a
            ``trials`` table (``start_time``, ``stop_time`` in seconds, stimulus columns,
            optional ``split`` of ``"train"``/``"test"``).
        stimulus_columns: trials columns that describe the stimulus. None: those stored by
            :func:`write_nwb`, else every trials column except ``start_time``,
            ``stop_time``, ``split``, ``tags``, ``timeseries``, bookkeeping columns
            (``repetition``, ``trial_id``, ...) and names ending in ``_time``, ``_onset``,
            ``_offset``, ``_index``, ``_id``.

    Returns:
        The ``Recording``; ``unit_ids`` from a ``unit_name`` column when present, else the
        units table ids (as strings); ``source`` is the path.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file: not found")
    from pynwb import NWBHDF5IO

    try:
        with NWBHDF5IO(str(p), "r") as io:
            nwb = io.read()
            units, trials_table, notes = nwb.units, nwb.trials, nwb.notes
            if units is None:
                raise DataError(f"{p}: units: the file has no units table")
            if trials_table is None:
                raise DataError(f"{p}: trials: the file has no trials table")
            if "spike_times" not in units.colnames:
                raise DataError(f"{p}: units: the units table has no spike_times column")
            index = units["spike_times"]
            flat = np.asarray(index.target.data[:], dtype=float)
            ends = np.asarray(index.data[:], dtype=np.int64)
            if UNIT_NAME_COLUMN in units.colnames:
                unit_ids = np.asarray([str(u) for u in units[UNIT_NAME_COLUMN].data[:]])
            else:
                unit_ids = np.asarray([str(u) for u in units.id.data[:]])
            trials = trials_table.to_dataframe().reset_index(drop=True)
            stimulus = _read_stimulus(nwb, p)
    except DataError:
        raise
    except Exception as exc:  # h5py / hdmf / pynwb raise many types for a bad file
        raise DataError(f"{p}: file: cannot read as NWB ({type(exc).__name__}: {exc})") from exc

    spike_times = np.split(flat, ends[:-1]) if ends.size else []
    stored: dict = {}
    if notes:
        try:
            stored = json.loads(notes).get(NOTES_KEY, {})
        except (ValueError, AttributeError):
            stored = {}
    trials = trials.drop(columns=[c for c in ("tags", "timeseries") if c in trials.columns])
    if stimulus_columns is not None:
        stim = tuple(stimulus_columns)
    elif "stimulus_columns" in stored:
        stim = tuple(stored["stimulus_columns"])
    else:
        stim = _default_stimulus_columns(trials)
    metadata = dict(stored.get("metadata", {}))
    metadata.setdefault("original_source", stored.get("source", str(p)))
    rec = Recording(
        spike_times=[np.asarray(t, dtype=float) for t in spike_times],
        unit_ids=unit_ids,
        trials=trials,
        stimulus_columns=stim,
        source=str(p),
        metadata=metadata,
        stimulus=stimulus,
    )
    validate_recording(rec)
    return rec


def _read_stimulus(nwb, p: Path) -> StimulusSeries | None:
    """The file's stimulus ``TimeSeries`` as one series (several become channels)."""
    from pynwb.base import TimeSeries

    series = [v for v in nwb.stimulus.values() if isinstance(v, TimeSeries)]
    if not series:
        return None
    columns, rates, starts = [], set(), set()
    for ts in series:
        if ts.rate is None:
            stamps = np.asarray(ts.timestamps[:], dtype=float)
            steps = np.diff(stamps)
            if stamps.size < 2 or not np.allclose(steps, steps[0], rtol=1e-6):
                raise DataError(f"{p}: stimulus/{ts.name}: timestamps are not regular; "
                                "neurorec needs a regularly sampled stimulus (rate)")
            rate, start = 1.0 / steps[0], stamps[0]
        else:
            rate, start = float(ts.rate), float(ts.starting_time or 0.0)
        values = np.asarray(ts.data[:], dtype=float)
        columns.append(values.reshape(len(values), -1))
        rates.add(round(rate, 9))
        starts.add(round(start, 9))
    lengths = {len(c) for c in columns}
    if len(rates) > 1 or len(starts) > 1 or len(lengths) > 1:
        raise DataError(f"{p}: stimulus: series {[ts.name for ts in series]} differ in rate, "
                        "start or length; neurorec stacks them as channels of one series")
    return StimulusSeries(values=np.concatenate(columns, axis=1), rate_hz=rates.pop(),
                          start_time=starts.pop(), name=",".join(ts.name for ts in series),
                          unit=str(series[0].unit))


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _start_time(metadata: dict) -> datetime:
    """Session start from ``metadata["date"]`` (``YYYY-MM-DD[_HH-MM-SS]``), else 1970-01-01."""
    m = re.match(
        r"(\d{4})-(\d{2})-(\d{2})(?:[_ T](\d{2})[-:](\d{2})[-:](\d{2}))?",
        str(metadata.get("date", "")),
    )
    if m:
        parts = [int(x) if x else 0 for x in m.groups()]
        try:
            return datetime(*parts, tzinfo=UTC)
        except ValueError:
            pass
    return datetime(1970, 1, 1, tzinfo=UTC)


def write_nwb(rec: Recording, path: str | os.PathLike) -> Path:
    """Write ``rec`` to an NWB file, atomically (temporary file in the same folder, renamed).

    The units table holds ``spike_times`` (s) and ``unit_name`` (the unit ids); the trials
    table holds every trials column (numbers, strings, booleans); ``session_description``,
    ``identifier``, ``session_start_time`` (from ``metadata["date"]`` when parseable) and
    the subject come from the metadata, and the stimulus columns, source and metadata are
    kept as JSON in ``notes``. Readable by pynwb and ``pynapple.load_file``.

    Returns:
        The path written.
    """
    from pynwb import NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    validate_recording(rec)
    p = Path(path)
    if not p.parent.is_dir():
        raise DataError(f"{p}: file: folder {p.parent} does not exist")
    md = rec.metadata
    notes = json.dumps(
        {
            NOTES_KEY: {
                "stimulus_columns": list(rec.stimulus_columns),
                "source": rec.source,
                "metadata": md,
            }
        },
        default=_json_default,
    )
    description = str(md.get("description") or f"neurorec recording from {rec.source}")
    subject = Subject(subject_id=str(md["subject"])) if md.get("subject") else None
    nwb = NWBFile(
        session_description=description,
        identifier=str(uuid.uuid4()),
        session_start_time=_start_time(md),
        notes=notes,
        subject=subject,
        source_script="neurorec.data.nwb.write_nwb",
        source_script_file_name="nwb.py",
    )
    trials = rec.trials.reset_index(drop=True)
    extra = [c for c in trials.columns if c not in ("start_time", "stop_time")]
    descriptions = md.get("column_descriptions", {}) if isinstance(md, dict) else {}
    nwb.trials = TimeIntervals.from_dataframe(
        trials,
        name="trials",
        columns=[{"name": c, "description": str(descriptions.get(c, c))} for c in extra],
    )
    if rec.stimulus is not None:
        from pynwb.base import TimeSeries

        st = rec.stimulus
        nwb.add_stimulus(TimeSeries(name=st.name.replace(",", "_") or "stimulus",
                                    data=np.asarray(st.values, dtype=float), unit=st.unit,
                                    rate=float(st.rate_hz), starting_time=float(st.start_time),
                                    description="stimulus time series (samples × channels)"))
    nwb.add_unit_column(UNIT_NAME_COLUMN, "unit identifier")
    for uid, t in zip(rec.unit_ids, rec.spike_times, strict=True):
        nwb.add_unit(spike_times=np.asarray(t, dtype=float), **{UNIT_NAME_COLUMN: str(uid)})

    return write_nwb_file(nwb, p)


def write_nwb_file(nwb, path: Path) -> Path:
    """Write the in-memory ``pynwb.NWBFile`` ``nwb`` to ``path`` whole or not at all (a
    temporary file beside it, renamed), with the umask's permissions. Returns ``path``."""
    from pynwb import NWBHDF5IO

    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp.nwb", dir=p.parent)
    os.close(fd)
    try:
        with NWBHDF5IO(tmp, "w") as io:
            io.write(nwb)
        chmod_per_umask(tmp)  # mkstemp makes 0600; an NWB file is for sharing
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p

