"""Tuning indices on hand-made tuning curves with known answers; connectomics predictions on
constructed networks with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from neurorec.analysis.connectomics import (
    angle_difference,
    coorientation,
    projection_along_direction,
    rf_centres,
    strongest_targets,
    weight_vs_direction,
    weight_vs_orientation,
)
from neurorec.analysis.tuning import (
    direction_index,
    grating_tuning,
    v1_direction_responses,
    vector_selectivity,
)
from neurorec.core.errors import DataError

DIRS = np.arange(16) * 22.5


def test_direction_index_on_hand_made_curves():
    r = np.zeros((4, 16))
    r[0, 3], r[0, 11] = 10.0, 5.0        # pref 67.5, opposite 247.5 half as strong -> 0.5
    r[1, 0], r[1, 8] = 4.0, 4.0 - 1e-9   # bidirectional: ~0 (argmax picks the first)
    r[2, 13] = 2.0                        # only one direction: 1
    r[3] = 0.0                            # silent: NaN
    r[0, 5] = 3.0                         # a side lobe does not matter
    di, pref = direction_index(r, DIRS)
    np.testing.assert_allclose(di[:3], [0.5, 2.5e-10, 1.0], atol=1e-12)
    assert np.isnan(di[3])
    np.testing.assert_allclose(pref[:3], [67.5, 0.0, 292.5])
    # rounded directions (monkey D's file) still find their opposites
    rounded = np.array([0, 22, 45, 67, 90, 112, 135, 158, 180, 202, 225, 247, 270, 292, 314,
                        336])
    assert direction_index(r[:1], rounded)[0][0] == pytest.approx(0.5)
    with pytest.raises(DataError, match="non-negative"):
        direction_index(-r, DIRS)
    with pytest.raises(DataError, match="no opposite"):
        direction_index(r[:, :3], DIRS[:3])


@pytest.mark.parametrize("a, theta0", [(0.4, 30.0), (0.9, 200.0)])
def test_vector_selectivity_closed_forms(a, theta0):
    th = np.deg2rad(DIRS - theta0)
    # direction tuning 1 + a cos(θ − θ0): |Σ r e^{iθ}| / Σ r = a / 2
    dsi, pref = vector_selectivity((1 + a * np.cos(th))[None], DIRS, 1)
    assert dsi[0] == pytest.approx(a / 2) and pref[0] == pytest.approx(theta0)
    # orientation tuning 1 + a cos 2(θ − θ0): OSI a/2, orientation θ0 mod 180, DSI 0
    r2 = (1 + a * np.cos(2 * th))[None]
    osi, ori = vector_selectivity(r2, DIRS, 2)
    assert osi[0] == pytest.approx(a / 2) and ori[0] == pytest.approx(theta0 % 180)
    assert vector_selectivity(r2, DIRS, 1)[0][0] == pytest.approx(0.0, abs=1e-12)
    di, _ = direction_index(r2, DIRS)
    assert di[0] == pytest.approx(0.0, abs=1e-12)  # an orientation-only unit has DI 0


def test_grating_tuning_picks_preferred_speed_and_frequency():
    speeds, sfs = np.array([1.0, 2.0, 4.0]), np.array([1.0, 2.0])
    r = np.zeros((2, 16, 3, 2))
    r[0, :, 1, 0] = 1 + 0.8 * np.cos(np.deg2rad(DIRS - 90))  # prefers 90 deg at 2 deg/s
    r[0, 4, 0, 0] = 0.7  # slower speed at 90 deg
    r[1, :, 2, 1] = 1 + 0.5 * np.cos(np.deg2rad(2 * (DIRS - 45)))
    t = grating_tuning(r, DIRS, speeds, sfs)
    assert t.preferred_speed.tolist() == [2.0, 4.0]
    assert t.preferred_direction[0] == 90.0
    assert t.di[0] == pytest.approx(1 - 0.2 / 1.8)
    np.testing.assert_allclose(t.speed_curve[0], [0.7, 1.8, 0.0])
    assert t.dsi[0] == pytest.approx(0.4) and t.osi[1] == pytest.approx(0.25)
    assert t.preferred_orientation[1] == pytest.approx(45.0)


def test_v1_direction_responses_match_raw_counts():
    from neurorec.datasets import load_v1_gratings
    from neurorec.datasets.v1_gratings import session_spikes

    resp, dirs = v1_direction_responses(0)
    rec = load_v1_gratings(0, max_contamination=0.05)
    np.testing.assert_allclose(dirs, DIRS)
    raw = session_spikes(0)  # units × 16 × 90 bins (centres −195..695 ms) × repetitions
    keep = [int(u.split("_u")[1]) for u in rec.unit_ids]
    expect = raw[keep][:, :, 20:70].sum(axis=2).mean(axis=-1)  # bins centred 5..495 ms
    np.testing.assert_allclose(resp, expect)
    di, _ = direction_index(resp, dirs)
    assert np.all((di >= 0) & (di <= 1))


def test_connectomics_on_constructed_networks():
    rng = np.random.default_rng(0)
    n = 40
    ori = rng.uniform(0, 180, n)
    d = angle_difference(ori[:, None], ori[None, :], 180.0)
    R = np.exp(-d / 15.0) + 0.05 * rng.standard_normal((n, n))  # co-oriented units connect
    np.fill_diagonal(R, 0.0)
    tuned = np.ones(n, bool)
    pred = coorientation(R, ori, tuned, k_top=3, n_perm=300, n_boot=300)
    assert pred.effect > 25 and pred.p_value < 0.01 and pred.ci_low > 0
    w, _centres, means = weight_vs_orientation(R, ori, tuned, n_perm=200, n_boot=200)
    assert w.effect > 0.5 and w.p_value < 0.01 and means[0] > means[-1]
    null = coorientation(rng.standard_normal((n, n)), ori, tuned, n_perm=300, n_boot=300)
    assert null.p_value > 0.01

    # units on a grid, each projecting to the unit one step along its preferred direction
    xy = np.array([(x, y) for x in range(6) for y in range(6)], float)
    pref = rng.choice([0.0, 90.0, 180.0, 270.0], len(xy))
    step = np.stack([np.cos(np.deg2rad(pref)), np.sin(np.deg2rad(pref))], 1)
    R2 = np.zeros((len(xy), len(xy)))
    for k in range(len(xy)):
        hit = np.flatnonzero(np.all(np.isclose(xy, xy[k] + step[k]), axis=1))
        if len(hit):
            R2[hit[0], k] = 1.0
    proj = projection_along_direction(R2, pref, xy, np.ones(len(xy), bool), k_top=1,
                                      n_perm=300, n_boot=300)
    assert proj.effect == pytest.approx(1.0) and proj.p_value < 0.01
    wd = weight_vs_direction(R2 + 0.01 * rng.standard_normal(R2.shape), pref,
                             np.ones(len(xy), bool), n_perm=100, n_boot=100)
    assert np.isfinite(wd.effect) and 0 <= wd.p_value <= 1


def test_rf_centres_and_strongest_targets():
    W = np.zeros((9, 2))
    W[0, 0] = 1.0           # top-left pixel of a 3×3 patch
    W[[5, 7], 1] = 1.0       # right-middle and bottom-middle
    c = rf_centres(W, 3, 0.5)
    np.testing.assert_allclose(c, [[-0.5, 0.5], [0.25, -0.25]])
    R = np.array([[0, 2.0, -1], [0.5, 0, 3], [1.0, -2, 0]])
    np.testing.assert_array_equal(strongest_targets(R, 2), [[2, 1], [0, -1], [1, -1]])
