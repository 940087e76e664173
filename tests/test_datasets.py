"""The bundled datasets load completely and exactly as published."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurorec.core.errors import DataError
from neurorec.data import bin_trials
from neurorec.datasets import (
    DatasetInfo,
    list_datasets,
    load,
    load_locust_al,
    load_v1_gratings,
    locust_al,
    v1_gratings,
)
from neurorec.datasets.v1_gratings import session_spikes

LOCUST_FILES = sorted(locust_al.SPIKE_DIR.glob("locust20010214_*_tetB_u*.txt"))


@pytest.fixture(scope="module")
def locust():
    return load_locust_al()


def test_list_datasets_sizes_from_disk():
    infos = {d.name: d for d in list_datasets()}
    assert set(infos) == {"v1_gratings", "locust_al", "grasshopper", "open_field"}
    # the two ratinabox trajectory files (sargolini.npz 715,694 B + tanni.npz 5,272,574 B)
    assert infos["open_field"].size_bytes == 715_694 + 5_272_574
    assert "SIMULATED" in infos["open_field"].description
    assert all(isinstance(d, DatasetInfo) for d in infos.values())
    assert infos["v1_gratings"].sessions == 27
    assert infos["v1_gratings"].size_bytes == 2_169_618 + 1_259  # .mat + data_README.m
    assert 7_000_000 < infos["locust_al"].size_bytes < 8_000_000
    assert "GPL" in infos["locust_al"].licence
    assert "NC-ND" in infos["v1_gratings"].licence
    assert (infos["grasshopper"].first, infos["grasshopper"].sessions) == (1, 2)
    assert infos["grasshopper"].size_bytes > 7_000_000  # 2 × 3.6 MB stimulus files


def test_bundled_files_match_shared_copy():
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("no ../shared/data next to this checkout")
    for name in ("v1_gratings", "locust_al"):
        for f in (shared / name).rglob("*"):
            if f.is_file():
                mine = v1_gratings.DIR.parent / name / f.relative_to(shared / name)
                assert mine.read_bytes() == f.read_bytes(), mine


@pytest.mark.parametrize("session", range(27))
def test_v1_every_session_keeps_every_spike(session):
    rec = load_v1_gratings(session)
    spikes = session_spikes(session)
    assert sum(t.size for t in rec.spike_times) == int(spikes.sum(dtype=np.int64))
    n_units, n_dirs, n_bins, n_reps = spikes.shape
    assert (n_dirs, n_bins) == (16, 90)
    assert len(rec.trials) == 16 * n_reps
    assert rec.n_units == n_units - len(rec.metadata["dropped_units"])
    assert rec.stimulus_columns == ("direction",)
    assert (rec.trials["contrast"] == 100).all()
    assert rec.trials["direction"].nunique() == 16
    np.testing.assert_allclose(rec.trials["stop_time"] - rec.trials["start_time"], 0.9)
    np.testing.assert_allclose(rec.trials["stimulus_onset"] - rec.trials["start_time"], 0.2)


@pytest.mark.parametrize("session", [0, 6, 14, 24, 25])
def test_v1_binning_round_trip_is_exact(session):
    rec = load_v1_gratings(session)
    spikes = session_spikes(session)
    fired = spikes.reshape(spikes.shape[0], -1).sum(axis=1) > 0
    expected = spikes[fired].transpose(3, 1, 2, 0).reshape(-1, 90, int(fired.sum()))
    binned = bin_trials(rec, 0.01)
    assert binned.counts.dtype == np.int64
    np.testing.assert_array_equal(binned.counts, expected)
    np.testing.assert_allclose(binned.time, 0.005 + 0.01 * np.arange(90))


def test_v1_oddities_are_recorded():
    dropped = {s: load_v1_gratings(s).metadata["dropped_units"] for s in range(27)}
    assert {s: d for s, d in dropped.items() if d} == {
        7: ["tt20_u12"], 9: ["tt20_u10"], 13: ["tt6_u5"], 15: ["tt6_u12"], 23: ["tt6_u12"],
        24: ["tt3_u1", "tt5_u8", "tt7_u15"],
    }  # fmt: skip
    assert load_v1_gratings(24).n_units == 18 - 3
    # session 25, repetition 0: 9 directions without a single spike, kept as published
    assert load_v1_gratings(25).metadata["silent_trials"] == [0, 1, 2, 4, 8, 9, 10, 12, 15]
    assert load_v1_gratings(14).trials["direction"].max() == 336  # monkey D, as published


def test_v1_contamination_filter():
    everyone = load_v1_gratings(0)
    clean = load_v1_gratings(0, max_contamination=0.05)
    assert 0 < clean.n_units < everyone.n_units
    assert (clean.metadata["contamination"] < 0.05).all()
    assert set(clean.unit_ids) <= set(everyone.unit_ids)


def test_load_specs():
    assert load("v1_gratings").source == "v1_gratings:0"
    assert load("v1_gratings:7").metadata["session"] == 7
    mint = load("locust_al:Mint")
    assert set(mint.trials["group"]) == {"Mint_1"}
    assert set(load("locust_al:C3H_2").trials["group"]) == {"C3H_2"}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("v1_gratings:27", r"v1_gratings:27: session: expected an integer in 0\.\.26"),
        ("v1_gratings:x", r"expected an integer in 0\.\.26"),
        ("mnist", r"mnist: dataset: unknown name 'mnist'; choose one of \['v1_gratings'"),
        ("locust_al:Rose", r"locust_al: groups: unknown \['Rose'\]; choose groups"),
    ],
)
def test_load_bad_specs(spec, match):
    with pytest.raises(DataError, match=match):
        load(spec)


def test_v1_missing_file_names_path(monkeypatch, tmp_path):
    missing = tmp_path / "data_v1_binned_moving.mat"
    monkeypatch.setattr(v1_gratings, "MAT_PATH", missing)
    with pytest.raises(DataError, match=f"{missing}: file: not found"):
        load_v1_gratings(0)


def test_locust_missing_file_names_path(monkeypatch, tmp_path):
    monkeypatch.setattr(locust_al, "SPIKE_DIR", tmp_path)
    with pytest.raises(DataError, match=f"{tmp_path}/locust20010214_C3H_1_tetB_u1.txt: file"):
        load_locust_al()


def test_locust_keeps_every_spike(locust):
    n_lines = sum(len(f.read_text().split()) for f in LOCUST_FILES)
    assert len(LOCUST_FILES) == 140
    assert n_lines == 895_756
    assert sum(t.size for t in locust.spike_times) == n_lines
    for t in locust.spike_times:
        assert t.min() >= 0
        assert np.all(np.diff(t) >= 0)


def test_locust_trials(locust):
    trials = locust.trials
    per_group = trials.groupby("group").size().to_dict()
    # 25-slot groups where every slot was recorded hold 25 trials
    for g in ("C3H_1", "C3H_2", "Citral", "Mint_1", "Vanilla_1"):
        assert per_group[g] == 25
    assert per_group == {
        **per_group, "C3H_3": 30, "C3H_4": 10, "C3H_5": 27, "Octanol_1": 22,
        "Spontaneous_1": 28, "Spontaneous_2": 27, "Spontaneous_3": 30, "Spontaneous_4": 30,
    }  # fmt: skip
    assert len(trials) == 359
    assert locust.stimulus_columns == ("odour",)
    assert set(trials["odour"]) == {"C3H", "Citral", "Mint", "Octanol", "Vanilla", "none"}
    # trials are 30 s apart within a group and every spike lies inside a trial
    for _, g in trials.groupby("group"):
        slots = np.diff(g["start_time"].to_numpy()) / 30.0
        np.testing.assert_allclose(slots, np.round(slots), atol=1e-9)
    binned = bin_trials(locust, 0.01)
    assert binned.counts.shape == (359, 2877, 10)
    assert binned.counts.sum() == 895_756


def test_locust_group_spike_counts_match_files():
    rec = load_locust_al(["Octanol_1"])
    files = sorted(locust_al.SPIKE_DIR.glob("locust20010214_Octanol_1_tetB_u*.txt"))
    assert sum(t.size for t in rec.spike_times) == sum(len(f.read_text().split()) for f in files)
    assert rec.trials["trial_in_group"].tolist() == [k for k in range(25) if k not in (9, 10, 11)]
