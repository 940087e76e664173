"""How close the orbits of an autonomous map come to being periodic, at several tolerances.

:func:`neurorec.analysis.limit_cycles.find_attractors` calls an orbit periodic when
``‖x_{t+p} − x_t‖ ≤ tol`` over its last p steps; whether a network "has limit cycles" then
depends on ``tol`` and on the transient. Here the same rule is turned into a number per orbit:
its *periodicity residual* ``r_p = max_{last p steps} ‖x_{t+p} − x_t‖`` for every p ≤
max_period, whose minimum over p is the smallest tolerance at which the orbit would count as
periodic. :func:`attractor_census` runs the orbits once past the transient and classifies
them at every tolerance of a list (one :func:`find_attractors` call each, no new transient).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from neurorec.analysis.limit_cycles import (
    Attractors,
    classify_orbits,
    periodicity_residual,
    run_orbits,
)

__all__ = ["Census", "attractor_census", "periodicity_residual", "run_orbits"]


@dataclass(frozen=True)
class Census:
    """Result of :func:`attractor_census`.

    Attributes:
        tols: the tolerances, ascending.
        by_tol: one :class:`Attractors` per tolerance (orbits classified at that tol).
        min_residual: (n,) smallest periodicity residual of each orbit over p ≤ max_period
            (the tolerance at which it would first count as periodic).
        best_period: (n,) the p of that smallest residual.
        scale: (n,) ‖x‖ of each orbit's final state (to read the residual relative to it).
    """

    tols: tuple[float, ...]
    by_tol: tuple[Attractors, ...]
    min_residual: np.ndarray
    best_period: np.ndarray
    scale: np.ndarray

    def summary(self, labels: np.ndarray | None = None) -> list[dict]:
        """Per tolerance: orbits on fixed points / limit cycles / aperiodic, the number of
        distinct fixed points and limit cycles, their periods, and (with ``labels`` (n,), e.g.
        the digit of the image an orbit started from) how many distinct labels each
        attractor collects."""
        rows = []
        for tol, att in zip(self.tols, self.by_tol, strict=True):
            row = {"tol": tol, "fixed_point_orbits": int(np.sum(att.period == 1)),
                   "limit_cycle_orbits": int(np.sum(att.period > 1)),
                   "aperiodic_orbits": int(np.sum(att.period == 0)),
                   "n_fixed_points": att.n_fixed_points, "n_limit_cycles": att.n_limit_cycles,
                   "cycle_periods": sorted(len(c) for c in att.cycles if len(c) > 1)}
            if labels is not None:
                row["labels_per_attractor"] = [len(np.unique(labels[att.attractor == j]))
                                               for j in range(len(att.cycles))]
            rows.append(row)
        return rows


def attractor_census(step: Callable[[np.ndarray], np.ndarray], x0: np.ndarray,
                     n_transient: int, tols: Sequence[float], max_period: int = 100,
                     merge_factor: float = 10.0) -> Census:
    """Run the orbits from ``x0`` (n, d) ``n_transient`` steps, then classify them with
    :func:`find_attractors` at every tolerance of ``tols`` (orbits merged into one attractor
    within ``merge_factor · tol``), and measure each orbit's periodicity residual."""
    tols = tuple(sorted(float(t) for t in tols))
    x, tail = run_orbits(step, x0, n_transient, 2 * max_period)
    res = periodicity_residual(tail, max_period)
    # classified on the next 2·max_period steps (what find_attractors(step, x, n_transient=0)
    # records); the map is deterministic, so those steps are run once for every tolerance
    x_next, tail_next = run_orbits(step, x, 0, 2 * max_period)
    res_next = periodicity_residual(tail_next, max_period)
    by_tol = tuple(classify_orbits(x_next, tail_next, res_next, t, merge_factor * t)
                   for t in tols)
    return Census(tols, by_tol, res.min(axis=1), res.argmin(axis=1) + 1,
                  np.linalg.norm(tail[-1], axis=1))
