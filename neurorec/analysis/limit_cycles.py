"""Attractors of an autonomous discrete map: fixed points, limit cycles (period, how many)
and non-periodic orbits, found by running many initial states past a transient.

A state is on a cycle of period p when ``‖x_{t+p} − x_t‖ ≤ tol`` for p consecutive t at the
end of the run (the smallest such p; p = 1 a fixed point). Orbits are the same attractor when
one's final state lies within ``merge_tol`` of the other's cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Attractors:
    """Result of :func:`find_attractors`.

    Attributes:
        period: (n,) period of each orbit's attractor; 0 when none ≤ max_period was found
            (quasi-periodic or chaotic).
        attractor: (n,) index into ``cycles`` of each orbit's attractor; −1 when aperiodic.
        cycles: one (period, n_dims) array of the states on each distinct attractor.
        final_states: (n, n_dims) states after the run.
    """

    period: np.ndarray
    attractor: np.ndarray
    cycles: list[np.ndarray]
    final_states: np.ndarray

    @property
    def n_limit_cycles(self) -> int:
        return sum(len(c) > 1 for c in self.cycles)

    @property
    def n_fixed_points(self) -> int:
        return sum(len(c) == 1 for c in self.cycles)


def run_orbits(step: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, n_steps: int,
               n_record: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Iterate the batched map ``step`` ((n, d) -> (n, d)) ``n_steps`` times from ``x0``
    (n, d), then ``n_record`` more, recorded. Returns (final state (n, d), record
    (n_record, n, d))."""
    x = np.asarray(x0, float).copy()
    for _ in range(n_steps):
        x = step(x)
    record = np.empty((n_record, *x.shape))
    for t in range(n_record):
        x = step(x)
        record[t] = x
    return x, record


def periodicity_residual(tail: np.ndarray, max_period: int) -> np.ndarray:
    """(n, max_period) ``r[i, p−1] = max_{t in last p} ‖tail[t, i] − tail[t − p, i]‖`` for a
    record ``tail`` (T, n, d), T ≥ 2·max_period: orbit i is periodic with period p at
    tolerance tol exactly when ``r[i, p−1] ≤ tol``."""
    T = len(tail)
    if T < 2 * max_period:
        raise ValueError(f"tail of {T} steps; need >= 2 * max_period = {2 * max_period}")
    out = np.empty((tail.shape[1], max_period))
    for p in range(1, max_period + 1):
        diff = tail[T - p:] - tail[T - 2 * p:T - p]  # (p, n, d)
        out[:, p - 1] = np.linalg.norm(diff, axis=2).max(axis=0)
    return out


def _periods(residual: np.ndarray, tol: float) -> np.ndarray:
    """(n,) smallest p with ``residual[i, p−1] ≤ tol``; 0 where none."""
    hit = residual <= tol
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)


def orbit_period(tail: np.ndarray, max_period: int, tol: float) -> int:
    """Smallest p ≤ max_period with ``‖tail[t+p] − tail[t]‖ ≤ tol`` over the last p states of
    ``tail`` (T, d), T ≥ 2 max_period; 0 if none."""
    return int(_periods(periodicity_residual(tail[:, None], max_period), tol)[0])


def classify_orbits(x: np.ndarray, tail: np.ndarray, residual: np.ndarray, tol: float,
                    merge_tol: float) -> Attractors:
    """Classify the orbits of a recorded ``tail`` (T, n, d) ending in states ``x`` (n, d),
    given their :func:`periodicity_residual` (n, max_period), at tolerance ``tol``."""
    period = _periods(residual, tol)
    attractor = np.full(len(x), -1)
    cycles: list[np.ndarray] = []
    for i in np.flatnonzero(period > 0):
        p = period[i]
        for j, cyc in enumerate(cycles):
            if len(cyc) == p and np.min(np.linalg.norm(cyc - x[i], axis=1)) <= merge_tol:
                attractor[i] = j
                break
        else:
            attractor[i] = len(cycles)
            cycles.append(tail[-p:, i].copy())
    return Attractors(period, attractor, cycles, x)


def find_attractors(step: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                    n_transient: int = 1000, max_period: int = 100, tol: float = 1e-6,
                    merge_tol: float = 1e-3) -> Attractors:
    """Run ``step`` (batched: (n, d) -> (n, d)) from every row of ``x0`` (n, d) for
    ``n_transient`` steps plus 2·max_period recorded steps, then classify each orbit."""
    x, tail = run_orbits(step, x0, n_transient, 2 * max_period)
    return classify_orbits(x, tail, periodicity_residual(tail, max_period), tol, merge_tol)
