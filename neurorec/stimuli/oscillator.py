"""Movies of an object in simple harmonic motion along an axis at angle θ.

Pixel coordinates are (column, row): x rightwards, row downwards, so an angle θ counted
anticlockwise on screen moves the object along ``(cos θ, −sin θ)``. Frames are float32 in
[0, 1] (a Gaussian blob of peak 1 on black), the input the conv autoencoder's sigmoid/BCE
output expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurorec.spec.oscillator import OscillatingObjectSpec

# held-out axis angles of the two directional test sets (degrees, inclusive intervals)
SPLIT_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "left_right": ((160.0, 200.0), (-20.0, 20.0)),
    "up_down": ((70.0, 120.0), (250.0, 290.0)),
}
DIRECTION_NAMES = ("right", "up", "left", "down")


@dataclass(frozen=True)
class OscillatorMovies:
    """A set of oscillating-object movies.

    Attributes:
        frames: (n_movies, n_frames, size, size) float32 intensities in [0, 1].
        centre_px: (n_movies, n_frames, 2) object centre (column, row), pixels.
        velocity_px: (n_movies, n_frames, 2) d centre / d frame, pixels per frame.
        angle_deg: (n_movies,) axis angle θ in [0, 360).
        phase: (n_movies,) φ, radians.
        axis_point: (n_movies, 2) the point p the axis goes through (column, row).
        is_test: (n_movies,) True for movies of held-out angles.
        period_frames: oscillation period T in frames.
    """

    frames: np.ndarray
    centre_px: np.ndarray
    velocity_px: np.ndarray
    angle_deg: np.ndarray
    phase: np.ndarray
    axis_point: np.ndarray
    is_test: np.ndarray
    period_frames: float

    def subset(self, mask: np.ndarray) -> OscillatorMovies:
        """The movies where ``mask`` (n_movies,) is True."""
        return OscillatorMovies(self.frames[mask], self.centre_px[mask], self.velocity_px[mask],
                                self.angle_deg[mask], self.phase[mask], self.axis_point[mask],
                                self.is_test[mask], self.period_frames)


def trajectory(angle_deg: float, n_frames: int, amplitude_px: float, period_frames: float,
               phase: float, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and velocity, each (n_frames, 2) (column, row) in px and px/frame:
    ``c(t) = p + A sin(2π t / T + φ) u``, ``u = (cos θ, −sin θ)``."""
    t = np.arange(n_frames, dtype=float)
    theta = np.deg2rad(angle_deg)
    u = np.array([np.cos(theta), -np.sin(theta)])
    arg = 2 * np.pi * t / period_frames + phase
    centre = np.asarray(point, float) + amplitude_px * np.sin(arg)[:, None] * u
    velocity = (amplitude_px * 2 * np.pi / period_frames) * np.cos(arg)[:, None] * u
    return centre, velocity


def render(centre_px: np.ndarray, size_px: int, sigma_px: float) -> np.ndarray:
    """(..., size, size) float32 frames of a Gaussian blob (peak 1) at ``centre_px`` (..., 2)."""
    grid = np.arange(size_px, dtype=float)
    dx = grid - centre_px[..., 0, None]  # (..., size) over columns
    dy = grid - centre_px[..., 1, None]  # (..., size) over rows
    gx = np.exp(-dx**2 / (2 * sigma_px**2))
    gy = np.exp(-dy**2 / (2 * sigma_px**2))
    return (gy[..., :, None] * gx[..., None, :]).astype(np.float32)  # separable


def in_ranges(angle_deg: np.ndarray, ranges: tuple[tuple[float, float], ...]) -> np.ndarray:
    """(n,) True where an angle lies in any [lo, hi] (degrees, compared modulo 360)."""
    a = np.mod(angle_deg, 360.0)
    out = np.zeros(a.shape, bool)
    for lo, hi in ranges:
        lo_m = np.mod(lo, 360.0)
        width = hi - lo
        out |= np.mod(a - lo_m, 360.0) <= width + 1e-9
    return out


def held_out_angles(angles: np.ndarray, split: str, test_fraction: float, seed: int) -> np.ndarray:
    """(n_angles,) mask of held-out angles: ``random`` draws ``round(test_fraction · n)``
    angles with ``seed``; ``left_right`` / ``up_down`` hold out :data:`SPLIT_RANGES`."""
    if split == "random":
        rng = np.random.default_rng(seed)
        n_test = max(1, round(test_fraction * len(angles)))
        mask = np.zeros(len(angles), bool)
        mask[rng.choice(len(angles), n_test, replace=False)] = True
        return mask
    return in_ranges(angles, SPLIT_RANGES[split])


def motion_direction(velocity_px: np.ndarray) -> np.ndarray:
    """Integer labels (...,) of the nearest compass direction of the motion:
    0 right, 1 up, 2 left, 3 down (screen up is −row)."""
    ang = np.arctan2(-velocity_px[..., 1], velocity_px[..., 0])
    return np.mod(np.round(ang / (np.pi / 2)), 4).astype(int)


def make_movies(spec: OscillatingObjectSpec) -> OscillatorMovies:
    """All movies of the protocol, ``movies_per_angle`` per axis angle, deterministic in
    ``spec.seed``."""
    rng = np.random.default_rng(spec.seed)
    angles = np.arange(spec.n_angles) * 360.0 / spec.n_angles
    held_out = held_out_angles(angles, spec.split, spec.test_fraction, spec.seed)
    angle = np.repeat(angles, spec.movies_per_angle)
    is_test = np.repeat(held_out, spec.movies_per_angle)
    n = len(angle)
    phase = rng.uniform(0, 2 * np.pi, n) if spec.random_phase else np.zeros(n)
    mid = (spec.size_px - 1) / 2.0
    points = np.full((n, 2), mid)
    if spec.axis_point == "random":
        # any point whose whole path (± A along u) stays 3 σ inside the frame
        margin = 3 * spec.object.sigma_px
        theta = np.deg2rad(angle)
        half = spec.amplitude_px * np.abs(np.stack([np.cos(theta), np.sin(theta)], 1))
        lo, hi = margin + half, spec.size_px - 1 - margin - half
        points = lo + rng.uniform(0, 1, (n, 2)) * (hi - lo)
    centre = np.empty((n, spec.n_frames, 2))
    velocity = np.empty((n, spec.n_frames, 2))
    for i in range(n):
        centre[i], velocity[i] = trajectory(angle[i], spec.n_frames, spec.amplitude_px,
                                            spec.period_frames, phase[i], points[i])
    frames = render(centre, spec.size_px, spec.object.sigma_px)
    return OscillatorMovies(frames, centre, velocity, angle, phase, points, is_test,
                            spec.period_frames)
