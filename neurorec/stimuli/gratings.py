"""Full-field drifting gratings, sine or square wave, in closed form.

A grating of direction θ, speed v (deg/s) and spatial frequency f (cycles/deg) at contrast c:

    L(x, y, t) = c · wave(2π f (x cos θ + y sin θ − v t) + φ0),   wave = sin or sign∘sin

so its bars are orthogonal to θ, it moves along θ, a pixel flickers at the temporal frequency
``f · v`` Hz, and its 2-D spectrum peaks at the spatial-frequency vector ``f (cos θ, sin θ)``.
Coordinates in degrees, x right, y up (:func:`neurorec.stimuli.timing.pixel_grid`).
"""

from __future__ import annotations

import itertools

import numpy as np

from neurorec.stimuli.timing import Movie, pixel_grid, schedule


def grating(direction_deg: float, speed_deg_s: float, spatial_frequency_cpd: float,
            t_s: np.ndarray, size_px: int, degrees_per_px: float, contrast: float = 1.0,
            waveform: str = "sine", phase_rad: float = 0.0) -> np.ndarray:
    """(len(t_s), size_px, size_px) float32 frames of one drifting grating at times ``t_s``."""
    x, y = pixel_grid(size_px, degrees_per_px)
    theta = np.deg2rad(direction_deg)
    along = x * np.cos(theta) + y * np.sin(theta)  # degrees along the drift direction
    t = np.asarray(t_s, dtype=float)[:, None, None]
    s = np.sin(2 * np.pi * spatial_frequency_cpd * (along[None] - speed_deg_s * t) + phase_rad)
    if waveform == "square":
        s = np.where(s >= 0, 1.0, -1.0)
    elif waveform != "sine":
        raise ValueError(f"waveform: expected 'sine' or 'square', got {waveform!r}")
    return (contrast * s).astype(np.float32)


def conditions(spec) -> list[dict[str, float]]:
    """Every direction × speed × spatial frequency × contrast of a ``drifting_gratings`` spec."""
    return [{"direction": d, "speed": v, "spatial_frequency": f, "contrast": c}
            for d, v, f, c in itertools.product(spec.directions, spec.speeds,
                                                spec.spatial_frequencies, spec.contrasts)]


def drifting_gratings(spec) -> Movie:
    """The whole protocol of a :class:`~neurorec.spec.stimuli.DriftingGratingsSpec` as a movie
    (blanks are grey, conditions shuffled per repeat by ``timing.shuffle_seed``)."""

    def render(c, t_s, _trial):
        return grating(c["direction"], c["speed"], c["spatial_frequency"], t_s, spec.size_px,
                       spec.degrees_per_px, c["contrast"], spec.waveform)

    return schedule(conditions(spec), spec.timing, spec.size_px, spec.degrees_per_px, render)
