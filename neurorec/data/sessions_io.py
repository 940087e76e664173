"""Continuous sessions in and out: pynapple objects and NWB files → :class:`BinnedSession`.

Public API (stable; other modules build on it):

- ``from_pynapple(units, covariates=None, epochs=None, split=None, bin_size=0.01, *,
  split_column="split", circular=None, test_fraction=0.2, test_blocks=5, gap_s=None,
  source="pynapple", metadata=None, truth=None) -> BinnedSession`` — counts with
  ``TsGroup.count``, covariates with ``bin_average`` / ``interpolate``, epochs and splits with
  ``IntervalSet`` / ``restrict`` (pynapple does the interval algebra and binning).
- ``running_speed(position, smooth_s=0.1) -> nap.Tsd`` (m/s) and
  ``movement_direction(position, smooth_s=0.1) -> nap.Tsd`` (rad, in (-π, π]) from a 2-D
  position series (metres).
- ``RawSession`` (units, covariates, epochs, source, metadata, paths): a session before binning.
- ``read_session_nwb(path, series=None, position="position", smooth_s=0.1) -> RawSession``:
  an NWB file without trials, read with ``nap.load_file``.
- ``bin_session(raw, bin_size=0.01, *, split_column="split", test_fraction=0.2,
  test_blocks=5, gap_s=None) -> BinnedSession`` (``from_pynapple`` on a ``RawSession``).
- ``load_session_nwb(path, bin_size=0.01, series=None, position="position", smooth_s=0.1,
  split_column="split", test_fraction=0.2, test_blocks=5, gap_s=None) -> BinnedSession``.
- ``write_session_nwb(session, path, *, seed=0, series=None) -> Path``: units table (spike
  times drawn uniformly inside their bins), ``processing/behavior`` (``Position/position``,
  ``CompassDirection/head_direction``, other covariates in ``BehavioralTimeSeries``), an
  epochs table with a ``split`` column, no trials table.
- ``session_from_spec(source, data_spec, gap_s=None)`` lives in
  :func:`neurorec.datasets.registry.load_session` (NWB path or bundled name such as
  ``open_field``), since ``data`` may not import ``datasets``.

Conventions: bins are ``[start + i·bin_size, start + (i+1)·bin_size)`` inside each epoch,
epochs trimmed to whole bins (pynapple's ``count`` would otherwise keep a last partial bin);
``time`` holds pynapple's bin centres. Angles (``head_direction``, ``movement_direction``,
every ``CompassDirection`` series and the names in ``circular``) are averaged and
interpolated as unit vectors. Bins with any covariate unobserved (NaN) are split ``none``.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.nwb import write_nwb_file
from neurorec.data.session import SESSION_SPLITS, BinnedSession

#: covariates treated as angles (radians) whatever their source
CIRCULAR_NAMES = frozenset({"head_direction", "movement_direction"})
#: names given to the covariates derived from the position series
DERIVED = ("speed", "movement_direction")
_EPS = 1e-9


def _nap():
    import pynapple as nap

    return nap


# --------------------------------------------------------------------------- derived covariates
def _velocity(position, smooth_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(n,) times and (n, 2) velocity (units of position per second) of a 2-D position series.

    Per interval of its time support, the position is resampled on a regular grid at its
    median sampling interval (pynapple ``interpolate``; the grid includes both ends),
    Gaussian-smoothed with s.d. ``smooth_s`` (``scipy.ndimage.gaussian_filter1d``, edges
    extended with the nearest sample, so the ends show no spurious motion) and differentiated
    by central differences (``numpy.gradient``).
    """
    from scipy.ndimage import gaussian_filter1d

    nap = _nap()
    if position.ndim != 2 or position.shape[1] != 2:
        raise DataError(f"position: expected 2 columns (x, y), got shape {position.shape}")
    if len(position.t) < 3:
        raise DataError("position: need at least 3 samples to derive speed or direction")
    dt = float(np.median(np.diff(position.t)))
    times, vels = [], []
    for s, e in zip(position.time_support.start, position.time_support.end, strict=True):
        n = int(np.floor((e - s) / dt + 1e-6))
        if n < 2:
            continue
        reg = position.interpolate(nap.Ts(np.linspace(s, e, n + 1)))
        t = np.asarray(reg.t, float)
        xy = np.asarray(reg.values, float)
        if t.size < 3:
            continue
        step = float(np.median(np.diff(t)))
        if smooth_s > 0:
            xy = gaussian_filter1d(xy, smooth_s / step, axis=0, mode="nearest")
        times.append(t)
        vels.append(np.gradient(xy, t, axis=0))
    if not times:
        raise DataError("position: no interval with at least 3 samples")
    return np.concatenate(times), np.concatenate(vels)


