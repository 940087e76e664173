"""Dynamic mode decomposition of population activity (pydmd): mode frequencies and growth.

DMD fits ``x_{t+1} ≈ A x_t`` in the span of the leading singular vectors; each eigenvalue
``μ = |μ| e^{iω}`` of ``A`` is a mode oscillating at ``ω / (2π dt)`` and growing at
``log|μ| / dt``. Complex-conjugate pairs give the same frequency; the result keeps the
non-negative one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DMDResult:
    """Modes of a DMD fit, sorted by decreasing amplitude.

    Attributes:
        eigenvalues: (r,) complex discrete-time eigenvalues μ.
        frequency: (r,) ``angle(μ) / (2π dt)``, cycles per unit of ``dt`` (per frame if dt=1).
        growth_rate: (r,) ``log|μ| / dt``.
        amplitude: (r,) |b|, the modes' amplitudes in the first snapshot (mode norm 1).
        modes: (n_features, r) complex spatial modes (unit norm).
    """

    eigenvalues: np.ndarray
    frequency: np.ndarray
    growth_rate: np.ndarray
    amplitude: np.ndarray
    modes: np.ndarray

    def _oscillating(self, min_frequency: float, max_abs_growth: float | None) -> np.ndarray:
        ok = np.abs(self.frequency) > min_frequency
        if max_abs_growth is not None:
            ok &= np.abs(self.growth_rate) <= max_abs_growth
        return ok

    def dominant_frequency(self, min_frequency: float = 0.0,
                           max_abs_growth: float | None = None) -> float:
        """|frequency| of the largest-amplitude mode oscillating faster than ``min_frequency``
        (NaN if none). ``max_abs_growth``: only sustained modes, ``|growth_rate| ≤`` it — a
        truncated DMD of a nonlinear oscillation (a blob crossing the frame) also fits
        fast-decaying modes, often at the Nyquist frequency, with large amplitudes."""
        ok = self._oscillating(min_frequency, max_abs_growth)
        if not ok.any():
            return float("nan")
        return float(abs(self.frequency[ok][np.argmax(self.amplitude[ok])]))

    def fundamental_frequency(self, min_frequency: float = 0.0,
                              max_abs_growth: float | None = None,
                              min_relative_amplitude: float = 0.1) -> float:
        """The lowest |frequency| among the modes :meth:`dominant_frequency` considers whose
        amplitude is at least ``min_relative_amplitude`` of the largest: the fundamental of a
        periodic signal whose harmonics may carry more amplitude (NaN if none)."""
        ok = self._oscillating(min_frequency, max_abs_growth)
        if not ok.any():
            return float("nan")
        amp = self.amplitude[ok]
        return float(np.abs(self.frequency[ok])[amp >= min_relative_amplitude * amp.max()].min())


def dmd(x: np.ndarray, rank: int = 0, dt: float = 1.0, center: bool = True) -> DMDResult:
    """DMD of a time series.

    Args:
        x: (n_time, n_features) snapshots, e.g. hidden states of an RNN over frames.
        rank: SVD truncation (0: pydmd's optimal hard threshold; -1: none; k: k modes).
        dt: time between snapshots; frequencies come out in cycles per unit of dt.
        center: subtract each feature's mean first, so a constant offset does not take a mode.
    """
    from pydmd import DMD

    x = np.asarray(x, float)
    if center:
        x = x - x.mean(axis=0)
    with warnings.catch_warnings():  # low-rank snapshot matrices are the normal case here
        warnings.simplefilter("ignore", UserWarning)
        fit = DMD(svd_rank=rank).fit(x.T)
    mu = np.asarray(fit.eigs)
    modes = np.asarray(fit.modes)
    norms = np.linalg.norm(modes, axis=0)
    norms[norms == 0] = 1.0
    amplitude = np.abs(np.asarray(fit.amplitudes)) * norms
    order = np.argsort(-amplitude, kind="stable")
    with np.errstate(divide="ignore"):
        growth = np.log(np.abs(mu)) / dt
    return DMDResult(mu[order], (np.angle(mu) / (2 * np.pi * dt))[order], growth[order],
                     amplitude[order], (modes / norms)[:, order])
