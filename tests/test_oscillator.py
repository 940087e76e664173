"""Oscillating-object movies: exact harmonic trajectory, held-out angle sets, spec checks."""

from __future__ import annotations

import numpy as np
import pytest

from neurorec.core.errors import SpecError
from neurorec.spec import load_stimulus_spec
from neurorec.spec.oscillator import OscillatingObjectSpec
from neurorec.stimuli.oscillator import (
    held_out_angles,
    make_movies,
    motion_direction,
    render,
)


def centroid(frames: np.ndarray) -> np.ndarray:
    """(..., 2) intensity-weighted (column, row) of frames (..., S, S)."""
    grid = np.arange(frames.shape[-1])
    mass = frames.sum((-2, -1))
    return np.stack([(frames.sum(-2) * grid).sum(-1) / mass,
                     (frames.sum(-1) * grid).sum(-1) / mass], -1)


def test_centre_follows_harmonic_trajectory_exactly():
    spec = OscillatingObjectSpec(n_angles=8, n_frames=40, amplitude_px=20, period_frames=16)
    mv = make_movies(spec)
    assert mv.frames.shape == (8, 40, 61, 61) and mv.frames.dtype == np.float32
    t = np.arange(40)
    for i in range(8):
        theta = np.deg2rad(mv.angle_deg[i])
        s = 20 * np.sin(2 * np.pi * t / 16 + mv.phase[i])
        expected = np.stack([30 + s * np.cos(theta), 30 - s * np.sin(theta)], 1)
        np.testing.assert_allclose(mv.centre_px[i], expected, atol=1e-12)
        # the rendered object's centroid is the trajectory (blob well inside the frame)
        np.testing.assert_allclose(centroid(mv.frames[i].astype(float)), expected, atol=2e-3)
        # velocity is the analytic derivative: compare with a central difference
        fd = (expected[2:] - expected[:-2]) / 2
        np.testing.assert_allclose(mv.velocity_px[i, 1:-1], fd, atol=0.02 * 20)
    # angle 90 moves straight up and down on screen: column constant
    up = np.flatnonzero(mv.angle_deg == 90)[0]
    np.testing.assert_allclose(mv.centre_px[up, :, 0], 30, atol=1e-12)
    assert mv.frames.max() <= 1.0 and mv.frames.min() >= 0.0


def test_random_axis_point_keeps_path_inside_and_is_seeded():
    spec = OscillatingObjectSpec(n_angles=36, n_frames=30, amplitude_px=15, axis_point="random",
                                 object={"sigma_px": 2.0})
    a, b = make_movies(spec), make_movies(spec)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.ptp(a.axis_point, axis=0).min() > 5  # not all through the centre
    assert a.centre_px.min() >= 6 - 1e-9 and a.centre_px.max() <= 60 - 6 + 1e-9
    np.testing.assert_allclose(centroid(a.frames.astype(float)), a.centre_px, atol=5e-3)


def test_held_out_angle_sets():
    angles = np.arange(72) * 5.0
    lr = held_out_angles(angles, "left_right", 0.2, 0)
    np.testing.assert_array_equal(angles[lr], [0, 5, 10, 15, 20, 160, 165, 170, 175, 180,
                                               185, 190, 195, 200, 340, 345, 350, 355])
    ud = held_out_angles(angles, "up_down", 0.2, 0)
    np.testing.assert_array_equal(angles[ud], [*range(70, 125, 5), *range(250, 295, 5)])
    rnd = held_out_angles(angles, "random", 0.2, 3)
    assert rnd.sum() == round(0.2 * 72)
    np.testing.assert_array_equal(rnd, held_out_angles(angles, "random", 0.2, 3))
    assert not np.array_equal(rnd, held_out_angles(angles, "random", 0.2, 4))
    mv = make_movies(OscillatingObjectSpec(n_angles=72, n_frames=5, split="up_down",
                                           movies_per_angle=2))
    assert mv.is_test.sum() == 2 * ud.sum()
    assert set(mv.angle_deg[mv.is_test]) == set(angles[ud])


def test_motion_direction_labels():
    v = np.array([[1.0, 0.0], [0.0, -1.0], [-1.0, 0.1], [0.2, 1.0], [1.0, -0.9]])
    np.testing.assert_array_equal(motion_direction(v), [0, 1, 2, 3, 0])


def test_render_is_a_unit_peak_gaussian():
    frame = render(np.array([10.0, 20.0]), 31, 2.0)
    assert frame[20, 10] == pytest.approx(1.0)
    assert frame[20, 12] == pytest.approx(np.exp(-4 / 8), rel=1e-6)


def test_spec_rejects_a_path_that_does_not_fit(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text("kind: oscillating_object\namplitude_px: 30\n")
    with pytest.raises(SpecError, match=r"amplitude_px: .*does not fit"):
        load_stimulus_spec(path)
    with pytest.raises(SpecError, match="split"):
        load_stimulus_spec(path, ["amplitude_px=10", "split=diagonal"])