def running_speed(position, smooth_s: float = 0.1):
    """Running speed from a 2-D position series.

    Args:
        position: ``nap.TsdFrame`` (n_samples, 2), metres.
        smooth_s: s.d. of the Gaussian that smooths position before differentiating, seconds
            (0: none). The position is first resampled at its median sampling interval.
    Returns:
        ``nap.Tsd`` of speed, m/s, on that regular grid: ``|d/dt smoothed position|``
        (central differences; see :func:`_velocity`).
    """
    nap = _nap()
    t, v = _velocity(position, smooth_s)
    return nap.Tsd(t=t, d=np.hypot(v[:, 0], v[:, 1]))


def movement_direction(position, smooth_s: float = 0.1):
    """Direction of movement, ``atan2(dy/dt, dx/dt)`` in radians (-π, π], of the smoothed
    position (see :func:`running_speed`); ill-defined when the animal stands still."""
    nap = _nap()
    t, v = _velocity(position, smooth_s)
    return nap.Tsd(t=t, d=np.arctan2(v[:, 1], v[:, 0]))


# --------------------------------------------------------------------------- binning
def _trim(epochs, bin_size: float):
    """Epochs cut to whole numbers of bins (shorter ones dropped), sorted, metadata kept."""
    nap = _nap()
    start = np.asarray(epochs.start, float)
    end = np.asarray(epochs.end, float)
    # 1e-3 bins of slack: pynapple moves the end of an interval that abuts the next one
    # 1 µs earlier, which must not cost the epoch its last bin
    n = np.floor((end - start) / bin_size + 1e-3)
    keep = n >= 1
    meta = {}
    for col in getattr(epochs, "metadata_columns", []):
        meta[col] = np.asarray(epochs.get_info(col))[keep]
    start = start[keep]
    stop = start + n[keep] * bin_size
    # an end rounded past the next start would make pynapple join the two (dropping their
    # metadata); abutting intervals it keeps (moving the end 1 µs earlier)
    nxt = np.concatenate([start[1:], [np.inf]])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Some starts and ends are equal")
        # an NLB ``split`` column clashes with an IntervalSet attribute: read by get_info
        warnings.filterwarnings("ignore", message="Metadata name 'split' overlaps")
        return nap.IntervalSet(start, np.minimum(stop, nxt), metadata=meta or None)


def _segments(time: np.ndarray, bin_size: float) -> np.ndarray:
    """(n_bins,) segment id: a new id wherever consecutive centres are not one bin apart."""
    if time.size == 0:
        return np.zeros(0, np.int64)
    jump = np.abs(np.diff(time) - bin_size) > 1e-6 * max(bin_size, 1.0)
    return np.concatenate([[0], np.cumsum(jump)]).astype(np.int64)


