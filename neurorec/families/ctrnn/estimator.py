"""The ``ctrnn`` kind as an :class:`~neurorec.families.base.Estimator`: a rate network trained
on a task protocol.

``TaskRNN(spec, seed=...).fit(task)`` builds the :class:`~neurorec.families.ctrnn.model.CTRNN`
for the task's channels (weights drawn from ``seed``) and trains it with
:func:`~neurorec.families.ctrnn.train.train` (the shared engine); ``score(task)`` is the task
loss on the validation trials that training tracked (fixed by ``seed``, lower is better);
``simulate(task, n_trials, seed)`` runs seeded trials through the trained network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch

from neurorec.core.errors import DataError, SpecError
from neurorec.families.base import Estimator
from neurorec.families.ctrnn.model import CTRNN, build_ctrnn
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.fit.run import Run
from neurorec.spec.base import Spec
from neurorec.tasks.base import Task, Trials


def as_task(task: Task | Spec) -> Task:
    """A task generator from a generator or a task protocol spec."""
    if isinstance(task, Task):
        return task
    from neurorec.tasks import make_task

    return make_task(task)


def check_task(spec: CTRNNSpec, task: Task) -> None:
    """The task's clock must be the network's."""
    if abs(task.dt - spec.dt) > 1e-12 * spec.dt:
        raise SpecError(f"{task.spec.name}: timing.dt: {task.dt} s differs from the network's "
                        f"dt {spec.dt} s (use --set dt=... or edit the protocol)")


def run_network(network: CTRNN, trials: Trials, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rates, outputs) of ``trials`` through ``network`` as float64 numpy, the recurrent noise
    drawn from a torch generator seeded with ``seed``."""
    p = network.w_out
    gen = torch.Generator(device=p.device).manual_seed(seed)
    with torch.no_grad():
        r, z = network(torch.as_tensor(trials.inputs, dtype=p.dtype, device=p.device),
                       generator=gen)
    return r.double().cpu().numpy(), z.double().cpu().numpy()


def activity(rates: np.ndarray, outputs: np.ndarray, trials: Trials) -> dict[str, np.ndarray]:
    """What ``activity.npz`` holds for a simulation of ``trials``."""
    return {"rates": rates, "time": trials.time, "outputs": outputs, "inputs": trials.inputs,
            "targets": trials.targets, "mask": trials.mask}


class TaskRNN(Estimator):
    """A ``ctrnn`` spec's network trained on a task (masked L2, Adam).

    Args:
        spec: validated ``ctrnn`` spec (``training`` configures the fit).
        device: ``"cpu"`` or ``"cuda"``.
        seed: seeds the weights, the training batches and noise, and the validation trials.
        dtype: ``"float32"`` / ``"float64"``; None: ``spec.training.dtype``.

    Learned attributes: ``network_`` (the trained :class:`CTRNN`), ``fit_report_`` (its
    :class:`~neurorec.fit.run.FitLog`), ``history_`` (the learning curves as a dict of lists,
    ``history.json``), ``n_steps_``, ``train_seconds_``, ``resumed_from_``.
    """

    fitted_attribute: ClassVar[str] = "network_"

    def __init__(self, spec: CTRNNSpec, *, device: str = "cpu", seed: int = 0,
                 dtype: str | None = None):
        self.spec = spec
        self.device = device
        self.seed = seed
        self.dtype = dtype

    def build(self, task: Task | Spec) -> CTRNN:
        """The untrained network for ``task``'s channels (weights drawn from ``seed``)."""
        task = as_task(task)
        check_task(self.spec, task)
        return build_ctrnn(self.spec, task.n_inputs, task.n_outputs, seed=self.seed,
                           device=str(self.device), dtype=self.dtype)

    def fit(self, task: Task | Spec, *, progress: bool = True, run: Run | None = None,
            callback: Callable[[int, CTRNN, float], None] | None = None) -> TaskRNN:
        """Train on ``task`` for ``spec.training.n_steps`` steps (checkpoints in
        ``run.checkpoint_dir``; ``run.resume`` continues from them bitwise on CPU)."""
        from neurorec.families.ctrnn.train import train

        task = as_task(task)
        network = self.build(task)
        result = train(network, task, self.spec.training, seed=self.seed, run=run,
                       progress=progress, callback=callback)
        self.network_ = result.model
        self.fit_report_ = result.history
        self.history_ = {k: list(v) for k, v in result.history.extras.items()}
        self.n_steps_ = result.n_steps
        self.train_seconds_ = result.seconds
        self.resumed_from_ = result.resumed_from
        return self

    def _check_channels(self, task: Task) -> Task:
        """``task``, or DataError unless its channels are the trained network's."""
        net = self.network_
        have = (net.w_in.shape[1], net.w_out.shape[0])
        if (task.n_inputs, task.n_outputs) != have:
            raise DataError(f"{task.spec.name}: channels: the network was trained with "
                            f"{have[0]} inputs and {have[1]} outputs, the task has "
                            f"{task.n_inputs} and {task.n_outputs}")
        return task

    def validation_trials(self, task: Task) -> Trials:
        """The fixed validation batch training tracked."""
        return task.generate(self.spec.training.validation_trials,
                             np.random.default_rng([self.seed, 1]))

    def evaluate(self, task: Task | Spec) -> tuple[float, float]:
        """(task loss, accuracy) on the validation trials (noise drawn from ``seed + 2``)."""
        from neurorec.families.ctrnn.train import evaluate

        self.check_fitted()
        task = self._check_channels(as_task(task))
        return evaluate(self.network_, task, self.validation_trials(task), self.seed + 2)

    def score(self, task: Task | Spec) -> float:
        """Task loss (masked mean squared error) on the validation trials; lower is better."""
        return self.evaluate(task)[0]

    def simulate(self, task: Task | Spec, n_trials: int = 16, seed: int = 0
                 ) -> dict[str, np.ndarray]:
        """``n_trials`` trials of ``task`` (drawn from ``[seed, 3]``) through the trained
        network, noise from ``seed``: ``rates``, ``outputs``, ``time`` and the trials'
        ``inputs``, ``targets``, ``mask``."""
        self.check_fitted()
        task = self._check_channels(as_task(task))
        trials = task.generate(n_trials, np.random.default_rng([seed, 3]))
        return activity(*run_network(self.network_, trials, seed), trials)

    def sample(self, n: int, *, seed: int, like: Task | Spec) -> np.ndarray:
        """(n, n_steps, n_units) firing rates of ``n`` trials of the task ``like`` (its trials
        drawn from ``[seed, 3]``, the network's noise from ``seed``): the ``rates`` of
        :meth:`simulate`, the family's uniform ``sample(n, *, seed, like)``."""
        return self.simulate(like, n_trials=n, seed=seed)["rates"]

    def weights(self) -> dict[str, np.ndarray]:
        """The trained effective weights (see :meth:`CTRNN.weights`)."""
        self.check_fitted()
        return self.network_.weights()
