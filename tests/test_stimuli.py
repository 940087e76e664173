"""Stimulus generators against their closed forms: temporal frequency, orientation, drift,
timing, white-noise statistics and ZCA whitening."""

from __future__ import annotations

import numpy as np
import pytest

from neurorec.core.errors import SpecError
from neurorec.spec import load_stimulus_spec, validate_spec
from neurorec.spec.stimuli import (
    DriftingGaborsSpec,
    DriftingGratingsSpec,
    NaturalMovieSpec,
    WhiteNoiseSpec,
)
from neurorec.stimuli import generate
from neurorec.stimuli.gabors import gabor
from neurorec.stimuli.gratings import grating
from neurorec.stimuli.movies import eye_trajectory, fit_zca


@pytest.mark.parametrize("waveform", ["sine", "square"])
def test_pixel_flickers_at_speed_times_spatial_frequency(waveform):
    # f · v = 1.5 cyc/deg · 2 deg/s = 3 Hz; 1 s at 100 Hz resolves 1 Hz
    t = np.arange(100) / 100.0
    frames = grating(30.0, 2.0, 1.5, t, 16, 0.1, waveform=waveform)
    spec = np.abs(np.fft.rfft(frames[:, 5, 7] - frames[:, 5, 7].mean()))
    assert spec.argmax() == 3
    if waveform == "square":  # odd harmonics at 1/3 of the fundamental's amplitude
        assert spec[9] / spec[3] == pytest.approx(1 / 3, rel=0.05)
        assert spec[6] < 1e-6 * spec[3]


@pytest.mark.parametrize("kx, ky", [(4, 3), (0, 5), (-3, 2), (6, 0)])
def test_orientation_from_2d_fft_peak(kx, ky):
    # a 1-degree frame of 64 px; the frequency vector (kx, ky) cycles per frame
    size, dpp = 64, 1 / 64
    f = np.hypot(kx, ky)
    direction = np.rad2deg(np.arctan2(ky, kx))
    frame = grating(direction, 0.0, f, np.zeros(1), size, dpp)[0]
    power = np.abs(np.fft.fft2(frame)) ** 2
    k_row, k_col = np.unravel_index(power.argmax(), power.shape)
    k_row = k_row - size if k_row > size // 2 else k_row
    k_col = k_col - size if k_col > size // 2 else k_col
    # rows grow downwards while y grows upwards: ky = −k_row
    peak_dir = np.rad2deg(np.arctan2(-k_row, k_col))
    assert np.mod(peak_dir - direction, 180.0) == pytest.approx(0.0, abs=1e-9) or \
        np.mod(peak_dir - direction, 180.0) == pytest.approx(180.0, abs=1e-9)
    assert power.max() / power.sum() == pytest.approx(0.5, abs=1e-9)  # a pure ±k pair


@pytest.mark.parametrize("direction, shift", [(0.0, (0, 1)), (90.0, (-1, 0)),
                                              (180.0, (0, -1)), (270.0, (1, 0))])
def test_grating_moves_along_its_direction(direction, shift):
    # 1 px per frame: speed = degrees_per_px · frame_rate
    dpp, rate = 0.05, 50.0
    frames = grating(direction, dpp * rate, 1.3, np.arange(2) / rate, 20, dpp)
    moved = np.roll(frames[0], shift, axis=(0, 1))
    np.testing.assert_allclose(frames[1][2:-2, 2:-2], moved[2:-2, 2:-2], atol=1e-5)


def test_gabor_envelope_centre_and_drift():
    t = np.arange(3) / 10
    f = gabor(45.0, 1.0, 2.0, (0.5, -0.3), 0.2, t, 41, 0.05, phase_rad=np.pi / 2)
    # at t = 0 and phase π/2 the carrier is cos: the peak is the envelope centre
    r, c = np.unravel_index(np.abs(f[0]).argmax(), f[0].shape)
    assert ((c - 20) * 0.05, (20 - r) * 0.05) == pytest.approx((0.5, -0.3), abs=1e-9)
    assert np.abs(f).max() <= 1.0 + 1e-6
    assert not np.allclose(f[0], f[1])


def test_schedule_timing_and_shuffling():
    spec = DriftingGratingsSpec(directions=(0, 90, 180), speeds=(1.0, 2.0), size_px=8,
                                timing={"frame_rate": 20, "duration": 0.5,
                                        "blank_before": 0.1, "blank_after": 0.2, "repeats": 2})
    movie = generate(spec)
    per_trial = 2 + 10 + 4
    assert movie.frames.shape == (6 * 2 * per_trial, 8, 8)
    tr = movie.trials
    assert len(tr) == 12 and sorted(tr.groupby("repeat").condition.apply(sorted).iloc[0]) == \
        list(range(6))
    np.testing.assert_array_equal(tr.on_frame - tr.start_frame, 2)
    np.testing.assert_array_equal(tr.off_frame - tr.on_frame, 10)
    for row in tr.itertuples():
        assert not movie.frames[row.start_frame:row.on_frame].any()
        assert not movie.frames[row.off_frame:row.stop_frame].any()
        expect = grating(row.direction, row.speed, row.spatial_frequency, np.arange(10) / 20,
                         8, spec.degrees_per_px)
        np.testing.assert_allclose(movie.frames[row.on_frame:row.off_frame], expect)
    fixed = generate(spec.model_copy(update={"timing": spec.timing.model_copy(
        update={"shuffle_seed": None})}))
    assert list(fixed.trials.condition[:6]) == list(range(6))


