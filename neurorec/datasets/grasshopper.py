"""Grasshopper auditory receptor neuron: spike trains with their stimulus (shipped in nitime).

The files ``nitime/data/grasshopper_spike_times{1,2}.txt`` and
``grasshopper_stimulus{1,2}.txt`` are read unmodified from the installed ``nitime`` package:

* spike times are in **microseconds** from the stimulus onset, one a line after a ``#`` header
  (recording 1: 929 spikes, 2: 868, both within 10 s);
* the stimulus file holds ``time_us  value`` pairs every 50 µs (20 kHz), 200,000 samples =
  10 s: the sound-amplitude envelope (Gaussian, 200 Hz cut-off, 6 dB s.d. per the header).

Each recording is one 10 s stimulus; it is cut into ``TRIAL_S`` = 1 s trials so that a
stratified split holds some out (spike history restarts at each cut: 1 % of bins lose
part of a 10–20 ms history). The stimulus is z-scored per recording (the filter is then
in drive per standard deviation) and kept at 20 kHz: binning averages it per bin.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurorec.core.errors import DataError
from neurorec.data.recording import Recording, StimulusSeries
from neurorec.data.validation import validate_recording

NAME = "grasshopper"
RECORDINGS = (1, 2)
TRIAL_S = 1.0
DURATION_S = 10.0
RATE_HZ = 20_000.0
LICENCE = "BSD-3-Clause (distributed with nitime)"
CITATION = ("Rokem A, Watzl S, Gollisch T, Stemmler M, Herz AVM, Samengo I (2006). Spike-timing "
            "precision underlies the coding efficiency of auditory receptor neurons. "
            "J Neurophysiol 95:2541-2552; data as shipped in nitime (nipy)")


def data_dir() -> Path:
    """Folder of nitime's bundled data files."""
    try:
        import nitime
    except ImportError as err:  # a declared dependency; say how to get it back
        raise DataError(f"{NAME}: nitime is not installed ({err}); pip install nitime") from None
    return Path(nitime.__file__).parent / "data"


def load_grasshopper(recording: int = 1) -> Recording:
    """One grasshopper receptor recording as 10 trials of 1 s with a 20 kHz stimulus series.

    Args:
        recording: 1 or 2 (two stimuli presented to the receptor).
    Returns:
        A validated ``Recording`` with one unit, a ``segment`` stimulus column (one condition:
        the stimulus is a time series, not a trial label) and ``stimulus`` set.
    """
    if recording not in RECORDINGS:
        raise DataError(f"{NAME}:{recording}: recording: expected 1 or 2")
    folder = data_dir()
    spikes_path = folder / f"grasshopper_spike_times{recording}.txt"
    stim_path = folder / f"grasshopper_stimulus{recording}.txt"
    for path in (spikes_path, stim_path):
        if not path.is_file():
            raise DataError(f"{path}: file not found (reinstall nitime)")
    spikes = np.loadtxt(spikes_path, comments="#", ndmin=1) * 1e-6
    stim = np.loadtxt(stim_path, ndmin=2)
    step_us = np.diff(stim[:, 0])
    if not np.allclose(step_us, 1e6 / RATE_HZ):
        raise DataError(f"{stim_path}: time: expected samples every {1e6 / RATE_HZ:g} µs")
    values = stim[:, 1:2]
    values = (values - values.mean()) / values.std()
    n_trials = round(DURATION_S / TRIAL_S)
    starts = np.arange(n_trials) * TRIAL_S
    trials = pd.DataFrame({"start_time": starts, "stop_time": starts + TRIAL_S,
                           "segment": np.zeros(n_trials, dtype=int)})
    rec = Recording(
        spike_times=[np.sort(spikes)],
        unit_ids=np.array([f"receptor{recording}"]),
        trials=trials,
        stimulus_columns=("segment",),
        source=f"{NAME}:{recording}",
        metadata={"citation": CITATION, "licence": LICENCE, "species": "Locusta migratoria",
                  "stimulus": "sound amplitude envelope, z-scored"},
        stimulus=StimulusSeries(values=values, rate_hz=RATE_HZ, start_time=stim[0, 0] * 1e-6,
                                name="sound_envelope", unit="z-score"),
    )
    validate_recording(rec)
    return rec


def size_bytes() -> int:
    folder = data_dir()
    return sum((folder / f"grasshopper_{kind}{r}.txt").stat().st_size
               for kind in ("spike_times", "stimulus") for r in RECORDINGS)
