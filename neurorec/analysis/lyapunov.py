"""Lyapunov spectrum of a discrete map by repeated QR (Benettin et al. 1980; Shimada &
Nagashima 1979).

For ``x_{t+1} = f(x_t)`` with Jacobian ``J_t = Df(x_t)``, an orthonormal frame ``Q`` is pushed
forward, ``J_t Q_t = Q_{t+1} R_t``, and the exponents are the time averages of
``log |diag R_t|`` (per step, or per unit time with ``dt``). Generic: any map and Jacobian on
numpy arrays — a discrete RNN, or one integration step of a continuous-time RNN (with the
step's own Jacobian, e.g. the tangent of an RK4 step), whose exponents come out per unit time
when ``dt`` is the step length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LyapunovSpectrum:
    """Result of :func:`lyapunov_spectrum`.

    Attributes:
        exponents: (k,) descending, per step (or per unit time when ``dt`` was given).
        running: (n_steps, k) running estimates after each step (convergence check).
        mean_log_det: mean ``log |det J_t|`` over the steps, per step / unit time (NaN when
            k < dimension); equals ``exponents.sum()`` for the full spectrum.
        final_state: (d,) state after the last step.
    """

    exponents: np.ndarray
    running: np.ndarray
    mean_log_det: float
    final_state: np.ndarray

    @property
    def max_exponent(self) -> float:
        return float(self.exponents[0])

    def kaplan_yorke_dimension(self) -> float:
        """``j + Σ_{i≤j} λ_i / |λ_{j+1}|`` with j the largest index whose partial sum ≥ 0."""
        cums = np.cumsum(self.exponents)
        j = int(np.sum(cums >= 0))
        if j == 0:
            return 0.0
        if j == len(self.exponents):
            return float(j)
        return j + float(cums[j - 1] / abs(self.exponents[j]))


def lyapunov_spectrum(step: Callable[[np.ndarray], np.ndarray],
                      jacobian: Callable[[np.ndarray], np.ndarray],
                      x0: np.ndarray, n_steps: int, n_transient: int = 0,
                      n_exponents: int | None = None, dt: float = 1.0,
                      seed: int = 0) -> LyapunovSpectrum:
    """The ``n_exponents`` largest Lyapunov exponents of ``x -> step(x)``.

    Args:
        step: the map, (d,) -> (d,).
        jacobian: its Jacobian at x, (d,) -> (d, d), ``J[i, j] = ∂ step(x)_i / ∂ x_j``.
        x0: (d,) initial state.
        n_steps: steps averaged over (after the transient).
        n_transient: steps run first to reach the attractor (exponents not accumulated);
            the frame is also aligned during them.
        n_exponents: how many (default all d).
        dt: time per step; exponents are divided by it.
        seed: of the random initial orthonormal frame.
    """
    x = np.asarray(x0, dtype=float).copy()
    d = x.shape[0]
    k = d if n_exponents is None else int(n_exponents)
    if not 1 <= k <= d:
        raise ValueError(f"n_exponents must be in 1..{d}, got {k}")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, k)))
    sums = np.zeros(k)
    log_det = 0.0
    running = np.empty((n_steps, k))
    for t in range(n_transient + n_steps):
        J = jacobian(x)
        x = step(x)
        Q, R = np.linalg.qr(J @ Q)
        if t < n_transient:
            continue
        i = t - n_transient
        # a zero diagonal (singular J) gives -inf: the exact exponent of a collapsing direction
        with np.errstate(divide="ignore"):
            sums += np.log(np.abs(np.diag(R)))
            if k == d:
                log_det += np.linalg.slogdet(J)[1]
        running[i] = sums / ((i + 1) * dt)
    exponents = sums / (n_steps * dt)
    order = np.argsort(-exponents, kind="stable")
    mean_log_det = log_det / (n_steps * dt) if k == d else float("nan")
    return LyapunovSpectrum(exponents[order], running[:, order], float(mean_log_det), x)