def _on_bins(series, time: np.ndarray, bin_size: float, epochs, circular: bool) -> np.ndarray:
    """A series averaged (sampled finer than the bins) or linearly interpolated (coarser) onto
    the bin centres ``time``; (n_bins, n_dims) float64, NaN where the series has no data."""
    nap = _nap()
    values = np.asarray(series.values, float)
    if values.ndim == 1:
        values = values[:, None]
    if circular:
        values = np.concatenate([np.cos(values), np.sin(values)], axis=1)
    frame = nap.TsdFrame(t=series.t, d=values, time_support=series.time_support)
    out = np.full((time.size, values.shape[1]), np.nan)
    dt = float(np.median(np.diff(series.t))) if len(series.t) > 1 else np.inf
    if dt < bin_size / 2:
        avg = frame.bin_average(bin_size, epochs)
        idx = np.searchsorted(time, avg.t)
        ok = (idx < time.size) & np.isclose(time[np.minimum(idx, time.size - 1)], avg.t,
                                            rtol=0, atol=1e-9)
        out[idx[ok]] = np.asarray(avg.values, float)[ok]
    missing = np.isnan(out).any(axis=1)
    if missing.any():
        interp = frame.interpolate(nap.Ts(time[missing]))
        idx = np.flatnonzero(missing)[np.searchsorted(time[missing], interp.t)]
        out[idx] = np.asarray(interp.values, float)
    if circular:
        d = values.shape[1] // 2
        out = np.arctan2(out[:, d:], out[:, :d])
    return out


def _split_from_epochs(time: np.ndarray, epochs, column: str, source: str) -> np.ndarray:
    """(n_bins,) split labels from the epochs' ``column`` (bins outside every epoch: none)."""
    nap = _nap()
    labels = np.asarray(epochs.get_info(column)).astype(str)
    bad = sorted(set(labels) - set(SESSION_SPLITS))
    if bad:
        raise DataError(f"{source}: epochs.{column}: values must be one of "
                        f"{list(SESSION_SPLITS)}, got {bad}")
    split = np.full(time.size, "none", dtype=object)
    ts = nap.Ts(time)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        iset = nap.IntervalSet(np.asarray(epochs.start)[rows], np.asarray(epochs.end)[rows])
        inside = ts.restrict(iset).t
        split[np.isin(time, inside)] = label
    return split.astype(str)


def _check_epochs(epochs, source: str) -> None:
    start, end = np.asarray(epochs.start, float), np.asarray(epochs.end, float)
    if start.size == 0:
        raise DataError(f"{source}: epochs: no interval of at least one bin")
    if np.any(start[1:] < end[:-1] - 1e-9):
        i = int(np.argmax(start[1:] < end[:-1] - 1e-9))
        raise DataError(f"{source}: epochs: intervals overlap ({start[i]:.6g}–{end[i]:.6g} s "
                        f"and {start[i + 1]:.6g}–{end[i + 1]:.6g} s)")


