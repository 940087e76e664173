"""Adam training of a ctrnn on a task: masked L2 loss, gradient clipping, validation curves,
periodic checkpoints and bitwise resume (CPU).

Loss per batch: ``Σ mask (z - target)² / Σ mask + rate_l2 · mean(r²)``. Trials come from the
task generator with a numpy generator seeded by ``seed``; the recurrent noise from a torch
generator seeded by ``seed + 1``; the validation batch (and its noise) is fixed by the seed, so
validation losses of one run are comparable across steps. A checkpoint holds parameters, Adam
state, the step, the curves and both generators' states; training resumed from it continues
with the very numbers the uninterrupted run would have drawn.

A NaN or Inf loss, gradient or parameter stops training at once with a
:class:`~neurorec.core.errors.DivergenceError` naming the step and the tensor; the last checkpoint
written (all finite) is left in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from neurorec.core.errors import DivergenceError
from neurorec.families.ctrnn.model import CTRNN
from neurorec.families.ctrnn.spec import TrainingSpec
from neurorec.fit.checkpoint import (
    CHECKPOINT_NAME,
    generator_states,
    load_checkpoint,
    restore_generators,
    save_checkpoint,
)
from neurorec.tasks.base import Task, Trials


@dataclass
class History:
    """Learning curves: ``train_loss`` every step; validation every ``validate_every``."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass
class TrainResult:
    model: CTRNN
    history: History
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


def _check_finite(step: int, loss: torch.Tensor | None, model: CTRNN, what: str) -> None:
    if loss is not None and not torch.isfinite(loss):
        raise DivergenceError(f"training step {step}: loss is {float(loss)}; the last good "
                              "checkpoint is kept (lower training.learning_rate or init.gain)")
    for name, p in model.named_parameters():
        t = p.grad if what == "gradient" else p
        if t is not None and not torch.isfinite(t).all():
            bad = "nan" if torch.isnan(t).any() else "inf"
            raise DivergenceError(f"training step {step}: {what} of {name} contains {bad}; "
                                  "the last good checkpoint is kept")


def train(model: CTRNN, task: Task, config: TrainingSpec, seed: int = 0,
          work_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
          callback: Callable[[int, CTRNN, float], None] | None = None) -> TrainResult:
    """Train ``model``'s trainable weights on ``task`` for ``config.n_steps`` steps.

    work_dir: where ``checkpoint.pt`` is written every ``config.checkpoint_every`` steps and
    at the end; resume: continue from it (a missing checkpoint is a DataError).
    callback: called as ``callback(step, model, loss)`` after every step (logging, or an
    interruption in tests). Returns the trained model and its curves.
    """
    device = model.w_out.device
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    val_trials = task.generate(config.validation_trials, np.random.default_rng([seed, 1]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=config.learning_rate)
    history = History()
    start_step, resumed_from = 0, None
    ckpt = Path(work_dir) / CHECKPOINT_NAME if work_dir is not None else None
    if resume:
        if ckpt is None:
            raise ValueError("resume needs a work_dir")
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        restore_generators(state["generators"], gen, rng)
        history = History(**state["history"])
        start_step = resumed_from = state["step"]

    def save(step: int) -> None:
        if ckpt is not None:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                   "generators": generator_states(gen, rng), "step": step,
                                   "history": history.as_dict(), "seed": seed})

    t0 = time.perf_counter()
    bar = tqdm(total=config.n_steps, initial=start_step, disable=not progress,
               desc=f"train {model.spec.name}", unit="step", leave=False)
    try:
        for step in range(start_step + 1, config.n_steps + 1):
            trials = task.generate(config.batch_size, rng)
            optimiser.zero_grad(set_to_none=True)
            loss, _ = batch_loss(model, trials, config.rate_l2, gen)
            _check_finite(step, loss, model, "value")
            loss.backward()
            _check_finite(step, None, model, "gradient")
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimiser.step()
            _check_finite(step, None, model, "value")
            history.step.append(step)
            history.train_loss.append(loss.item())
            if step % config.validate_every == 0 or step == config.n_steps:
                vl, va = evaluate(model, task, val_trials, seed + 2)
                history.val_step.append(step)
                history.val_loss.append(vl)
                history.val_accuracy.append(va)
                bar.set_postfix(loss=f"{loss.item():.4g}", val=f"{vl:.4g}", acc=f"{va:.2f}")
            if step % config.checkpoint_every == 0 or step == config.n_steps:
                save(step)
            bar.update(1)
            if callback is not None:
                callback(step, model, loss.item())
    finally:
        bar.close()
    return TrainResult(model, history, config.n_steps, time.perf_counter() - t0, resumed_from)