def test_gabor_protocol_conditions():
    spec = DriftingGaborsSpec(directions=(0, 180), positions=((0, 0), (0.5, 0.5)), size_px=16,
                              timing={"duration": 0.1, "frame_rate": 30})
    movie = generate(spec)
    assert len(movie.trials) == 4 and movie.frames.shape == (4 * 3, 16, 16)
    with pytest.raises(SpecError, match="positions"):
        validate_spec({"kind": "drifting_gabors", "directions": [0], "positions": [[9, 0]],
                       "size_px": 16, "degrees_per_px": 0.1, "timing": {"duration": 1}})


@pytest.mark.parametrize("distribution, var", [("binary", 0.25), ("gaussian", 0.25)])
def test_white_noise_statistics(distribution, var):
    spec = WhiteNoiseSpec(distribution=distribution, contrast=0.5, size_px=16,
                          timing={"frame_rate": 100, "duration": 2.0, "repeats": 2})
    m = generate(spec)
    x = m.frames.reshape(len(m.frames), -1)
    assert x.mean() == pytest.approx(0.0, abs=0.01)
    assert x.var() == pytest.approx(var, rel=0.02)
    # independent in time and space
    assert abs(np.corrcoef(x[:-1].ravel(), x[1:].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(x[:, :-1].ravel(), x[:, 1:].ravel())[0, 1]) < 0.01
    assert not np.array_equal(m.frames[:200], m.frames[200:])
    frozen = generate(spec.model_copy(update={"frozen": True}))
    np.testing.assert_array_equal(frozen.frames[:200], frozen.frames[200:])
    np.testing.assert_array_equal(generate(spec).frames, m.frames)  # seeded


def test_zca_gives_identity_covariance():
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((9, 9))
    x = rng.standard_normal((5000, 9)) @ mix + 3.0
    w = fit_zca(x, eps=0.0)
    y = w.apply(x.reshape(-1, 3, 3)).reshape(-1, 9).astype(float)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(9), atol=1e-4)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(w.matrix, w.matrix.T)
    # ZCA is the symmetric whitener: the one closest to the identity map
    np.testing.assert_allclose(w.unwhiten_matrix() @ w.matrix, np.eye(9), atol=1e-8)


def test_natural_movie_whitened_and_deterministic():
    spec = NaturalMovieSpec(images=("skimage:camera", "sklearn:china.jpg"), patch_px=6,
                            n_clips=60, downsample=4, whitening={"eps": 0.0},
                            timing={"frame_rate": 30, "duration": 0.5, "blank_before": 0.1})
    m = generate(spec)
    assert m.clips.shape == (60, 3 + 15, 6, 6)
    assert not m.clips[:, :3].any()
    on = m.clips[:, 3:].reshape(-1, 36).astype(float)
    np.testing.assert_allclose(np.cov(on, rowvar=False), np.eye(36), atol=2e-3)
    np.testing.assert_array_equal(generate(spec).clips, m.clips)
    # the raw patches are natural: neighbouring pixels strongly correlated, whitened ones not
    raw = m.raw[:, 3:].reshape(-1, 6, 6)
    assert np.corrcoef(raw[:, :, :-1].ravel(), raw[:, :, 1:].ravel())[0, 1] > 0.7


def test_eye_trajectory_stays_inside_and_drifts():
    rng = np.random.default_rng(1)
    g = eye_trajectory(500, (100, 80), 7.0, 0.5, 0.02, 10.0, rng)
    assert g[:, 0].min() >= 7 and g[:, 0].max() <= 92 and g[:, 1].max() <= 72
    steps = np.linalg.norm(np.diff(g, axis=0), axis=1)
    assert np.median(steps) < 2.0 and steps.max() > 5.0  # drift plus occasional saccades


def test_shipped_stimulus_protocols_generate():
    for name in ("drifting_gabors_polar", "white_noise_12px"):
        spec = load_stimulus_spec(f"stimuli/{name}.yaml")
        assert generate(spec).frames.ndim == 3
    spec = load_stimulus_spec("stimuli/natural_movie_12px.yaml", ["n_clips=4"])
    assert generate(spec).clips.shape[2:] == (12, 12)