def from_pynapple(
    units,
    covariates: Mapping[str, object] | None = None,
    epochs=None,
    split: str | np.ndarray | Mapping[str, object] | None = None,
    bin_size: float = 0.01,
    *,
    split_column: str = "split",
    circular: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    test_blocks: int = 5,
    gap_s: float | None = None,
    source: str = "pynapple",
    metadata: dict | None = None,
    truth: dict[str, np.ndarray] | None = None,
) -> BinnedSession:
    """Bin a continuous session given as pynapple objects.

    Args:
        units: ``nap.TsGroup`` of spike times, seconds (a ``unit_name`` metadata column, when
            present, gives the unit ids; else the group's index).
        covariates: name -> ``nap.Tsd`` (one column) or ``nap.TsdFrame`` (several): behaviour
            sampled at any rate; averaged over bins when sampled finer than half a bin, else
            linearly interpolated at the bin centres.
        epochs: ``nap.IntervalSet`` of the stretches to bin (each cut to whole bins); None:
            the units' time support intersected with every covariate's.
        split: None: the epochs' ``split_column`` when they have one, else
            :func:`neurorec.data.session_splits.default_split` (``test_fraction`` held out as
            ``test_blocks`` contiguous blocks with ``gap_s`` guard bands);
            ``"blocked"``: that default split even when the epochs carry labels;
            an (n_bins,) array of split values; or a mapping label -> ``IntervalSet``.
        bin_size: bin width, seconds.
        circular: covariate names holding angles in radians (besides ``head_direction`` and
            ``movement_direction``), averaged and interpolated as unit vectors.
        gap_s: guard band of the default split, seconds (None: one bin); the segments
            restart at each guard band.
        source, metadata, truth: stored on the session.

    Returns:
        The :class:`BinnedSession`: ``counts`` (n_bins, n_units) int64 from
        ``units.count(bin_size, epochs)``; ``time`` pynapple's bin centres; ``segment`` a new
        id wherever bins are not adjacent (between non-abutting epochs) and wherever the
        split leaves a value other than ``none`` (so history never runs from one labelled
        block into the next, :func:`neurorec.data.session_splits.restart_segments`); bins
        with an unobserved covariate are split ``none``.
    """
    nap = _nap()
    if not isinstance(units, nap.TsGroup):
        raise DataError(f"{source}: units: expected a pynapple TsGroup, got "
                        f"{type(units).__name__}")
    if len(units) == 0:
        raise DataError(f"{source}: units: the session has no units")
    if not np.isfinite(bin_size) or bin_size <= 0:
        raise DataError(f"{source}: bin_size: must be a positive number of seconds, "
                        f"got {bin_size}")
    covariates = dict(covariates or {})
    for name, series in covariates.items():
        if not isinstance(series, nap.Tsd | nap.TsdFrame):
            raise DataError(f"{source}: covariates.{name}: expected a pynapple Tsd or "
                            f"TsdFrame, got {type(series).__name__}")
    if epochs is None:
        epochs = units.time_support
        for series in covariates.values():
            epochs = epochs.intersect(series.time_support)
    elif not isinstance(epochs, nap.IntervalSet):
        raise DataError(f"{source}: epochs: expected a pynapple IntervalSet, got "
                        f"{type(epochs).__name__}")
    epochs = _trim(epochs, float(bin_size))
    _check_epochs(epochs, source)

    counted = units.count(float(bin_size), epochs)
    counts = np.asarray(counted.values).astype(np.int64, copy=False)
    time = np.asarray(counted.t, float)
    segment = _segments(time, float(bin_size))

    circ = set(CIRCULAR_NAMES) | set(circular or ())
    binned = {}
    for name, series in covariates.items():
        binned[name] = _on_bins(series, time, float(bin_size), epochs, name in circ)
    unobserved = np.zeros(time.size, bool)
    for values in binned.values():
        unobserved |= np.isnan(values).any(axis=1)

    has_column = split_column in getattr(epochs, "metadata_columns", [])
    meta = dict(metadata or {})
    meta.setdefault("circular", sorted(n for n in binned if n in circ))
    if (isinstance(split, str) and split == "blocked") or (split is None and not has_column):
        from neurorec.data.session_splits import default_split_labels

        labels, segment = default_split_labels(time, segment, float(bin_size),
                                               test_fraction, test_blocks, gap_s)
        meta.setdefault("split_from", f"blocked: test_fraction={test_fraction}, "
                        f"test_blocks={test_blocks}, gap_s={gap_s}")
    elif split is None:
        from neurorec.data.session_splits import restart_segments

        labels = _split_from_epochs(time, epochs, split_column, source)
        segment = restart_segments(segment, labels)
        meta.setdefault("split_from", f"epochs.{split_column}")
    elif isinstance(split, Mapping):
        labels = np.full(time.size, "none", dtype=object)
        ts = nap.Ts(time)
        for label, iset in split.items():
            if label not in SESSION_SPLITS:
                raise DataError(f"{source}: split: unknown value {label!r}; "
                                f"known {list(SESSION_SPLITS)}")
            labels[np.isin(time, ts.restrict(iset).t)] = label
        labels = labels.astype(str)
        meta.setdefault("split_from", "given intervals")
    else:
        labels = np.asarray(split).astype(str)
        if labels.shape != time.shape:
            raise DataError(f"{source}: split: expected shape {time.shape}, got {labels.shape}")
        bad = sorted(set(labels) - set(SESSION_SPLITS))
        if bad:
            raise DataError(f"{source}: split: unknown value(s) {bad}; "
                            f"known {list(SESSION_SPLITS)}")
        meta.setdefault("split_from", "given per bin")
    labels = np.where(unobserved, "none", labels).astype("<U5")
    meta["n_bins_unobserved"] = int(unobserved.sum())

    if "unit_name" in getattr(units, "metadata_columns", []):
        unit_ids = np.asarray(units.get_info("unit_name")).astype(str)
    else:
        unit_ids = np.asarray(units.index)
    return BinnedSession(counts=counts, bin_size=float(bin_size), time=time,
                         covariates=binned, split=labels, segment=segment, unit_ids=unit_ids,
                         source=source, truth=dict(truth or {}), metadata=meta)


