"""The task contract: a protocol spec becomes batches of (inputs, targets, mask) trials.

Arrays are trial × time × channel on the network's clock (step ``timing.dt``); ``inputs[:, t]``
drives the step that produces ``rates[:, t]`` and ``outputs[:, t]``. The mask is 1 where the
output is scored (loss and accuracy), 0 elsewhere (fixation, delays, warm-up).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from neurorec.core.errors import SpecError
from neurorec.spec.base import Spec

TASKS: dict[str, type[Task]] = {}


@dataclass(frozen=True)
class Trials:
    """One batch of trials.

    inputs: (n_trials, n_steps, n_inputs); targets, mask: (n_trials, n_steps, n_outputs);
    conditions: per-trial labels, each an (n_trials,) array (e.g. ``level``, ``choice``).
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    dt: float
    conditions: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return self.inputs.shape[1]

    @property
    def time(self) -> np.ndarray:
        """(n_steps,) end of each step, seconds."""
        return (np.arange(self.n_steps) + 1) * self.dt


def register_task(kind: str) -> Callable[[type[Task]], type[Task]]:
    def decorate(cls: type[Task]) -> type[Task]:
        TASKS[kind] = cls
        cls.kind = kind
        return cls

    return decorate


def make_task(spec: Spec) -> Task:
    """The generator for a task protocol spec (``kind: task_*``)."""
    kind = getattr(spec, "kind", None)
    if kind not in TASKS:
        known = ", ".join(sorted(TASKS))
        raise SpecError(f"protocol: kind {kind!r} is not a task (known: {known})")
    return TASKS[kind](spec)


class Task(ABC):
    """A task: channels, a batch generator and a score."""

    kind: ClassVar[str]
    n_inputs: int
    n_outputs: int

    def __init__(self, spec: Spec):
        self.spec = spec
        self.dt = spec.timing.dt

    def steps(self, seconds: float) -> int:
        """Whole steps in ``seconds`` (rounded to the nearest)."""
        return round(seconds / self.dt)

    def generate(self, n_trials: int, rng: np.random.Generator) -> Trials:
        """``n_trials`` trials drawn with ``rng``; input noise added last."""
        trials = self._generate(n_trials, rng)
        sd = self.spec.timing.input_noise
        if sd > 0:
            noisy = trials.inputs + sd * rng.standard_normal(trials.inputs.shape)
            trials = Trials(noisy, trials.targets, trials.mask, trials.dt, trials.conditions)
        return trials

    @abstractmethod
    def _generate(self, n_trials: int, rng: np.random.Generator) -> Trials: ...

    @abstractmethod
    def accuracy(self, outputs: np.ndarray, trials: Trials) -> float:
        """Fraction correct in [0, 1] of ``outputs`` (n_trials, n_steps, n_outputs)."""


def masked_mean(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n_trials, n_channels) mean of ``x`` over the scored steps of each trial and channel."""
    return (x * mask).sum(1) / np.maximum(mask.sum(1), 1)
