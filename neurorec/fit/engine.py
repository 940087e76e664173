"""One training engine for every gradient-trained family.

Two small pieces, composed by each family:

- :class:`Stepper`: one optimiser step — ``zero_grad``, ``backward``, a divergence guard on
  the loss, the gradients and the updated parameters (NaN/Inf raise
  :class:`~neurorec.core.errors.DivergenceError` naming the tensor; the last good checkpoint is
  kept), gradient-norm clipping, ``optimizer.step()``.
- :func:`run_loop`: the outer loop over iterations (an iteration is whatever the family makes
  it: one optimiser step, or an epoch of minibatches): progress bar, curves, validation every
  ``validate_every`` iterations with early stopping (``patience``) and the best state kept,
  an optional wall-clock budget, and atomic checkpoints (:mod:`neurorec.fit.checkpoint`) from
  which ``resume=True`` continues **bitwise** on CPU — the checkpoint holds the family's state
  (parameters, optimiser), every random generator the body draws from, the curves and the
  iteration counter.

The body of an iteration must take all its randomness from the generators passed to
:func:`run_loop`; that is what makes a resumed run identical to an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from neurorec.core.errors import DataError, DivergenceError
from neurorec.fit.checkpoint import (
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)
from neurorec.fit.run import FitLog


class Stepper:
    """Optimiser step with a divergence guard and gradient clipping.

    Args:
        params: the trained tensors (what ``optimizer`` updates).
        optimizer: any ``torch.optim.Optimizer`` over ``params``.
        grad_clip: max global gradient norm, or None for no clipping.
        name: the run's name in error messages.
    """

    def __init__(self, params: Iterable[torch.Tensor], optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None, name: str = "train"):
        self.params = [p for p in params if p.requires_grad]
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.name = name

    def _at(self, where: str) -> str:
        return f"{self.name}: {where}" if where else self.name

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def _guard(self, where: str, what: str, tensors: Sequence[torch.Tensor | None]) -> None:
        for i, t in enumerate(tensors):
            if t is not None and not torch.isfinite(t).all():
                bad = "nan" if torch.isnan(t).any() else "inf"
                raise DivergenceError(f"{self._at(where)}: {what} of parameter {i} "
                                      f"(shape {tuple(t.shape)}) contains {bad}; the last "
                                      "good checkpoint is kept")

    def step(self, loss: torch.Tensor, where: str = "") -> float:
        """Back-propagate ``loss`` (gradients zeroed first), clip, step; returns the loss.

        Raises DivergenceError when the loss, a gradient or an updated parameter is not
        finite (before the optimiser touches the parameters, for the first two)."""
        if not torch.isfinite(loss):
            raise DivergenceError(f"{self._at(where)}: loss became {loss.item()}; the last "
                                  "good checkpoint is kept")
        self.zero_grad()
        loss.backward()
        self._guard(where, "gradient", [p.grad for p in self.params])
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self._guard(where, "value", self.params)
        return float(loss.detach())


def run_loop(n_iter: int, body: Callable[[int], dict[str, float]], *,
             get_state: Callable[[], dict[str, Any]],
             set_state: Callable[[dict[str, Any]], None],
             torch_generator: torch.Generator | None = None,
             numpy_generator: np.random.Generator | None = None,
             checkpoint: str | Path | None = None, checkpoint_every: int = 1,
             resume: bool = False,
             validate: Callable[[], float] | None = None, validate_every: int = 1,
             patience: int | None = None, max_seconds: float | None = None,
             progress: bool = True, desc: str = "train", unit: str = "it",
             callback: Callable[[int, dict[str, float]], None] | None = None) -> FitLog:
    """Run ``body(i)`` for ``i = 1 .. n_iter`` with checkpoints, validation and early stopping.

    Args:
        n_iter: iterations in all (a resumed run continues to the same total).
        body: one iteration; returns scalars to log (e.g. ``{"loss": ...}``).
        get_state / set_state: the family's own state (module ``state_dict``, optimiser
            ``state_dict``, anything else that changes) as a ``torch.save``-able dict, and
            how to put it back. Used for checkpoints and to keep the best state.
        torch_generator / numpy_generator: every generator the body draws from; saved and
            restored so a resumed run is bitwise the uninterrupted one.
        checkpoint: file written atomically every ``checkpoint_every`` iterations, at the
            end and when stopping early; None: no checkpoints.
        resume: continue from ``checkpoint`` (a missing file is a DataError).
        validate: held-out objective (lower is better), every ``validate_every`` iterations
            and at the last; with ``patience`` the loop stops after that many validations
            without improvement and the best state is restored.
        max_seconds: stop (``reason="budget"``) once this much wall time has passed.
        callback: called as ``callback(i, row)`` after every iteration.

    Returns:
        the run's :class:`~neurorec.fit.run.FitLog`: ``history`` one dict per iteration
        (what the body returned, plus ``iteration`` and ``seconds``); ``validation``
        ``(iteration, value)`` pairs; ``best_iteration`` the iteration whose state was kept
        (early stopping), else the last; ``reason`` ``"n_iter"``, ``"early_stopping"`` or
        ``"budget"``; ``resumed_from`` the iteration a resumed run started after, else None.
    """
    log = FitLog(reason="n_iter", best_value=math.inf, best_iteration=0, optimizer="")
    best_state: dict[str, Any] | None = None
    since_best = 0
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if resume:
        if path is None:
            raise DataError(f"{desc}: resume needs a checkpoint path")
        saved = load_checkpoint(path)
        set_state(saved["state"])
        restore_generators(saved["generators"], torch_generator, numpy_generator)
        log = FitLog.from_dict(saved["log"])
        best_state, since_best = saved["best_state"], saved["since_best"]
        start = log.resumed_from = saved["iteration"]
        if saved.get("finished") and log.reason != "n_iter":
            # stopped early (budget, early stopping): it trains no further; a run that ran
            # to its n_iter continues when resumed with a larger one
            n_iter = start

    def save(i: int, finished: bool) -> None:
        if path is not None:
            save_checkpoint(path, {"state": get_state(),
                                   "generators": generator_states(torch_generator,
                                                                  numpy_generator),
                                   "log": log.to_dict(), "best_state": best_state,
                                   "since_best": since_best, "iteration": i,
                                   "finished": finished})

    t0 = time.perf_counter() - log.fit_time_s
    bar = tqdm(total=n_iter, initial=start, disable=not progress, desc=desc, unit=unit,
               leave=False)
    i = start
    try:
        for i in range(start + 1, n_iter + 1):
            t_it = time.perf_counter()
            row = {k: float(v) for k, v in body(i).items()}
            row.update(iteration=i, seconds=time.perf_counter() - t_it)
            log.history.append(row)
            stop = None
            if validate is not None and (i % validate_every == 0 or i == n_iter):
                value = float(validate())
                log.validation.append((i, value))
                if value < log.best_value:
                    log.best_value, log.best_iteration, since_best = value, i, 0
                    if patience is not None:
                        best_state = copy.deepcopy(get_state())
                else:
                    since_best += 1
                    if patience is not None and since_best >= patience:
                        stop = "early_stopping"
                bar.set_postfix(val=f"{value:.4g}", refresh=False)
            elif "loss" in row:
                bar.set_postfix(loss=f"{row['loss']:.4g}", refresh=False)
            if stop is None and max_seconds is not None and (
                    time.perf_counter() - t0 > max_seconds):
                stop = "budget"
            log.fit_time_s = time.perf_counter() - t0
            log.n_iter = i
            finished = stop is not None or i == n_iter
            if stop is not None:
                log.reason = stop
            if finished and stop == "early_stopping" and best_state is not None:
                set_state(best_state)
            if path is not None and (finished or i % checkpoint_every == 0):
                save(i, finished)
            bar.update(1)
            if callback is not None:
                callback(i, row)
            if stop is not None:
                break
    finally:
        bar.close()
    if validate is None or patience is None or log.reason != "early_stopping":
        log.best_iteration = i
    log.n_iter = i
    log.fit_time_s = time.perf_counter() - t0
    return log


__all__ = ["Stepper", "run_loop"]
