"""Binning spike times into trial × time × unit counts, conditions and train/test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurorec.core.errors import DataError
from neurorec.data import Recording, bin_trials, split_trials


def small_recording(**trial_columns) -> Recording:
    """Two units, four 1 s trials starting every 2 s, two directions × two contrasts."""
    trials = pd.DataFrame(
        {
            "start_time": [0.0, 2.0, 4.0, 6.0],
            "stop_time": [1.0, 3.0, 5.0, 7.0],
            "direction": [90.0, 0.0, 90.0, 0.0],
            "contrast": [50, 50, 100, 100],
            **trial_columns,
        }
    )
    spikes = [
        np.array([0.05, 0.1, 0.15, 0.95, 2.5, 4.0, 4.2, 6.99]),
        np.array([1.5, 2.0, 3.5, 6.25]),  # 1.5 s and 3.5 s lie between trials
    ]
    return Recording(
        spike_times=spikes,
        unit_ids=np.array(["a", "b"]),
        trials=trials,
        stimulus_columns=("direction",),
        source="small.nwb",
    )


def test_counts_by_hand():
    binned = bin_trials(small_recording(), 0.25, test_fraction=0.0)
    assert binned.counts.shape == (4, 4, 2)
    assert binned.counts.dtype == np.int64
    expected_a = [[3, 0, 0, 1], [0, 0, 1, 0], [2, 0, 0, 0], [0, 0, 0, 1]]
    expected_b = [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]  # 6.25 opens bin 1
    np.testing.assert_array_equal(binned.counts[:, :, 0], expected_a)
    np.testing.assert_array_equal(binned.counts[:, :, 1], expected_b)
    np.testing.assert_allclose(binned.time, [0.125, 0.375, 0.625, 0.875])
    assert binned.condition_table["direction"].tolist() == [0.0, 90.0]
    np.testing.assert_array_equal(binned.condition, [1, 0, 1, 0])
    assert not binned.is_test.any()
    assert binned.unit_ids.tolist() == ["a", "b"]


def test_window_and_conditions():
    rec = small_recording()
    binned = bin_trials(rec, 0.5, conditions=["contrast", "direction"], window=(-0.5, 1.0))
    assert binned.counts.shape == (4, 3, 2)
    np.testing.assert_allclose(binned.time, [-0.25, 0.25, 0.75])
    np.testing.assert_array_equal(binned.counts[1, :, 1], [1, 1, 0])  # 1.5 s and 2.0 s
    table = binned.condition_table
    assert table[["contrast", "direction"]].values.tolist() == [
        [50, 0.0], [50, 90.0], [100, 0.0], [100, 90.0],
    ]  # fmt: skip
    np.testing.assert_array_equal(binned.condition, [1, 0, 3, 2])


def test_n_bins_is_floor_of_shortest_trial():
    rec = small_recording()
    assert bin_trials(rec, 0.3).counts.shape[1] == 3  # 1 s / 0.3 s
    assert bin_trials(rec, 0.1).counts.shape[1] == 10  # 1 s / 0.1 s despite float rounding


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"conditions": ["orientation"]}, r"small\.nwb: conditions: column\(s\) \['orientation'\]"),
        ({"bin_size": 0.0}, r"small\.nwb: bin_size: must be a positive"),
        ({"bin_size": 2.0}, r"small\.nwb: bin_size: 2\.0 s is longer than the window"),
        ({"window": (0.5, 0.2)}, r"small\.nwb: window: expected t0 < t1"),
        ({"test_fraction": 1.0}, r"small\.nwb: test_fraction: must be in \[0, 1\)"),
    ],
)
def test_bad_binning_requests(kwargs, match):
    kwargs = {"bin_size": 0.1, **kwargs}
    with pytest.raises(DataError, match=match):
        bin_trials(small_recording(), **kwargs)


def test_split_stratified_counts_and_determinism():
    sizes = {0: 10, 1: 7, 2: 2, 3: 1, 4: 23}
    condition = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    trials = pd.DataFrame({"start_time": np.arange(condition.size, dtype=float)})
    is_test = split_trials(trials, condition, 0.2, seed=3)
    assert is_test.dtype == bool
    per_condition = {c: int(is_test[condition == c].sum()) for c in sizes}
    # round(0.2 n) half up, >= 1 when n >= 2, and never the single trial of a condition
    assert per_condition == {0: 2, 1: 1, 2: 1, 3: 0, 4: 5}
    np.testing.assert_array_equal(is_test, split_trials(trials, condition, 0.2, seed=3))
    others = [split_trials(trials, condition, 0.2, seed=s) for s in range(4, 9)]
    assert any(not np.array_equal(is_test, o) for o in others)
    for o in others:
        assert {c: int(o[condition == c].sum()) for c in sizes} == per_condition
    assert not split_trials(trials, condition, 0.0, seed=3).any()


def test_split_column_is_honoured():
    rec = small_recording(split=["train", "test", "train", "train"])
    binned = bin_trials(rec, 0.1, test_fraction=0.5, seed=1)
    np.testing.assert_array_equal(binned.is_test, [False, True, False, False])
    np.testing.assert_array_equal(
        split_trials(rec.trials, np.zeros(4, int), 0.5, 0), [False, True, False, False]
    )


def test_split_column_bad_values():
    rec = small_recording(split=["train", "valid", "train", "test"])
    with pytest.raises(DataError, match=r"small\.nwb: split: values must be one of 'train', "
                       r"'val', 'test', 'none', got \['valid'\]"):
        bin_trials(rec, 0.1)


def test_subset_keeps_conditions():
    binned = bin_trials(small_recording(), 0.1, test_fraction=0.5, seed=0)
    test = binned.subset(binned.is_test)
    assert test.counts.shape[0] == int(binned.is_test.sum()) == 2  # one of each direction
    assert sorted(test.condition.tolist()) == [0, 1]
