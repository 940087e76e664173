"""Lyapunov spectra by QR against systems with known exponents, and DMD frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from neurorec.analysis.dmd import dmd
from neurorec.analysis.lyapunov import lyapunov_spectrum


def test_linear_map_equals_log_abs_eigenvalues():
    # non-normal, real and complex eigenvalues: exponents are log|eigenvalue| (closed form)
    rng = np.random.default_rng(1)
    S = rng.standard_normal((4, 4))
    rot = 0.8 * np.array([[np.cos(0.7), -np.sin(0.7)], [np.sin(0.7), np.cos(0.7)]])
    D = np.zeros((4, 4))
    D[:2, :2] = rot
    D[2, 2], D[3, 3] = 1.3, -0.2
    A = S @ D @ np.linalg.inv(S)
    # the state does not matter for a linear map (constant Jacobian): keep it fixed, finite
    res = lyapunov_spectrum(lambda x: x, lambda x: A, np.ones(4), 3000)
    expected = np.sort(np.log(np.abs(np.linalg.eigvals(A))))[::-1]
    np.testing.assert_allclose(res.exponents, expected, atol=2e-3)
    # sum of exponents = mean log|det J| = log|det A|
    assert res.exponents.sum() == pytest.approx(np.log(abs(np.linalg.det(A))), abs=1e-9)
    assert res.mean_log_det == pytest.approx(res.exponents.sum(), abs=1e-9)


def test_henon_map():
    a, b = 1.4, 0.3
    res = lyapunov_spectrum(lambda x: np.array([1 - a * x[0] ** 2 + x[1], b * x[0]]),
                            lambda x: np.array([[-2 * a * x[0], 1.0], [b, 0.0]]),
                            np.array([0.1, 0.1]), 10000, n_transient=200)
    # literature: 0.4192, -1.6232 (Sprott, Chaos and Time-Series Analysis, table A.1)
    assert res.exponents[0] == pytest.approx(0.4192, abs=0.01)
    assert res.exponents[1] == pytest.approx(-1.6232, abs=0.01)
    assert res.exponents.sum() == pytest.approx(np.log(b), abs=1e-9)  # det J = -b
    assert res.kaplan_yorke_dimension() == pytest.approx(1 + 0.4192 / 1.6232, abs=0.01)


def test_logistic_map_ln2():
    res = lyapunov_spectrum(lambda x: 4 * x * (1 - x), lambda x: np.array([[4 - 8 * x[0]]]),
                            np.array([0.3]), 10000, n_transient=100)
    assert res.exponents[0] == pytest.approx(np.log(2), abs=0.01)


def test_lorenz_rk4_step_per_unit_time():
    s, r, beta, dt = 10.0, 28.0, 8.0 / 3.0, 0.01

    def f(x):
        return np.array([s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - beta * x[2]])

    def Df(x):
        return np.array([[-s, s, 0], [r - x[2], -1, -x[0]], [x[1], x[0], -beta]])

    def step(x):
        k1 = f(x)
        k2 = f(x + dt / 2 * k1)
        k3 = f(x + dt / 2 * k2)
        return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + f(x + dt * k3))

    def jac(x):  # RK4 on the variational equation = exact Jacobian of the RK4 step
        k1 = f(x)
        K1 = Df(x)
        x2 = x + dt / 2 * k1
        K2 = Df(x2) @ (np.eye(3) + dt / 2 * K1)
        x3 = x + dt / 2 * f(x2)
        K3 = Df(x3) @ (np.eye(3) + dt / 2 * K2)
        K4 = Df(x + dt * f(x3)) @ (np.eye(3) + dt * K3)
        return np.eye(3) + dt / 6 * (K1 + 2 * K2 + 2 * K3 + K4)

    res = lyapunov_spectrum(step, jac, np.array([1.0, 1.0, 1.0]), 10000, n_transient=500, dt=dt)
    # literature (Sprott): 0.9056, 0, -14.5723; the sum is -(σ + 1 + β) exactly for the flow
    assert res.exponents[0] == pytest.approx(0.9056, abs=0.08)
    assert res.exponents[1] == pytest.approx(0.0, abs=0.05)
    assert res.exponents[2] == pytest.approx(-14.5723, abs=0.1)
    assert res.exponents.sum() == pytest.approx(res.mean_log_det, abs=1e-9)
    assert res.exponents.sum() == pytest.approx(-(s + 1 + beta), abs=1e-3)


def test_partial_spectrum_is_the_leading_part():
    A = np.diag([1.2, 0.9, 0.5, 0.1]) + np.triu(np.ones((4, 4)), 1) * 0.3
    part = lyapunov_spectrum(lambda x: x, lambda x: A, np.ones(4), 2000, n_exponents=2)
    np.testing.assert_allclose(part.exponents, np.log([1.2, 0.9]), atol=2e-3)
    assert np.isnan(part.mean_log_det)
    with pytest.raises(ValueError, match="n_exponents"):
        lyapunov_spectrum(lambda x: x, lambda x: np.eye(2), np.zeros(2), 10, n_exponents=3)


@pytest.mark.parametrize("freq", [0.05, 0.13])
def test_dmd_recovers_sinusoid_frequency(freq):
    rng = np.random.default_rng(2)
    t = np.arange(400)
    mix = rng.standard_normal((2, 12))
    x = np.stack([np.sin(2 * np.pi * freq * t + 0.4), np.cos(2 * np.pi * freq * t)], 1) @ mix
    res = dmd(x + 0.3, rank=2)
    assert res.dominant_frequency() == pytest.approx(freq, rel=1e-3)
    assert np.abs(res.growth_rate).max() < 1e-3
    # in hertz with dt in seconds
    assert dmd(x, rank=2, dt=0.01).dominant_frequency() == pytest.approx(freq / 0.01, rel=1e-3)


def test_dmd_of_a_moving_blob_needs_the_sustained_modes():
    """A blob crossing the frame is a nonlinear oscillation: rank-6 DMD fits only decaying
    modes (here at the Nyquist frequency); with pydmd's optimal rank, the sustained modes are
    the true frequency (period 20 frames) and its harmonics, the fundamental the lowest."""
    from neurorec.spec.oscillator import OscillatingObjectSpec
    from neurorec.stimuli.oscillator import make_movies

    movies = make_movies(OscillatingObjectSpec(n_angles=8, n_frames=60, amplitude_px=20,
                                               period_frames=20))
    for frames in movies.frames[:4]:
        x = frames.reshape(60, -1)[5:].astype(float)
        low = dmd(x, rank=6)
        assert np.abs(low.growth_rate).min() > 0.05  # nothing sustained: all decay
        assert np.isnan(low.dominant_frequency(0.01, max_abs_growth=0.05))
        assert low.dominant_frequency(0.01) == pytest.approx(0.5)  # the old reading
        fit = dmd(x, rank=0)
        f = fit.dominant_frequency(0.01, max_abs_growth=0.05)
        assert min(abs(f - k * 0.05) for k in (1, 2, 3)) < 0.004  # a harmonic of 1/20
        assert fit.fundamental_frequency(0.01, max_abs_growth=0.05) == pytest.approx(0.05,
                                                                                   abs=0.004)
