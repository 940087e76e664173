"""Continuous sessions: binning and restriction against pynapple and numpy, derived covariates
against closed forms, splits and blocked folds (no leak across the guard band), NWB round trip."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

nap = pytest.importorskip("pynapple")

from neurorec.core.errors import DataError  # noqa: E402
from neurorec.data import from_pynapple, load_session_nwb, write_session_nwb  # noqa: E402
from neurorec.data.session_splits import (  # noqa: E402
    blocked_folds,
    default_split,
    gap_bins,
)
from neurorec.data.sessions_io import (  # noqa: E402
    movement_direction,
    read_session_nwb,
    running_speed,
)

B = 0.01
pytestmark = [
    pytest.mark.filterwarnings("ignore:Some starts and ends are equal"),
    pytest.mark.filterwarnings("ignore:Metadata name 'split' overlaps"),
]


def _units(rng: np.random.Generator, n_units: int = 6, t_end: float = 60.0):
    return nap.TsGroup({u: nap.Ts(np.sort(rng.uniform(0, t_end, 400 + 50 * u)))
                        for u in range(n_units)})


def _circle(t_end: float = 60.0, rate_hz: float = 50.0, omega: float = 1 / 3, r: float = 0.3):
    t = np.arange(0, t_end, 1 / rate_hz)
    pos = nap.TsdFrame(t=t, d=np.c_[0.5 + r * np.cos(omega * t), 0.5 + r * np.sin(omega * t)])
    hd = nap.Tsd(t=t, d=np.angle(np.exp(1j * (omega * t + np.pi / 2))))
    return pos, hd


def test_counts_and_restriction_match_pynapple_and_numpy():
    rng = np.random.default_rng(0)
    units = _units(rng)
    epochs = nap.IntervalSet([1.0, 20.0, 40.003], [15.0, 35.5, 55.0])
    s = from_pynapple(units, epochs=epochs, split="blocked", bin_size=B)
    # pynapple directly, on the same epochs cut to whole bins
    ref = units.count(B, nap.IntervalSet([1.0, 20.0, 40.003], [15.0, 35.5, 54.993]))
    np.testing.assert_array_equal(s.counts, ref.values)
    np.testing.assert_array_equal(s.time, ref.t)
    # numpy: spikes in [e_i, e_i + B) of each epoch's bins
    for (a, n), seg in zip([(1.0, 1400), (20.0, 1550), (40.003, 1499)], range(3), strict=True):
        edges = a + np.arange(n + 1) * B
        rows = np.flatnonzero(s.segment == seg) if seg == 0 else None
        block = np.stack([np.histogram(units[u].t, edges)[0] for u in units], axis=1)
        start = {0: 0, 1: 1400, 2: 2950}[seg]
        np.testing.assert_array_equal(s.counts[start:start + n], block)
        if rows is not None:
            assert rows[0] == 0
    # epochs do not abut: segments restart between them and never span two
    starts = [0, 1400, 2950]
    for i in starts[1:]:
        assert s.segment[i] != s.segment[i - 1]
    assert s.n_bins == 1400 + 1550 + 1499 and s.counts.dtype == np.int64


def test_covariates_averaged_or_interpolated_onto_bins():
    rng = np.random.default_rng(1)
    units = _units(rng, 2, 10.0)
    t_fine = np.arange(0, 10, 0.001) + 0.0005            # 1 kHz, finer than the bins
    fine = nap.Tsd(t=t_fine, d=rng.normal(size=t_fine.size))
    t_coarse = np.arange(0, 10.001, 0.02)                 # 50 Hz, coarser
    coarse = nap.TsdFrame(t=t_coarse, d=np.c_[np.sin(t_coarse), np.cos(3 * t_coarse)])
    angle_t = np.arange(0, 10.001, 0.02)
    angle = nap.Tsd(t=angle_t, d=np.angle(np.exp(1j * (np.pi - 0.5 + 0.1 * angle_t))))
    s = from_pynapple(units, {"fine": fine, "coarse": coarse, "head_direction": angle},
                      epochs=nap.IntervalSet(0, 10), split="blocked", bin_size=B)
    # the mean of the 10 samples in each bin (numpy)
    np.testing.assert_allclose(s.covariates["fine"][:, 0],
                               fine.values.reshape(-1, 10).mean(1), atol=1e-12)
    # linear interpolation at the bin centres (numpy)
    for j in range(2):
        np.testing.assert_allclose(s.covariates["coarse"][:, j],
                                   np.interp(s.time, t_coarse, coarse.values[:, j]), atol=1e-12)
    # an angle crossing ±π is interpolated along the circle, not through 0
    want = np.angle(np.exp(1j * (np.pi - 0.5 + 0.1 * s.time)))
    err = np.angle(np.exp(1j * (s.covariates["head_direction"][:, 0] - want)))
    assert np.abs(err).max() < 1e-3
    assert s.metadata["circular"] == ["head_direction"]


def test_derived_speed_and_direction_closed_form():
    omega, r = 1 / 3, 0.3
    pos, _ = _circle(omega=omega, r=r)
    speed = running_speed(pos, smooth_s=0.1)
    inner = (speed.t > 1) & (speed.t < 59)
    # a Gaussian of s.d. σ shrinks a circle of angular speed ω by exp(-ω²σ²/2)
    want = omega * r * np.exp(-(omega * 0.1) ** 2 / 2)
    np.testing.assert_allclose(speed.values[inner], want, rtol=1e-4)
    direction = movement_direction(pos, smooth_s=0.1)
    err = np.angle(np.exp(1j * (direction.values - (omega * direction.t + np.pi / 2))))
    assert np.abs(err[inner]).max() < 1e-4


def test_epoch_split_column_with_nlb_values_and_bad_values():
    rng = np.random.default_rng(2)
    units = _units(rng, 3, 40.0)
    ep = nap.IntervalSet([0, 10, 20, 30], [10, 20, 30, 40],
                         metadata={"split": ["train", "val", "test", "none"]})
    s = from_pynapple(units, epochs=ep, bin_size=B)
    assert [int(s.mask(v).sum()) for v in ("train", "val", "test", "none")] == [1000] * 4
    assert s.metadata["split_from"] == "epochs.split"
    # history never runs from one labelled block into the next
    for v in ("train", "val", "test"):
        assert np.unique(s.segment[s.mask(v)]).size == 1
    # a restart on leaving train, val and test (the none block warms up nothing after it)
    assert np.unique(s.segment).size == 4
    bad = nap.IntervalSet([0, 10], [10, 20], metadata={"split": ["train", "holdout"]})
    with pytest.raises(DataError, match=r"epochs\.split: values must be one of .*holdout"):
        from_pynapple(units, epochs=bad, bin_size=B, source="x.nwb")


@pytest.mark.parametrize("gap_s", [0.05, 0.1, 0.33])
def test_blocked_folds_never_leak_across_the_gap(gap_s):
    rng = np.random.default_rng(3)
    units = _units(rng, 3, 60.0)
    s = from_pynapple(units, epochs=nap.IntervalSet([0, 30.5], [30, 60]), bin_size=B,
                      split="blocked", gap_s=gap_s)
    g = gap_bins(gap_s, B)
    folds = blocked_folds(s, 4, gap_s)
    eligible = s.mask("train")
    covered = np.zeros(s.n_bins, bool)
    for f in folds:
        train, held = f.mask("train"), f.mask("test")
        assert not (held & ~eligible).any() and not (train & ~eligible).any()
        covered |= held
        # every train bin is more than g bins (in time) from every held-out bin
        d = np.abs(f.time[train][:, None] - f.time[held][None, :]).min()
        assert d > (g + 0.5) * B
        # and no segment holds both: a history or latent never crosses from one to the other
        for seg in np.unique(f.segment):
            labels = set(f.split[f.segment == seg]) - {"none"}
            assert len(labels) <= 1
        # the bins given up for the guard bands are exactly those within g bins of held-out
        near = np.abs(s.time[eligible & ~held][:, None] - s.time[held][None, :]).min(1) \
            < (g + 0.5) * B
        assert int(near.sum()) == int((eligible & ~held & ~train).sum())
    np.testing.assert_array_equal(covered, eligible)  # the folds tile the training bins


def test_default_split_fraction_blocks_and_guard():
    rng = np.random.default_rng(4)
    s = from_pynapple(_units(rng, 2, 100.0), epochs=nap.IntervalSet(0, 100), bin_size=B,
                      split="blocked", gap_s=0.1)
    assert s.mask("test").sum() == 2000                     # 20 % of 10,000 bins
    # a guard before each of the 5 test blocks and after each but the last (session end)
    assert s.mask("none").sum() == 9 * gap_bins(0.1, B)
    runs = np.flatnonzero(np.diff(s.mask("test").astype(int)) == 1).size  # none at bin 0
    assert runs == 5
    again = default_split(s, 0.3, 3, 0.2)
    assert again.mask("test").sum() == 3000 and again.mask("none").sum() == 5 * 20


def test_nwb_round_trip_and_pynapple_reads_the_same(tmp_path):
    rng = np.random.default_rng(5)
    units = _units(rng, 5, 60.0)
    pos, hd = _circle()
    s = from_pynapple(units, {"position": pos, "head_direction": hd},
                      epochs=nap.IntervalSet(0, 59.98), bin_size=B, split="blocked", gap_s=0.1)
    path = write_session_nwb(s, tmp_path / "s.nwb", seed=9)
    back = load_session_nwb(path)
    np.testing.assert_array_equal(back.counts, s.counts)
    np.testing.assert_allclose(back.time, s.time, atol=1e-9)
    np.testing.assert_array_equal(back.split, s.split)
    np.testing.assert_array_equal(back.segment, s.segment)
    np.testing.assert_allclose(back.covariates["position"], s.covariates["position"], atol=1e-12)
    err = np.angle(np.exp(1j * (back.covariates["head_direction"]
                                - s.covariates["head_direction"])))
    assert np.abs(err).max() < 1e-12
    assert {"speed", "movement_direction"} <= set(back.covariates)
    assert back.metadata["paths"]["head_direction"].endswith("CompassDirection/head_direction")
    assert back.covariate("processing/behavior/Position/position") is back.covariates["position"]
    with pytest.raises(KeyError, match="covariate 'pupil' not in the session"):
        back.covariate("pupil")
    # pynapple on the file: same counts on the same bins, split column via get_info
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = nap.load_file(str(path))
        ep = f["epochs"]
        labels = np.asarray(ep.get_info("split")).astype(str)
        counted = f["units"].count(B, nap.IntervalSet(0, 59.98))
    np.testing.assert_array_equal(counted.values, s.counts)
    assert set(labels) == {"train", "test", "none"}
    assert "trials" not in f.key_to_full_path


def test_reader_errors_name_file_and_field(tmp_path):
    with pytest.raises(DataError, match=r"nope\.nwb: file: not found"):
        read_session_nwb(tmp_path / "nope.nwb")
    junk = tmp_path / "junk.nwb"
    junk.write_text("not hdf5")
    with pytest.raises(DataError, match=r"junk\.nwb: file: not a readable NWB file"):
        read_session_nwb(junk)
    rng = np.random.default_rng(6)
    pos, hd = _circle(10.0)
    s = from_pynapple(_units(rng, 2, 10.0), {"position": pos, "head_direction": hd},
                      epochs=nap.IntervalSet(0, 9.98), bin_size=B, split="blocked")
    path = write_session_nwb(s, tmp_path / "ok.nwb")
    with pytest.raises(DataError, match=r"ok\.nwb: data\.series: no series 'pupil'") as err:
        read_session_nwb(path, series=["pupil"])
    assert len(err.value.lines) == 1
    raw = read_session_nwb(path, series=["processing/behavior/Position/position"])
    assert set(raw.covariates) == {"position", "speed", "movement_direction"}


# --------------------------------------------------------------------------- trials mode
def _trials_recording(**extra):
    import pandas as pd

    from neurorec.data import Recording

    trials = pd.DataFrame({"start_time": [0.0, 2.0, 4.0], "stop_time": [1.0, 2.6, 4.8],
                           "direction": [0.0, 90.0, 0.0], **extra})
    # no spike within float rounding of a bin edge
    spikes = [np.array([0.05, 0.45, 0.95, 2.15, 2.55, 2.7, 4.05, 4.65, 4.75]),
              np.array([0.35, 1.5, 2.35, 4.45])]
    return Recording(spike_times=spikes, unit_ids=np.array(["a", "b"]), trials=trials,
                     stimulus_columns=("direction",), source="hand.nwb")


def test_unequal_trials_masked_not_cropped_by_hand():
    from neurorec.data import bin_trials

    binned = bin_trials(_trials_recording(), 0.2, test_fraction=0.0, unequal="mask")
    # longest trial 1 s: 5 bins; trial 2 lasts 0.6 s (3 bins), trial 3 0.8 s (4 bins)
    np.testing.assert_array_equal(binned.mask, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0],
                                                [1, 1, 1, 1, 0]])
    want_a = [[1, 0, 1, 0, 1], [1, 0, 1, 0, 0], [1, 0, 0, 2, 0]]  # 2.7 s is masked
    want_b = [[0, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]]
    np.testing.assert_array_equal(binned.counts[:, :, 0], want_a)
    np.testing.assert_array_equal(binned.counts[:, :, 1], want_b)
    assert binned.subset(np.array([False, True, True])).mask.shape == (2, 5)


def test_cropping_warns_when_bins_are_lost():
    from neurorec.data import bin_trials
    from neurorec.data.binning import CroppingWarning

    with pytest.warns(CroppingWarning, match=r"hand\.nwb: trials: durations .* 0\.6–1 s; "
                                             r"every trial is cropped .* up to 2 bins"):
        binned = bin_trials(_trials_recording(), 0.2, test_fraction=0.0)
    assert binned.counts.shape == (3, 3, 2) and binned.mask is None


def test_event_aligned_window_by_hand():
    from neurorec.data import bin_trials

    rec = _trials_recording(onset=[0.4, 2.2, 4.6])
    binned = bin_trials(rec, 0.1, test_fraction=0.0, window=(-0.2, 0.2), align="onset")
    np.testing.assert_allclose(binned.time, [-0.15, -0.05, 0.05, 0.15])
    # unit a: 0.45 s in [0.4, 0.5) of trial 1 (bin 2); 2.15 s in [2.1, 2.2) of trial 2
    # (bin 1); 4.65 s in [4.6, 4.7) and 4.75 s in [4.7, 4.8) of trial 3 (bins 2, 3)
    want = np.zeros((3, 4), int)
    want[0, 2] = want[1, 1] = want[2, 2] = want[2, 3] = 1
    np.testing.assert_array_equal(binned.counts[:, :, 0], want)
    # unit b: 0.35 s (bin 1), 2.35 s (bin 3), 4.45 s (bin 0)
    np.testing.assert_array_equal(binned.counts[:, :, 1], [[0, 1, 0, 0], [0, 0, 0, 1],
                                                           [1, 0, 0, 0]])
    with pytest.raises(DataError, match=r"hand\.nwb: data\.align: column 'cue' not in"):
        bin_trials(rec, 0.1, align="cue")


def test_nlb_split_values_in_trials():
    from neurorec.data import bin_trials, validate_recording

    rec = _trials_recording(split=["train", "none", "val"])
    validate_recording(rec)  # val and none are accepted
    binned = bin_trials(rec, 0.2, unequal="mask")
    assert binned.counts.shape[0] == 2  # the none trial is dropped
    np.testing.assert_array_equal(binned.is_test, [False, True])  # val is held out


def test_bundled_v1_trials_binning_unchanged():
    """The catch-up leaves trials-mode data bit-identical: no warning, no mask, and counts
    equal to numpy histograms on start-aligned edges (as before data.align / masks)."""
    from neurorec.data import bin_trials
    from neurorec.datasets.registry import load

    rec = load("v1_gratings:0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        binned = bin_trials(rec, 0.01, test_fraction=0.2, seed=0)
    assert binned.mask is None and binned.counts.shape[1] == 90
    start = rec.trials["start_time"].to_numpy(float)
    edges = start[:, None] + np.arange(91) * 0.01
    for u in (0, rec.n_units - 1):
        want = np.stack([np.histogram(rec.spike_times[u], e)[0] for e in edges])
        np.testing.assert_array_equal(binned.counts[:, :, u], want)


def test_select_renumbers_segments_and_guard_gap_from_spec():
    from neurorec.data.session_splits import guard_gap_s
    from neurorec.families.glm.spec import GLMSpec

    rng = np.random.default_rng(7)
    s = from_pynapple(_units(rng, 2, 10.0), epochs=nap.IntervalSet([0, 5.5], [5, 10]),
                      bin_size=B, split="blocked", test_blocks=2, gap_s=0.05)
    kept = s.select(s.mask("train"))
    # a new segment wherever a dropped bin or an epoch boundary separates kept bins
    jumps = np.abs(np.diff(kept.time) - B) > 1e-9
    np.testing.assert_array_equal(np.diff(kept.segment) != 0, jumps)
    bounds = kept.segment_bounds()
    assert bounds[0] == 0 and bounds[-1] == kept.n_bins
    assert np.all(np.diff(kept.time[bounds[1]:bounds[2]]) < B + 1e-9)
    spec = GLMSpec.model_validate({"history": {"duration": 0.25},
                                   "coupling": {"enabled": True, "duration": 0.4}})
    assert guard_gap_s(spec) == 0.4
    lagged = GLMSpec.model_validate({
        "data": {"mode": "session"}, "history": {"duration": 0.25},
        "covariates": [{"name": "speed", "basis": "bspline", "duration": 5.0},
                       {"name": "speed_lags", "series": "speed",
                        "basis": "raised_cosine_lags", "duration": 0.8}]})
    assert guard_gap_s(lagged) == 0.8  # a spatial basis' (unused) duration does not count
    assert guard_gap_s(spec.model_copy(update={"data": spec.data.model_copy(
        update={"gap": 1.5})})) == 1.5
    assert gap_bins(0.4, B) == 40 and gap_bins(None, B) == 1


def test_bins_without_covariate_data_are_split_none():
    rng = np.random.default_rng(8)
    t = np.arange(0, 5.0, 0.02)
    half = nap.Tsd(t=t, d=np.sin(t), time_support=nap.IntervalSet(0, 4.98))
    s = from_pynapple(_units(rng, 2, 10.0), {"x": half}, epochs=nap.IntervalSet(0, 10),
                      bin_size=B, split="blocked", test_blocks=2)
    observed = s.time <= 4.98
    assert s.metadata["n_bins_unobserved"] == int((~observed).sum()) == 502
    assert np.isnan(s.covariates["x"][~observed]).all()
    assert (s.split[~observed] == "none").all()
    np.testing.assert_allclose(s.covariates["x"][observed, 0], np.sin(s.time[observed]),
                               atol=1e-4)


def test_without_epochs_the_session_is_where_units_and_covariates_overlap():
    units = nap.TsGroup({0: nap.Ts(np.array([1.0, 2.0, 30.0])), 1: nap.Ts(np.array([3.0, 50.0]))})
    pos, _ = _circle(40.0)                       # samples 0 .. 39.98 s
    s = from_pynapple(units, {"position": pos}, bin_size=B, split="blocked")
    # units' time support: first to last spike, [1, 50]; position's: [0, 39.98]
    assert s.time[0] == pytest.approx(1.0 + B / 2) and s.n_bins == 3898
    assert s.counts[:, 0].sum() == 3 and s.counts[:, 1].sum() == 1
