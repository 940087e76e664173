"""NWB round trips (pynwb, pynapple) and validation of bad recordings and bad files."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurorec.core.errors import DataError
from neurorec.data import Recording, read_nwb, validate_recording, write_nwb
from neurorec.datasets import load_locust_al, load_v1_gratings


def assert_same_recording(a: Recording, b: Recording) -> None:
    assert a.unit_ids.tolist() == b.unit_ids.tolist()
    assert len(a.spike_times) == len(b.spike_times)
    for x, y in zip(a.spike_times, b.spike_times, strict=True):
        np.testing.assert_array_equal(x, y)
    pd.testing.assert_frame_equal(a.trials, b.trials)
    assert a.stimulus_columns == b.stimulus_columns


def test_v1_round_trip(tmp_path):
    rec = load_v1_gratings(0)
    path = write_nwb(rec, tmp_path / "v1.nwb")
    assert path == tmp_path / "v1.nwb"
    assert [p.name for p in tmp_path.iterdir()] == ["v1.nwb"]  # no temporary file left
    back = read_nwb(path)
    assert_same_recording(rec, back)
    assert back.source == str(path)
    assert back.metadata["subject"] == "H"
    assert back.metadata["contamination"] == pytest.approx(rec.metadata["contamination"])
    # stimulus columns given explicitly win over the stored ones
    assert read_nwb(path, stimulus_columns=["direction", "contrast"]).stimulus_columns == (
        "direction",
        "contrast",
    )


def test_v1_readable_by_pynwb_and_pynapple(tmp_path):
    nap = pytest.importorskip("pynapple")
    from pynwb import NWBHDF5IO

    rec = load_v1_gratings(7)
    path = write_nwb(rec, tmp_path / "v1_s7.nwb")
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        assert len(nwb.units) == rec.n_units
        assert len(nwb.trials) == len(rec.trials)
        assert nwb.session_start_time.year == 2008
    data = nap.load_file(str(path))
    units, trials = data["units"], data["trials"]
    assert len(units) == rec.n_units
    assert len(trials) == len(rec.trials) == 96
    assert sum(len(units[i]) for i in units.keys()) == sum(t.size for t in rec.spike_times)
    np.testing.assert_allclose(trials.start, rec.trials["start_time"])


def test_locust_group_round_trip(tmp_path):
    rec = load_locust_al(["Vanilla_1", "Spontaneous_4"])
    back = read_nwb(write_nwb(rec, tmp_path / "locust.nwb"))
    assert_same_recording(rec, back)
    assert back.trials["odour"].tolist() == ["Vanilla"] * 25 + ["none"] * 30


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "rec.nwb"
    path.write_text("old")
    write_nwb(load_locust_al(["C3H_4"]), path)
    assert len(read_nwb(path).trials) == 10


def test_foreign_file_stimulus_columns_guessed(tmp_path):
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile("foreign", "id-1", datetime(2020, 1, 1, tzinfo=UTC))
    nwb.add_trial_column("orientation", "deg")
    nwb.add_trial_column("stim_onset", "s")
    nwb.add_trial_column("trial_id", "bookkeeping")
    for i in range(4):
        nwb.add_trial(
            start_time=2.0 * i, stop_time=2.0 * i + 1, orientation=45.0 * (i % 2),
            stim_onset=2.0 * i + 0.5, trial_id=i,
        )  # fmt: skip
    for k in range(3):
        nwb.add_unit(spike_times=np.array([0.5, 2.5, 4.5]) + 0.1 * k)
    path = tmp_path / "foreign.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    rec = read_nwb(path)
    assert rec.stimulus_columns == ("orientation",)
    assert rec.unit_ids.tolist() == ["0", "1", "2"]


# --- bad recordings -----------------------------------------------------------------------


def recording(spikes, trials=None, stimulus_columns=("direction",), source="bad.nwb"):
    if trials is None:
        trials = pd.DataFrame(
            {"start_time": [0.0, 2.0], "stop_time": [1.0, 3.0], "direction": [0.0, 90.0]}
        )
    return Recording(
        spike_times=[np.asarray(s, dtype=float) for s in spikes],
        unit_ids=np.array([f"u{i}" for i in range(len(spikes))]),
        trials=trials,
        stimulus_columns=stimulus_columns,
        source=source,
    )


def test_clean_recording_passes():
    validate_recording(recording([[0.1, 0.2], [2.5]]))


@pytest.mark.parametrize(
    ("spikes", "match"),
    [
        ([[0.1, 0.3, 0.2]], r"bad\.nwb: unit u0: spike times not sorted"),
        ([[-0.1, 0.2]], r"bad\.nwb: unit u0: 1 negative spike times"),
        ([[0.1, np.nan]], r"bad\.nwb: unit u0: 1 spike times are NaN"),
        ([[0.1], [0.2, 5.0]], r"bad\.nwb: unit u1: 1 spikes after the last trial's stop_time 3"),
        ([[0.1], []], r"bad\.nwb: unit u1: no spikes \(empty unit\)"),
    ],
)
def test_bad_spike_times(spikes, match):
    with pytest.raises(DataError, match=match):
        validate_recording(recording(spikes))


def test_bad_trials_each_reported_on_its_own_line():
    trials = pd.DataFrame(
        {"start_time": [0.0, 2.0], "stop_time": [1.0, 2.0], "split": ["train", "holdout"]}
    )
    with pytest.raises(DataError) as info:
        validate_recording(recording([[0.1, 0.2, 0.1]], trials=trials))
    lines = info.value.lines
    assert len(lines) == 4
    assert all(line.startswith("bad.nwb: ") for line in lines)
    text = "\n".join(lines)
    assert "unit u0: spike times not sorted" in text
    assert "stimulus column(s) ['direction'] not in the trials table" in text
    assert "1 trials with stop_time <= start_time (first at row 1" in text
    assert ("trials.split: values must be one of 'train', 'val', 'test', 'none', "
            "got ['holdout']") in text


def test_missing_trial_columns_and_no_stimulus():
    trials = pd.DataFrame({"begin": [0.0], "stop_time": [1.0]})
    with pytest.raises(DataError, match=r"bad\.nwb: trials: missing column\(s\) \['start_time'\]"):
        validate_recording(recording([[0.5]], trials=trials))
    with pytest.raises(DataError, match=r"bad\.nwb: trials: no stimulus column"):
        validate_recording(recording([[0.5]], stimulus_columns=()))


# --- bad files ----------------------------------------------------------------------------


def write_raw(path: Path, units=None, trials=True, stim=True) -> Path:
    """An NWB file written with pynwb directly, to test what read_nwb does with it."""
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile("test", "id-2", datetime(2020, 1, 1, tzinfo=UTC))
    if trials:
        if stim:
            nwb.add_trial_column("direction", "deg")
        for i in range(2):
            extra = {"direction": 90.0 * i} if stim else {}
            nwb.add_trial(start_time=2.0 * i, stop_time=2.0 * i + 1, **extra)
    for s in units or []:
        nwb.add_unit(spike_times=np.asarray(s, dtype=float))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def test_missing_file(tmp_path):
    path = tmp_path / "nothing.nwb"
    with pytest.raises(DataError, match=re.escape(f"{path}: file: not found")):
        read_nwb(path)


def test_not_an_nwb_file(tmp_path):
    path = tmp_path / "text.nwb"
    path.write_text("not hdf5")
    with pytest.raises(DataError, match=re.escape(f"{path}: file: cannot read as NWB")):
        read_nwb(path)


def test_no_units_table(tmp_path):
    path = write_raw(tmp_path / "nounits.nwb", units=None)
    with pytest.raises(DataError, match=re.escape(f"{path}: units: the file has no units table")):
        read_nwb(path)


def test_no_trials_table(tmp_path):
    path = write_raw(tmp_path / "notrials.nwb", units=[[0.5]], trials=False)
    with pytest.raises(DataError, match=re.escape(f"{path}: trials: the file has no trials")):
        read_nwb(path)


@pytest.mark.parametrize(
    ("units", "stim", "match"),
    [
        ([[0.5, 0.2]], True, "unit 0: spike times not sorted"),
        ([[-0.5, 0.2]], True, "unit 0: 1 negative spike times"),
        ([[0.5, np.nan]], True, "unit 0: 1 spike times are NaN"),
        ([[0.5], [0.2, 9.0]], True, "unit 1: 1 spikes after the last trial's stop_time"),
        ([[0.5], []], True, "unit 1: no spikes (empty unit)"),
        ([[0.5]], False, "trials: no stimulus column"),
    ],
)
def test_bad_file_contents(tmp_path, units, stim, match):
    path = write_raw(tmp_path / "bad.nwb", units=units, stim=stim)
    with pytest.raises(DataError, match=re.escape(f"{path}: {match}")):
        read_nwb(path)
