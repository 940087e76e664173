"""The ctrnn family's row in the conformance suite: a tiny network trained briefly on the
study's perception task (``stimuli/task_perception.yaml``, shortened)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from neurorec.families.base import Example

TASK_FILE = Path(__file__).resolve().parents[3] / "stimuli" / "task_perception.yaml"


@cache
def perception_task():
    """The perception task with 300 ms trials (a short, real protocol)."""
    from neurorec.spec import load_stimulus_spec
    from neurorec.tasks import make_task

    return make_task(load_stimulus_spec(TASK_FILE, ["duration=0.3", "response_delay=0.1"]))


SPEC = {"kind": "ctrnn", "n_units": 12, "sigma": 0.05, "train": ["w_rec", "w_out", "b"],
        "training": {"n_steps": 25, "batch_size": 8, "learning_rate": 0.04,
                     "validate_every": 25, "validation_trials": 16, "checkpoint_every": 25}}


@cache
def decision_task():
    """The decision task (2 inputs, 2 outputs): the wrong task for a perception network."""
    from neurorec.spec import load_stimulus_spec
    from neurorec.tasks import make_task

    return make_task(load_stimulus_spec(TASK_FILE.with_name("task_decision.yaml")))


def constant_output_loss() -> float:
    """The task loss of the best constant output on the validation trials of a seed-0 model
    (the masked variance of the targets): the chance level a trained network must beat."""
    trials = perception_task().generate(SPEC["training"]["validation_trials"],
                                        np.random.default_rng([0, 1]))
    m, y = trials.mask.astype(float), trials.targets
    best = (m * y).sum((0, 1)) / m.sum((0, 1))
    return float(((y - best) ** 2 * m).sum() / m.sum())


def ctrnn_example() -> Example:
    def sample(model, seed: int) -> np.ndarray:
        return model.sample(4, seed=seed, like=perception_task())

    def brian2(model) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free rates of the trained network on random inputs: torch vs Brian 2."""
        import torch

        from neurorec.families.ctrnn.brian2 import simulate_brian2
        from neurorec.families.ctrnn.model import CTRNN

        quiet = model.spec.model_copy(update={"sigma": 0.0})
        net = model.network_
        twin = CTRNN(quiet, net.w_in.shape[1], net.w_out.shape[0], seed=0, dtype="float64")
        twin.load_state_dict({k: v.double() for k, v in net.state_dict().items()})
        u = np.random.default_rng(1).uniform(0, 1, size=(2, 30, net.w_in.shape[1]))
        with torch.no_grad():
            rates, _ = twin(torch.tensor(u))
        return rates.numpy(), simulate_brian2(quiet, twin.weights(), u)[0]

    n_steps = round(perception_task().spec.duration / perception_task().dt)  # 300 ms / 10 ms
    return Example(spec=SPEC, data=lambda: (perception_task(), perception_task()),
                   chance=constant_output_loss(), wrong=lambda _: decision_task(),
                   sample=sample, sample_shape=(4, n_steps, SPEC["n_units"]),
                   brian2=brian2, brian2_atol=1e-6)
