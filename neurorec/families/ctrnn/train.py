"""Adam training of a ctrnn on a task: masked L2 loss, gradient clipping, validation curves,
periodic checkpoints and bitwise resume (CPU).

Loss per batch: ``Σ mask (z - target)² / Σ mask + rate_l2 · mean(r²)``. Trials come from the
task generator with a numpy generator seeded by ``seed``; the recurrent noise from a torch
generator seeded by ``seed + 1``; the validation batch (and its noise) is fixed by the seed, so
validation losses of one run are comparable across steps. A checkpoint holds parameters, Adam
state, the step, the curves and both generators' states; training resumed from it continues
with the very numbers the uninterrupted run would have drawn.

A NaN or Inf loss, gradient or parameter stops training at once with a
:class:`~neurorec.core.errors.DivergenceError` naming the step and the tensor (the engine's
:class:`~neurorec.fit.engine.Stepper`); the last checkpoint written (all finite) is left in
place. A SIGTERM inside the loop (with :func:`neurorec.fit.interrupt.handle_signals` installed)
stops it at the next checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from neurorec.families.ctrnn.model import CTRNN
from neurorec.families.ctrnn.spec import TrainingSpec
from neurorec.fit import interrupt
from neurorec.fit.checkpoint import CHECKPOINT_NAME
from neurorec.fit.engine import Stepper, run_loop
from neurorec.fit.run import FitLog, Run
from neurorec.tasks.base import Task, Trials

#: the task RNN's learning curves, in its :class:`~neurorec.fit.run.FitLog`'s ``extras``:
#: ``train_loss`` every ``step``; ``val_loss`` and ``val_accuracy`` every ``validate_every``
#: (at ``val_step``)
CURVES = ("step", "train_loss", "val_step", "val_loss", "val_accuracy")


def task_log(curves: dict[str, list] | None = None) -> FitLog:
    """A :class:`~neurorec.fit.run.FitLog` holding the curves :data:`CURVES` (empty, or
    ``curves`` as saved in ``history.json``)."""
    curves = curves or {}
    return FitLog(optimizer="Adam", extras={k: list(curves.get(k, [])) for k in CURVES})


@dataclass
class TrainResult:
    """The trained network and its run (``history``: the :class:`FitLog`, curves readable
    as ``history.train_loss`` etc.)."""

    model: CTRNN
    history: FitLog
    n_steps: int
    seconds: float
    resumed_from: int | None


def to_tensors(trials: Trials, model: CTRNN) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, mask) on the model's device and dtype."""
    p = model.w_out
    return tuple(torch.as_tensor(a, dtype=p.dtype, device=p.device)
                 for a in (trials.inputs, trials.targets, trials.mask))


def masked_l2(outputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the scored (mask = 1) entries; all (B, T, O)."""
    return ((outputs - targets) ** 2 * mask).sum() / mask.sum().clamp_min(1.0)


def batch_loss(model: CTRNN, trials: Trials, rate_l2: float,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss of one batch and the outputs (B, T, O)."""
    inputs, targets, mask = to_tensors(trials, model)
    rates, outputs = model(inputs, generator=generator)
    loss = masked_l2(outputs, targets, mask)
    if rate_l2 > 0:
        loss = loss + rate_l2 * (rates ** 2).mean()
    return loss, outputs


def evaluate(model: CTRNN, task: Task, trials: Trials, seed: int) -> tuple[float, float]:
    """(loss, accuracy) on fixed ``trials`` with noise drawn from ``seed``."""
    gen = torch.Generator(device=model.w_out.device).manual_seed(seed)
    with torch.no_grad():
        loss, outputs = batch_loss(model, trials, 0.0, gen)
    return float(loss), task.accuracy(outputs.double().cpu().numpy(), trials)


def train(model: CTRNN, task: Task, config: TrainingSpec, seed: int = 0,
          run: Run | None = None, progress: bool = True,
          callback: Callable[[int, CTRNN, float], None] | None = None) -> TrainResult:
    """Train ``model``'s trainable weights on ``task`` for ``config.n_steps`` steps.

    Runs on :mod:`neurorec.fit.engine`: each iteration is one :class:`~neurorec.fit.engine.
    Stepper` step (divergence guard, clipping), :func:`~neurorec.fit.engine.run_loop` owns
    validation, checkpoints and resume.

    run: its checkpoint folder is where ``checkpoint.pt`` is written every
    ``config.checkpoint_every`` steps and at the end; ``run.resume``: continue from it (a
    missing checkpoint is a DataError).
    callback: called as ``callback(step, model, loss)`` after every step (logging, or an
    interruption in tests). Returns the trained model and its curves.
    """
    device = model.w_out.device
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    val_trials = task.generate(config.validation_trials, np.random.default_rng([seed, 1]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=config.learning_rate)
    stepper = Stepper(params, optimiser, grad_clip=config.grad_clip, name="training")
    history = task_log()
    curves = history.extras

    def body(step: int) -> dict[str, float]:
        trials = task.generate(config.batch_size, rng)
        loss = stepper.step(batch_loss(model, trials, config.rate_l2, gen)[0],
                            where=f"step {step}")
        curves["step"].append(step)
        curves["train_loss"].append(loss)
        return {"loss": loss}

    def validate() -> float:
        vl, va = evaluate(model, task, val_trials, seed + 2)
        curves["val_step"].append(len(curves["step"]))
        curves["val_loss"].append(vl)
        curves["val_accuracy"].append(va)
        return vl

    def get_state() -> dict:
        return {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                "history": {k: list(v) for k, v in curves.items()}, "seed": seed}

    def set_state(state: dict) -> None:
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        for k, v in state["history"].items():
            curves[k] = list(v)

    def after(step: int, row: dict[str, float]) -> None:
        if callback is not None:
            callback(step, model, row["loss"])
        if step % config.checkpoint_every == 0 or step == config.n_steps:
            interrupt.raise_if_requested(
                f"at step {step}" + (f"; checkpoint saved in {work_dir}; run the same command "
                                     "with --resume to continue" if work_dir is not None
                                     else " (no checkpointing)"))

    work_dir = None if run is None else run.checkpoint_dir
    with interrupt.deferring():
        log = run_loop(config.n_steps, body, get_state=get_state, set_state=set_state,
                       torch_generator=gen, numpy_generator=rng,
                       checkpoint=None if run is None else run.path(CHECKPOINT_NAME),
                       checkpoint_every=config.checkpoint_every,
                       resume=run is not None and run.resume,
                       validate=validate, validate_every=config.validate_every,
                       progress=progress, desc=f"train {model.spec.name}", unit="step",
                       callback=after)
    history.n_iter, history.history, history.validation = log.n_iter, log.history, log.validation
    history.fit_time_s, history.reason, history.resumed_from = (log.fit_time_s, log.reason,
                                                                log.resumed_from)
    return TrainResult(model, history, config.n_steps, log.fit_time_s, log.resumed_from)
