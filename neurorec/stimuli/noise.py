"""Spatiotemporal white noise: each pixel of each frame independent, zero mean.

Binary noise takes ±contrast with probability ½ each; Gaussian noise is N(0, contrast²).
Trial ``j`` draws from ``default_rng([seed, j])`` (``[seed, 0]`` for every trial when frozen),
so any trial can be regenerated on its own.
"""

from __future__ import annotations

import numpy as np

from neurorec.stimuli.timing import Movie, n_frames, schedule


def white_noise_frames(n: int, size_px: int, distribution: str, contrast: float,
                       rng: np.random.Generator) -> np.ndarray:
    """(n, size_px, size_px) float32 white-noise frames."""
    if distribution == "binary":
        out = np.where(rng.random((n, size_px, size_px)) < 0.5, -contrast, contrast)
    elif distribution == "gaussian":
        out = contrast * rng.standard_normal((n, size_px, size_px))
    else:
        raise ValueError(f"distribution: expected 'binary' or 'gaussian', got {distribution!r}")
    return out.astype(np.float32)


def white_noise(spec) -> Movie:
    """The protocol of a :class:`~neurorec.spec.stimuli.WhiteNoiseSpec` as a movie."""
    on = n_frames(spec.timing.duration, spec.timing.frame_rate)

    def render(_c, _t_s, trial):
        rng = np.random.default_rng([spec.seed, 0 if spec.frozen else trial])
        return white_noise_frames(on, spec.size_px, spec.distribution, spec.contrast, rng)

    return schedule([{}], spec.timing, spec.size_px, spec.degrees_per_px, render)
