"""The bundled open-field session: SIMULATED cells on real ratinabox trajectories.

Its ground truth is checked against an independent numpy recomputation of the conditional
intensity, its tuning against pynapple's tuning curves of the simulated spikes, and its gain
against the held-out bits/spike it is meant to add."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("ratinabox")
nap = pytest.importorskip("pynapple")

from neurorec.core.errors import DataError  # noqa: E402
from neurorec.datasets import open_field  # noqa: E402
from neurorec.datasets.open_field import (  # noqa: E402
    load_trajectory,
    simulate_open_field,
    tuning_rates,
)
from neurorec.datasets.registry import load, load_session  # noqa: E402


@pytest.fixture(scope="module")
def small():
    return simulate_open_field(n_units=20, duration_s=60.0, seed=3)


@pytest.fixture(scope="module")
def medium():
    return simulate_open_field(n_units=40, duration_s=300.0, seed=11)


def _bits(y: np.ndarray, lam: np.ndarray, base: np.ndarray) -> float:
    ll = (y * np.log(lam) - lam).sum() - (y * np.log(base) - base).sum()
    return float(ll / y.sum() / np.log(2))


def test_real_trajectories_ship_in_ratinabox():
    t, pos = load_trajectory("sargolini")
    assert t.shape == (29800,) and pos.shape == (29800, 2)
    assert 599 < t[-1] < 600 and 0.97 < pos.max() < 1.0
    t2, pos2 = load_trajectory("tanni")
    assert 7300 < t2[-1] < 7330 and pos2.max(0)[0] > 3.4


def test_seeded_and_labelled_simulated(small):
    again = simulate_open_field(n_units=20, duration_s=60.0, seed=3)
    np.testing.assert_array_equal(small.counts, again.counts)
    np.testing.assert_array_equal(small.truth["rates"], again.truth["rates"])
    other = simulate_open_field(n_units=20, duration_s=60.0, seed=4)
    assert not np.array_equal(small.counts, other.counts)
    assert small.metadata["simulated"] is True
    assert "SIMULATED" in small.metadata["description"]
    cite = small.metadata["citation"]
    assert "Science 312:758" in cite and "Tanni" in cite and "eLife" in cite
    assert small.counts.shape == (6000, 20) and small.bin_size == 0.01
    assert set(small.covariates) == {"position", "head_direction", "speed",
                                     "movement_direction"}


def test_truth_is_the_conditional_intensity(small):
    """Recompute λ from the tuning, the counts, the history filter and the gain (numpy)."""
    cov, tr = small.covariates, small.truth
    hist = tr["history_filter"]                                   # (U, L)
    y = small.counts.astype(float)
    drive_h = np.zeros_like(y)
    for k in range(1, hist.shape[1] + 1):
        drive_h[k:] += y[:-k] * hist[:, k - 1]
    # dividing out history and gain must leave a function of the covariates alone, equal to
    # the true tuning curves stored on their grids
    tuning = tr["rates"] / (np.exp(drive_h) * tr["gain"][:, None]) / small.bin_size  # Hz
    # the no-gain truth is the same intensity with the gain at its session mean
    np.testing.assert_allclose(tr["rates_no_gain"],
                               tr["rates"] / tr["gain"][:, None] * tr["gain_constant"],
                               rtol=1e-12)
    np.testing.assert_allclose(tr["gain_constant"], tr["gain"].mean(), rtol=1e-12)
    # place cells: the recovered tuning equals the truth's place field at the position
    kinds = tr["cell_type"]
    gx, gy = tr["grid_x"], tr["grid_y"]
    for u in np.flatnonzero(kinds == "place")[:3]:
        from scipy.interpolate import RegularGridInterpolator

        field = RegularGridInterpolator((gx, gy), tr["tuning_position"][u])
        inside = (cov["position"][:, 0] <= gx[-1]) & (cov["position"][:, 1] <= gy[-1])
        got = tuning[inside, u]
        want = field(cov["position"][inside])
        assert np.corrcoef(got, want)[0, 1] > 0.999
    for u in np.flatnonzero(kinds == "head_direction")[:3]:
        grid = tr["grid_head_direction"]
        curve = np.interp(cov["head_direction"][:, 0], np.r_[grid, np.pi],
                          np.r_[tr["tuning_head_direction"][u], tr["tuning_head_direction"][u, 0]])
        assert np.corrcoef(tuning[:, u], curve)[0, 1] > 0.999
    for u in np.flatnonzero(kinds == "speed")[:3]:
        spd = np.minimum(cov["speed"][:, 0], 0.5)
        curve = np.interp(spd, tr["grid_speed"], tr["tuning_speed"][u])
        assert np.corrcoef(tuning[:, u], curve)[0, 1] > 0.999


def test_counts_are_poisson_around_the_truth(medium):
    lam, y = medium.truth["rates"], medium.counts
    # total count within 4 s.d. of its conditional expectation (a martingale sum)
    assert abs(y.sum() - lam.sum()) < 4 * np.sqrt(lam.sum())
    # refractoriness: two spikes in consecutive bins are rarer than under the tuning alone
    consecutive = (y[1:] > 0) & (y[:-1] > 0)
    assert consecutive.mean() < 0.5 * ((y[1:] > 0).mean() * (y[:-1] > 0).mean())


def test_rates_are_realistic(medium):
    hz = medium.counts.mean(0) / medium.bin_size
    kinds = medium.truth["cell_type"]
    assert 0.5 < hz[kinds == "place"].mean() < 3.0
    assert 1.0 < hz.mean() < 5.0
    peaks = np.nanmax(medium.truth["tuning_position"][kinds == "place"].reshape(
        (kinds == "place").sum(), -1), axis=1)
    assert peaks.min() >= 5.0 and peaks.max() <= 21.0


def test_the_shared_gain_matters_on_held_out_bins(medium):
    te, tr = medium.mask("test"), medium.mask("train")
    y = medium.counts[te]
    base = np.broadcast_to(medium.counts[tr].mean(0, keepdims=True), y.shape)
    full = _bits(y, medium.truth["rates"][te], base)
    no_gain = _bits(y, medium.truth["rates_no_gain"][te], base)
    assert full - no_gain >= 0.05, (full, no_gain)


def test_tuning_recovered_by_pynapple_matches_truth(medium):
    """pynapple's tuning curves of the simulated spikes against the true tuning (the gain
    averages out; refractoriness lowers the peaks a little, so compare shapes)."""
    kinds = medium.truth["cell_type"]
    t = medium.time
    ep = nap.IntervalSet(0, t[-1] + medium.bin_size / 2)
    group = nap.TsGroup({u: nap.Ts(np.repeat(t, medium.counts[:, u]))
                         for u in range(medium.n_units)}, time_support=ep)
    hd = nap.Tsd(t=t, d=np.mod(medium.covariates["head_direction"][:, 0], 2 * np.pi),
                 time_support=ep)
    curves = np.asarray(nap.compute_tuning_curves(group, hd, bins=36, range=(0, 2 * np.pi)))
    centres = (np.arange(36) + 0.5) * 2 * np.pi / 36
    grid = np.mod(medium.truth["grid_head_direction"], 2 * np.pi)
    order = np.argsort(grid)
    r_hd = []
    for u in np.flatnonzero(kinds == "head_direction"):
        truth = np.interp(centres, grid[order], medium.truth["tuning_head_direction"][u][order],
                          period=2 * np.pi)
        r_hd.append(np.corrcoef(curves[u], truth)[0, 1])
    assert min(r_hd) > 0.8, r_hd
    box = np.array(medium.metadata["box_m"])
    pos = nap.TsdFrame(t=t, d=medium.covariates["position"], time_support=ep)
    maps = np.asarray(nap.compute_tuning_curves(group, pos, bins=10,
                                                range=[(0, box[0]), (0, box[1])]))
    r_place = []
    for u in np.flatnonzero(kinds == "place"):
        coarse = medium.truth["tuning_position"][u].reshape(10, 5, 10, 5).mean(axis=(1, 3))
        ok = np.isfinite(maps[u])
        r_place.append(np.corrcoef(maps[u][ok], coarse[ok])[0, 1])
    # 300 s, 100-600 spikes per place cell: measured median 0.88, lowest 0.66
    assert np.median(r_place) > 0.8 and min(r_place) > 0.5, r_place


def test_registry_and_errors(monkeypatch):
    s = load_session("open_field", bin_size=0.02, seed=1)
    assert s.bin_size == 0.02 and s.n_units == 120 and s.n_bins == 30000
    with pytest.raises(DataError, match=r"data.mode: 'open_field' is a continuous session"):
        load("open_field")
    with pytest.raises(DataError, match=r"open_field:foo: session: expected one of"):
        load_session("open_field:foo")
    with pytest.raises(DataError, match=r"v1_gratings: data.mode: .* is trials data"):
        load_session("v1_gratings")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="open_field: trajectory: the ratinabox package is "
                                        "not installed"):
        open_field.trajectory_path("sargolini")


def test_long_sessions_loop_the_trajectory_without_jumps():
    s = simulate_open_field(n_units=5, duration_s=700.0, seed=0)
    step = np.abs(np.diff(s.covariates["position"], axis=0)).max()
    assert s.metadata["looped"] and step < 0.05  # < 5 m/s at 10 ms: no teleport
    assert tuning_rates  # the public tuning function is importable