# --------------------------------------------------------------------------- NWB input
@dataclass
class RawSession:
    """A continuous session before binning.

    Attributes:
        units: ``nap.TsGroup`` of spike times, seconds.
        covariates: name -> ``nap.Tsd`` / ``nap.TsdFrame`` behaviour series (derived ones
            included).
        epochs: ``nap.IntervalSet`` (its metadata may hold a split column), or None.
        source: the file path, for messages.
        metadata: free-form facts (``paths``: covariate name -> NWB path it came from).
    """

    units: object
    covariates: dict[str, object]
    epochs: object | None
    source: str
    metadata: dict = field(default_factory=dict)


def _matches(request: str, key: str, path: str) -> bool:
    r = request.strip("/")
    p = path.strip("/")
    return r in (key, p) or ("processing/" + p) == r


def read_session_nwb(path: str | os.PathLike, series: Sequence[str] | None = None,
                     position: str | None = "position",
                     smooth_s: float = 0.1) -> RawSession:
    """Read a trial-less NWB session with ``nap.load_file``.

    Args:
        path: the NWB file: a units table (spike times, seconds); behaviour series in
            processing modules (``processing/behavior/Position/position``,
            ``CompassDirection/head_direction``, ``BehavioralTimeSeries/<name>``, ...); an
            optional epochs table (its ``split`` column: NLB values).
        series: which behaviour series, by pynapple key (``position``) or NWB path
            (``processing/behavior/Position/position``); None: every ``Tsd``/``TsdFrame``
            in a processing module.
        position: key of the 2-D position series (metres) from which ``speed`` and
            ``movement_direction`` are derived when it is read; None: derive nothing.
        smooth_s: smoothing of position for the derived covariates, seconds.

    Returns:
        The :class:`RawSession` (covariates keyed by pynapple key; ``metadata["paths"]``
        maps each to its NWB path).
    """
    nap = _nap()
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise DataError(f"{src}: file: not found")
    try:
        with warnings.catch_warnings():
            # a ``split`` epochs column clashes with an IntervalSet attribute (read it with
            # get_info); abutting epochs lose 1 µs at their end: both expected here
            warnings.filterwarnings("ignore", message="Metadata name 'split' overlaps")
            warnings.filterwarnings("ignore", message="Some starts and ends are equal")
            nwb = nap.load_file(str(p))
            loaded = {k: nwb[k] for k in nwb.key_to_full_path}
    except Exception as err:  # h5py/pynwb raise many kinds for a file that is not NWB
        raise DataError(f"{src}: file: not a readable NWB file ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''})") from None
    paths = dict(nwb.key_to_full_path)
    if "units" not in paths or not isinstance(loaded["units"], nap.TsGroup):
        raise DataError(f"{src}: units: the file has no units table")
    units = loaded["units"]
    behaviour = {k: v for k, v in paths.items()
                 if k not in ("units", "epochs", "trials") and v.count("/") >= 3}
    chosen: dict[str, str] = {}
    if series is None:
        for key, full in behaviour.items():
            obj = loaded[key]
            if isinstance(obj, nap.Tsd | nap.TsdFrame):
                chosen[key] = full
    else:
        for request in series:
            hits = [k for k, v in paths.items() if _matches(request, k, v)]
            if not hits:
                raise DataError(f"{src}: data.series: no series {request!r} in the file; "
                                f"have {sorted(behaviour)}")
            obj = loaded[hits[0]]
            if not isinstance(obj, nap.Tsd | nap.TsdFrame):
                raise DataError(f"{src}: {paths[hits[0]]}: not a time series "
                                f"({type(obj).__name__})")
            chosen[hits[0]] = paths[hits[0]]
    covariates = {k: loaded[k] for k in chosen}
    circular = [k for k, v in chosen.items() if "CompassDirection" in v]
    if position is not None and position in covariates:
        pos = covariates[position]
        if pos.ndim != 2 or pos.shape[1] != 2:
            raise DataError(f"{src}: {chosen[position]}: expected 2 columns (x, y metres) "
                            f"to derive speed and direction, got shape {pos.shape}")
        covariates["speed"] = running_speed(pos, smooth_s)
        covariates["movement_direction"] = movement_direction(pos, smooth_s)
        chosen["speed"] = f"derived: |d/dt {chosen[position]}|, smoothed {smooth_s} s"
        chosen["movement_direction"] = (f"derived: direction of d/dt {chosen[position]}, "
                                        f"smoothed {smooth_s} s")
    elif position is not None and series is not None and position in series:
        raise DataError(f"{src}: data.position: series {position!r} not read")
    epochs = loaded["epochs"] if "epochs" in paths else None
    return RawSession(units=units, covariates=covariates, epochs=epochs, source=src,
                      metadata={"paths": chosen, "circular": circular})


