"""Small drifting Gabor patches: a drifting sine grating under a fixed Gaussian envelope.

    L(x, y, t) = c · exp(−|p − p0|² / 2σ²) · sin(2π f ((p − p0)·(cos θ, sin θ) − v t))

with ``p = (x, y)`` in degrees (x right, y up, origin at the frame centre) and ``p0`` the
Gabor's centre. The carrier moves along θ; the envelope stays put.
"""

from __future__ import annotations

import itertools

import numpy as np

from neurorec.stimuli.timing import Movie, pixel_grid, schedule


def gabor(direction_deg: float, speed_deg_s: float, spatial_frequency_cpd: float,
          position_deg: tuple[float, float], sigma_deg: float, t_s: np.ndarray, size_px: int,
          degrees_per_px: float, contrast: float = 1.0, phase_rad: float = 0.0) -> np.ndarray:
    """(len(t_s), size_px, size_px) float32 frames of one drifting Gabor."""
    x, y = pixel_grid(size_px, degrees_per_px)
    dx, dy = x - position_deg[0], y - position_deg[1]
    theta = np.deg2rad(direction_deg)
    along = dx * np.cos(theta) + dy * np.sin(theta)
    envelope = np.exp(-(dx**2 + dy**2) / (2 * sigma_deg**2))
    t = np.asarray(t_s, dtype=float)[:, None, None]
    carrier = np.sin(2 * np.pi * spatial_frequency_cpd * (along[None] - speed_deg_s * t)
                     + phase_rad)
    return (contrast * envelope[None] * carrier).astype(np.float32)


def conditions(spec) -> list[dict[str, float]]:
    """Every position × direction × speed × spatial frequency × contrast of the spec."""
    return [{"x": p[0], "y": p[1], "direction": d, "speed": v, "spatial_frequency": f,
             "contrast": c}
            for p, d, v, f, c in itertools.product(spec.positions, spec.directions, spec.speeds,
                                                   spec.spatial_frequencies, spec.contrasts)]


def drifting_gabors(spec) -> Movie:
    """The whole protocol of a :class:`~neurorec.spec.stimuli.DriftingGaborsSpec` as a movie."""

    def render(c, t_s, _trial):
        return gabor(c["direction"], c["speed"], c["spatial_frequency"], (c["x"], c["y"]),
                     spec.sigma, t_s, spec.size_px, spec.degrees_per_px, c["contrast"])

    return schedule(conditions(spec), spec.timing, spec.size_px, spec.degrees_per_px, render)
