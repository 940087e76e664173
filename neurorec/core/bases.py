"""Temporal bases: raised cosines tiling a trial, and log-stretched ones for spike history.

Pure functions returning ``(n_samples, n_basis)`` float64 arrays.
"""

from __future__ import annotations

import numpy as np


def _bump(phase: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.cos(np.clip(phase, -np.pi, np.pi)))


def raised_cosine_linear(n_samples: int, n_basis: int) -> np.ndarray:
    """Raised-cosine bumps with centres evenly spread over ``n_samples`` time points.

    Neighbouring centres are a quarter period apart, so the bumps sum to a constant in the
    interior (Pillow et al. 2008). ``n_basis == 1`` gives a constant.

    Returns:
        (n_samples, n_basis) array.
    """
    if n_basis == 1:
        return np.ones((n_samples, 1))
    t = np.arange(n_samples, dtype=float)
    centres = np.linspace(0.0, n_samples - 1.0, n_basis)
    spacing = centres[1] - centres[0]
    return _bump((t[:, None] - centres[None, :]) * np.pi / (2.0 * spacing))


def raised_cosine_log(n_lags: int, n_basis: int, offset: float = 1.0) -> np.ndarray:
    """Log-stretched raised cosines over lags ``1..n_lags`` bins (Pillow et al. 2008).

    Narrow bumps at short lags capture refractoriness, wide ones at long lags slow effects.

    Returns:
        (n_lags, n_basis) array; row ``l`` is lag ``l + 1``.
    """
    lags = np.arange(1, n_lags + 1, dtype=float)
    stretched = np.log(lags + offset)
    if n_basis == 1:
        return np.ones((n_lags, 1))
    centres = np.linspace(stretched[0], stretched[-1], n_basis)
    spacing = centres[1] - centres[0]
    return _bump((stretched[:, None] - centres[None, :]) * np.pi / (2.0 * spacing))