def bin_session(raw: RawSession, bin_size: float = 0.01, *, split_column: str = "split",
                test_fraction: float = 0.2, test_blocks: int = 5,
                gap_s: float | None = None) -> BinnedSession:
    """:func:`from_pynapple` on a :class:`RawSession`: its epochs as they are (bins where a
    covariate has no data become split ``none``) and their split column."""
    return from_pynapple(raw.units, raw.covariates, raw.epochs, None, bin_size,
                         split_column=split_column, circular=raw.metadata.get("circular"),
                         test_fraction=test_fraction, test_blocks=test_blocks, gap_s=gap_s,
                         source=raw.source, metadata=dict(raw.metadata))


def load_session_nwb(path: str | os.PathLike, bin_size: float = 0.01,
                     series: Sequence[str] | None = None, position: str | None = "position",
                     smooth_s: float = 0.1, split_column: str = "split",
                     test_fraction: float = 0.2, test_blocks: int = 5,
                     gap_s: float | None = None) -> BinnedSession:
    """:func:`read_session_nwb` then :func:`bin_session`."""
    raw = read_session_nwb(path, series, position, smooth_s)
    return bin_session(raw, bin_size, split_column=split_column, test_fraction=test_fraction,
                       test_blocks=test_blocks, gap_s=gap_s)


# --------------------------------------------------------------------------- NWB output
def spike_times_from_counts(session: BinnedSession, seed: int = 0) -> list[np.ndarray]:
    """Spike times that re-bin to ``session.counts``: each spike uniform in
    ``[e + 0.001·b, e + 0.999·b)`` of its bin ``[e, e + b)`` (a seeded draw, away from the
    edges so that re-binning is exact); one sorted array per unit, seconds."""
    rng = np.random.default_rng(seed)
    b = session.bin_size
    left = session.time - b / 2
    out = []
    for u in range(session.n_units):
        n = session.counts[:, u].astype(np.int64)
        starts = np.repeat(left, n)
        out.append(np.sort(starts + b * rng.uniform(0.001, 0.999, size=starts.size)))
    return out


