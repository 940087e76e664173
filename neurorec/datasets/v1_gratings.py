"""Macaque V1, drifting gratings in 16 directions (Ecker et al. 2010; Berens et al. 2012).

The bundled file ``files/v1_gratings/data_v1_binned_moving.mat`` is used unmodified. It holds
27 sessions (0..26; 577 single units; monkey H: sessions 0-13, monkey D: 14-26), each with
spike counts ``spikes`` (units × 16 directions × 90 bins × repetitions, uint8) in 10 ms bins
whose centres are -195..695 ms around stimulus onset.

What the data holds (checked on the file):

* contrast is 100 in every condition of every session, so ``contrast`` is a trials column
  but not a stimulus column; ``stimulus_columns == ("direction",)``.
* directions are 0, 22.5, ..., 337.5 deg for monkey H; for monkey D (sessions 14-26) the file
  stores them rounded to integers (0, 22, 45, 67, 90, 112, 135, 158, 180, 202, 225, 247, 270,
  292, 314, 336); ``direction`` keeps the published values.
* repetitions per session vary from 5 (session 23) to 129 (session 6).
* some units have no spike at all (sessions 7, 9, 13, 15, 23: one each; session 24: three);
  they are dropped (an empty unit carries no information and fails validation), and their
  ids are listed in ``metadata["dropped_units"]``.
* session 25, repetition 0: 9 of the 16 directions have no spike from any unit (every other
  trial of that session has >= 45); these trials look unrecorded but are kept as published
  and listed in ``metadata["silent_trials"]`` (trial row indices).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording, counts_to_spike_times
from neurorec.data.validation import validate_recording

NAME = "v1_gratings"
DIR = Path(__file__).parent / "files" / "v1_gratings"
MAT_PATH = DIR / "data_v1_binned_moving.mat"
N_SESSIONS = 27
BIN_SIZE_S = 0.01
PRE_S = 0.2  # trial start, seconds before stimulus onset (first bin edge: -200 ms)
POST_S = 0.7  # trial stop, seconds after stimulus onset (last bin edge: +700 ms)
GAP_S = 0.3  # synthetic gap between consecutive trials
PERIOD_S = PRE_S + POST_S + GAP_S
LICENCE = "CC BY-NC-ND 3.0 (A. S. Tolias, A. S. Ecker, P. Berens, M. Bethge; see data_README.m)"
CITATION = (
    "Ecker AS, Berens P, Keliris GA, Bethge M, Logothetis NK, Tolias AS (2010). Decorrelated "
    "neuronal firing in cortical microcircuits. Science 327:584-587. Berens P, Ecker AS, "
    "Cotton RJ, Ma WJ, Bethge M, Tolias AS (2012). A fast and simple population code for "
    "orientation in primate V1. J Neurosci 32:10618-10626."
)


@functools.lru_cache(maxsize=1)
def _sessions(path: str) -> tuple:
    """All session structs of the .mat file (read once per process)."""
    from scipy.io import loadmat

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file: not found (the V1 gratings dataset ships with neurorec)")
    try:
        data = loadmat(p, squeeze_me=True, struct_as_record=False)["data"]
    except Exception as exc:  # scipy raises several types for a corrupt file
        raise DataError(f"{p}: data: cannot read the MATLAB file ({exc})") from exc
    return tuple(np.atleast_1d(data))


def session_spikes(session: int = 0) -> np.ndarray:
    """The published counts of one session, (n_units, 16, 90, n_repetitions) uint8."""
    return np.asarray(_session(session).spikes)


def _session(session: int):
    sessions = _sessions(str(MAT_PATH))
    if not isinstance(session, int | np.integer) or not 0 <= session < len(sessions):
        raise DataError(
            f"{MAT_PATH}: session: expected an integer in 0..{len(sessions) - 1}, got {session!r}"
        )
    return sessions[int(session)]


def load_v1_gratings(session: int = 0, max_contamination: float | None = None) -> Recording:
    """One V1 session as a :class:`Recording` on a synthetic, explicit timeline.

    Args:
        session: 0..26.
        max_contamination: keep units whose contamination is below this value (the papers
            used 0.05); None keeps all units that fired.

    Returns:
        A ``Recording``. Trial ``j = repetition * 16 + d`` shows direction index ``d``
        (natural order 0..15) of repetition ``repetition`` and spans ``[j * 1.2, j * 1.2 +
        0.9]`` s: 0.2 s before to 0.7 s after the stimulus onset (``stimulus_onset``, absolute
        seconds), followed by a 0.3 s gap with no data. The published data is binned at
        10 ms, so sub-bin timing is not available: a count ``n`` in a bin becomes ``n``
        identical spike times at that bin's centre. ``bin_trials(rec, 0.01)`` therefore
        returns the published counts exactly, as (trial, bin, unit).

        Trials columns: ``start_time``, ``stop_time`` (s), ``direction`` (deg), ``contrast``
        (%, always 100), ``repetition``, ``stimulus_onset`` (s). Unit ids are
        ``tt{tetrode}_u{k}`` with ``k`` the unit's row in the session's ``spikes`` array.
        Metadata: subject, date, session, tetrode, contamination (per kept unit), dropped
        units, silent trials, licence, citation, bin_size_s.
    """
    s = _session(session)
    spikes = np.asarray(s.spikes)
    n_units, n_dirs, n_bins, n_reps = spikes.shape
    tetrode = np.atleast_1d(s.tetrode).astype(int)
    contamination = np.atleast_1d(s.contamination).astype(float)
    conds = np.atleast_1d(s.conditions)
    direction = np.array([float(c.direction) for c in conds])
    contrast = np.array([float(c.contrast) for c in conds])
    bin_centres_ms = np.atleast_1d(s.times).astype(float)
    expected_ms = -195.0 + 10.0 * np.arange(n_bins)
    if n_dirs != len(conds) or not np.array_equal(bin_centres_ms, expected_ms):
        raise DataError(
            f"{MAT_PATH}: session {session}: unexpected layout (spikes {spikes.shape}, "
            f"{len(conds)} conditions, bin centres {bin_centres_ms[:2]}..)"
        )
    unit_ids = np.array([f"tt{tetrode[i]}_u{i}" for i in range(n_units)])

    keep = spikes.reshape(n_units, -1).sum(axis=1) > 0
    dropped = [str(u) for u in unit_ids[~keep]]
    if max_contamination is not None:
        keep &= contamination < max_contamination
    if not keep.any():
        raise DataError(
            f"{MAT_PATH}: session {session}: no unit has contamination < {max_contamination}"
        )

    # (reps, dirs, bins, units) -> (trials, bins, units), trial = rep * n_dirs + dir
    counts = spikes[keep].transpose(3, 1, 2, 0).reshape(n_reps * n_dirs, n_bins, -1)
    n_trials = counts.shape[0]
    start = np.arange(n_trials) * PERIOD_S
    spike_times = counts_to_spike_times(counts, start, BIN_SIZE_S)
    rep = np.repeat(np.arange(n_reps), n_dirs)
    dir_idx = np.tile(np.arange(n_dirs), n_reps)
    trials = pd.DataFrame(
        {
            "start_time": start,
            "stop_time": start + PRE_S + POST_S,
            "direction": direction[dir_idx],
            "contrast": contrast[dir_idx],
            "repetition": rep,
            "stimulus_onset": start + PRE_S,
        }
    )
    stim = ("direction", "contrast") if np.unique(contrast).size > 1 else ("direction",)
    silent = np.flatnonzero(spikes.sum(axis=(0, 2)).T.ravel() == 0)
    rec = Recording(
        spike_times=spike_times,
        unit_ids=unit_ids[keep],
        trials=trials,
        stimulus_columns=stim,
        source=f"{NAME}:{session}",
        metadata={
            "dataset": NAME,
            "session": int(session),
            "subject": str(s.subject),
            "date": str(s.date),
            "tetrode": tetrode[keep],
            "contamination": contamination[keep],
            "dropped_units": dropped,
            "silent_trials": silent.tolist(),
            "licence": LICENCE,
            "citation": CITATION,
            "bin_size_s": BIN_SIZE_S,
            "timeline": (
                "synthetic: trial j = repetition*16 + direction index, start j*1.2 s, "
                "stimulus onset +0.2 s, stop +0.9 s; spikes at 10 ms bin centres"
            ),
        },
    )
    validate_recording(rec)
    return rec
