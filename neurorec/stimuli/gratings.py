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

from neurorec.stimuli.timing import Movie, n_frames, pixel_grid, schedule


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
    """Every direction × speed × spatial frequency × contrast × start phase (degrees) of a
    ``drifting_gratings`` spec."""
    return [{"direction": d, "speed": v, "spatial_frequency": f, "contrast": c, "phase": p}
            for d, v, f, c, p in itertools.product(spec.directions, spec.speeds,
                                                   spec.spatial_frequencies, spec.contrasts,
                                                   spec.phases)]


def drifting_gratings(spec) -> Movie:
    """The whole protocol of a :class:`~neurorec.spec.stimuli.DriftingGratingsSpec` as a movie
    (blanks are grey, conditions shuffled per repeat by ``timing.shuffle_seed``)."""

    def render(c, t_s, _trial):
        return grating(c["direction"], c["speed"], c["spatial_frequency"], t_s, spec.size_px,
                       spec.degrees_per_px, c["contrast"], spec.waveform,
                       np.deg2rad(c["phase"]))

    return schedule(conditions(spec), spec.timing, spec.size_px, spec.degrees_per_px, render)


# ------------------------------------------------------------------- probing with gratings
def temporal_frequency(condition: dict[str, float]) -> float:
    """A drifting grating's temporal frequency, Hz: spatial frequency × speed."""
    return float(condition["spatial_frequency"]) * float(condition["speed"])


def sampling_problems(spec, where: str = "protocol") -> list[str]:
    """Why a ``drifting_gratings`` protocol cannot measure direction selectivity (empty: it
    can), one line per problem naming ``where`` and the field.

    * a temporal frequency above a quarter of the frame rate: the phase steps more than 90°
      per frame, and at 180° a grating looks the same drifting either way (aliasing);
    * a grating whose period does not span a whole number of frames, or a response window
      (:func:`cycle_window`) that holds no whole number of cycles: the opposite directions
      would then be averaged over different sets of phases;
    * fewer than 4 start phases, or phases not evenly spread over the cycle.
    """
    rate = float(spec.timing.frame_rate)
    lines = []
    for c in conditions(spec):
        tf = temporal_frequency(c)
        if tf > rate / 4 + 1e-9:
            lines.append(f"{where}: speeds/spatial_frequencies: {c['speed']:g} deg/s at "
                         f"{c['spatial_frequency']:g} cyc/deg is {tf:g} Hz, above a quarter "
                         f"of the {rate:g} Hz frame rate (aliased: more than 90° of phase per "
                         "frame)")
            break
    periods = frame_periods(spec)
    if not lines and any(abs(p - round(p)) > 1e-6 for p in periods if np.isfinite(p)):
        bad = next(p for p in periods if np.isfinite(p) and abs(p - round(p)) > 1e-6)
        lines.append(f"{where}: speeds/spatial_frequencies: a cycle of {bad:.3g} frames is not "
                     "a whole number of frames (choose speed × spatial frequency dividing "
                     f"the {rate:g} Hz frame rate)")
    phases = np.sort(np.mod(np.asarray(spec.phases, float), 360.0))
    if len(phases) < 4:
        lines.append(f"{where}: phases: {len(phases)} start phase(s); at least 4, evenly "
                     "spread over the cycle")
    elif np.ptp(np.diff(np.r_[phases, phases[0] + 360.0])) > 1e-6:
        lines.append(f"{where}: phases: {', '.join(f'{p:g}' for p in phases)} are not evenly "
                     "spread over 360°")
    if not lines and cycle_window(spec) is None:
        lines.append(f"{where}: timing.duration: {spec.timing.duration:g} s leaves no window "
                     "after probe.settle holding whole cycles of every grating")
    return lines


def frame_periods(spec) -> list[float]:
    """Frames per cycle of each condition (inf for a static grating)."""
    rate = float(spec.timing.frame_rate)
    return [rate / tf if (tf := temporal_frequency(c)) > 0 else float("inf")
            for c in conditions(spec)]


def cycle_window(spec) -> int | None:
    """Length (frames) of the response window: the last frames of each trial, after
    ``probe.settle``, spanning a whole number of cycles of every condition (the longest such
    window); None when there is none."""
    rate = float(spec.timing.frame_rate)
    total = n_frames(spec.timing.duration, rate)
    usable = total - n_frames(spec.probe.settle, rate)
    periods = {round(p) for p in frame_periods(spec) if np.isfinite(p)}
    step = int(np.lcm.reduce(sorted(periods))) if periods else 1
    window = usable // step * step
    return window if window > 0 else None


def grating_clips(spec, contrast: np.ndarray | float = 1.0) -> np.ndarray:
    """(n_conditions, n_frames, size_px, size_px) float32 frames of every condition, one
    trial each (no blanks), conditions in :func:`conditions` order; ``contrast`` scales each
    condition (a scalar, or one value per condition)."""
    rate = float(spec.timing.frame_rate)
    t = np.arange(n_frames(spec.timing.duration, rate)) / rate
    conds = conditions(spec)
    scale = np.broadcast_to(np.asarray(contrast, float), (len(conds),))
    return np.stack([grating(c["direction"], c["speed"], c["spatial_frequency"], t,
                             spec.size_px, spec.degrees_per_px, s * c["contrast"],
                             spec.waveform, np.deg2rad(c["phase"]))
                     for c, s in zip(conds, scale, strict=True)])