def _runs(session: BinnedSession) -> list[tuple[float, float, str]]:
    """(start, stop, split) of each run of bins with one segment and one split value."""
    key_change = (np.diff(session.segment) != 0) | (session.split[1:] != session.split[:-1])
    starts = np.concatenate([[0], np.flatnonzero(key_change) + 1])
    stops = np.concatenate([starts[1:], [session.n_bins]])
    b = session.bin_size
    left = np.asarray(session.time, float) - b / 2
    out = []
    for i, j in zip(starts, stops, strict=True):
        # abutting runs share one float as stop and start, so no interval overlaps another
        adjacent = j < session.n_bins and abs(session.time[j] - session.time[j - 1] - b) < 1e-6 * b
        stop = left[j] if adjacent else session.time[j - 1] + b / 2
        out.append((float(left[i]), float(stop), str(session.split[i])))
    return out


def write_session_nwb(session: BinnedSession, path: str | os.PathLike, *, seed: int = 0,
                      series: Sequence[str] | None = None,
                      spike_times: Sequence[np.ndarray] | None = None) -> Path:
    """Write a session as a trial-less NWB file that :func:`read_session_nwb` reads back.

    Layout: ``units`` (``spike_times`` s, ``unit_name``); ``processing/behavior`` with
    ``Position/position`` (metres, 2 columns; from covariate ``position``),
    ``CompassDirection/head_direction`` (radians; from ``head_direction``) and every other
    written covariate as ``BehavioralTimeSeries/<name>``, each sampled at the bin centres
    (timestamps); an ``epochs`` table, one row per run of bins with one segment and one
    split value, with a ``split`` column; no trials table.

    Args:
        session: the binned session.
        path: the file to write (atomically: a temporary file renamed into place).
        seed: seed of the uniform draw that places spikes inside their bins.
        series: covariates to write; None: all but the derived ``speed`` and
            ``movement_direction`` (the reader derives them again from position).
        spike_times: one sorted array per unit to write instead of drawing them from the
            counts (must re-bin to ``session.counts``).
    Returns:
        The path written.
    """
    from pynwb import NWBFile
    from pynwb.behavior import BehavioralTimeSeries, CompassDirection, Position

    p = Path(path)
    names = [n for n in session.covariates if n not in DERIVED] if series is None \
        else list(series)
    missing = [n for n in names if n not in session.covariates]
    if missing:
        raise DataError(f"{p}: series: {missing} not among the session's covariates "
                        f"{sorted(session.covariates)}")
    times = spike_times_from_counts(session, seed) if spike_times is None else spike_times
    nwb = NWBFile(session_description=f"neurorec session from {session.source}",
                  identifier=str(uuid.uuid4()), session_start_time=datetime(2000, 1, 1,
                                                                            tzinfo=UTC),
                  notes=str(session.metadata.get("description", "")))
    nwb.add_unit_column("unit_name", "unit identifier")
    for uid, t in zip(session.unit_ids, times, strict=True):
        nwb.add_unit(spike_times=np.asarray(t, float), unit_name=str(uid))
    behaviour = nwb.create_processing_module("behavior", "behaviour on the bin centres")
    stamps = np.asarray(session.time, float)
    others = BehavioralTimeSeries(name="BehavioralTimeSeries")
    for name in names:
        values = np.asarray(session.covariates[name], float)
        if name == "position":
            box = Position(name="Position")
            box.create_spatial_series(name="position", data=values, timestamps=stamps,
                                      reference_frame="(0, 0) is a corner of the arena",
                                      unit="meters")
            behaviour.add(box)
        elif name == "head_direction":
            box = CompassDirection(name="CompassDirection")
            box.create_spatial_series(name="head_direction", data=values[:, 0],
                                      timestamps=stamps, reference_frame="0 rad: +x axis",
                                      unit="radians")
            behaviour.add(box)
        else:
            others.create_timeseries(name=name, data=values[:, 0] if values.shape[1] == 1
                                     else values, timestamps=stamps, unit="a.u.")
    if others.time_series:
        behaviour.add(others)
    nwb.add_epoch_column("split", "NLB split value: train, val, test or none")
    for start, stop, label in _runs(session):
        nwb.add_epoch(start, stop, split=label)
    p.parent.mkdir(parents=True, exist_ok=True)
    return write_nwb_file(nwb, p)
