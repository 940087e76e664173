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


def orbit_period(tail: np.ndarray, max_period: int, tol: float) -> int:
    """Smallest p ≤ max_period with ``‖tail[t+p] − tail[t]‖ ≤ tol`` over the last p states of
    ``tail`` (T, d), T ≥ 2 max_period; 0 if none."""
    T = len(tail)
    for p in range(1, max_period + 1):
        later = tail[T - p:]
        earlier = tail[T - 2 * p:T - p]
        if np.all(np.linalg.norm(later - earlier, axis=1) <= tol):
            return p
    return 0


def find_attractors(step: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                    n_transient: int = 1000, max_period: int = 100, tol: float = 1e-6,
                    merge_tol: float = 1e-3) -> Attractors:
    """Run ``step`` (batched: (n, d) -> (n, d)) from every row of ``x0`` (n, d) for
    ``n_transient`` steps plus 2·max_period recorded steps, then classify each orbit."""
    x = np.asarray(x0, float).copy()
    for _ in range(n_transient):
        x = step(x)
    tail = np.empty((2 * max_period, *x.shape))
    for t in range(2 * max_period):
        x = step(x)
        tail[t] = x
    n = len(x)
    period = np.array([orbit_period(tail[:, i], max_period, tol) for i in range(n)])
    attractor = np.full(n, -1)
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
