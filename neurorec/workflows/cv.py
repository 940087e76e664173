"""Penalty strengths chosen by K-fold cross-validation over the training trials.

``neurorec fit SPEC --cv K``: the training trials are split into K folds stratified by
condition (every condition's trials dealt round-robin after a seeded shuffle); for every
strength on the grid the model is fitted on K − 1 folds and scored by the held-out fold's
log-likelihood (nats, summed over its bins and units); the strength with the highest mean
over folds is chosen, and the model is refitted on all training trials with it. Along the
grid (strongest penalty first) every fit starts from the previous strength's solution on the
same fold, which makes the path cheap for the batched Newton solver.

The grid is over ``penalty.l2`` (history, coupling, in-bin and latent weights) and, where the
spec uses L1 (``penalty.l1 > 0``), over ``penalty.l1`` too (the product of both grids).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.recording import BinnedTrials
from neurorec.families import model_for
from neurorec.spec.base import Spec

#: default strengths (per bin and neuron), strongest first
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)
L1_GRID = (1e-2, 1e-3, 1e-4, 1e-5, 0.0)


def cv_folds(condition: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """(n_trials,) fold index in 0..k-1, stratified by condition.

    Each condition's trials are shuffled with ``seed`` and dealt to the folds in turn, so
    every fold holds ⌊n_c / k⌋ or ⌈n_c / k⌉ trials of every condition ``c``.
    """
    condition = np.asarray(condition)
    if k < 2:
        raise DataError(f"--cv: need at least 2 folds, got {k}")
    if len(condition) < k:
        raise DataError(f"--cv: {k} folds need at least {k} training trials, got "
                        f"{len(condition)}")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(condition), dtype=np.int64)
    offset = 0
    for c in np.unique(condition):
        idx = rng.permutation(np.flatnonzero(condition == c))
        fold[idx] = (offset + np.arange(len(idx))) % k
        offset += len(idx)  # the next condition starts where this one left off: balanced folds
    return fold


@dataclass
class CVResult:
    """``grid``: one dict of penalty fields per point; ``mean_heldout_ll``: (n_grid,) mean
    over folds of the held-out log-likelihood (nats); ``fold_heldout_ll``: (n_grid, k);
    ``chosen``: the grid point with the highest mean."""

    grid: list[dict[str, float]]
    mean_heldout_ll: np.ndarray
    fold_heldout_ll: np.ndarray
    chosen: dict[str, float]
    k: int

    def to_dict(self) -> dict:
        return {"grid": self.grid, "mean_heldout_ll": self.mean_heldout_ll.tolist(),
                "fold_heldout_ll": self.fold_heldout_ll.tolist(), "chosen": self.chosen,
                "k": self.k}


def penalty_grid(spec: Spec) -> list[dict[str, float]]:
    """The grid points (strongest first) for ``spec``'s penalty."""
    if not hasattr(spec, "penalty"):
        raise DataError(f"--cv: kind '{spec.kind}' has no penalty to cross-validate")
    l1 = getattr(spec.penalty, "l1", None)
    if l1 is None:  # a penalty without L1 (the PLDS's): the L2 grid alone
        return [{"l2": l2} for l2 in L2_GRID]
    l1s = L1_GRID if l1 > 0 else (l1,)
    return [{"l2": l2, "l1": l1} for l1, l2 in itertools.product(l1s, L2_GRID)]


def with_penalty(spec: Spec, point: dict[str, float]) -> Spec:
    """``spec`` with its penalty fields replaced by ``point``."""
    return spec.model_copy(update={"penalty": spec.penalty.model_copy(update=point)})


def cross_validate(spec: Spec, train: BinnedTrials, k: int, seed: int = 0,
                   device: str = "cpu", grid: list[dict[str, float]] | None = None,
                   progress: bool = False) -> CVResult:
    """K-fold CV of the penalty strengths on ``train`` (see the module docstring)."""
    import sys

    from tqdm.auto import tqdm

    grid = penalty_grid(spec) if grid is None else grid
    fold = cv_folds(train.condition, k, seed)
    scores = np.zeros((len(grid), k))
    # one bar over the K × grid fits (stderr); the fits' own bars stay off under it
    bar = tqdm(total=k * len(grid), desc=f"--cv {k}", unit="fit", disable=not progress,
               file=sys.stderr, leave=False)
    for f in range(k):
        fit_on, score_on = train.subset(fold != f), train.subset(fold == f)
        warm = None
        for g, point in enumerate(grid):
            bar.set_postfix_str(f"fold {f + 1}, " + ", ".join(f"{n}={v:g}"
                                                              for n, v in point.items()))
            model = model_for(with_penalty(spec, point), device=device, seed=seed)
            model.warm_start_params = warm
            model.fit(fit_on, progress=False)
            scores[g, f] = model.log_likelihood(score_on)
            warm = model.params_
            bar.update()
    bar.close()
    mean = scores.mean(axis=1)
    best = int(np.argmax(np.where(np.isfinite(mean), mean, -np.inf)))
    return CVResult(grid, mean, scores, dict(grid[best]), k)


__all__ = ["CVResult", "cross_validate", "cv_folds", "penalty_grid", "with_penalty"]
