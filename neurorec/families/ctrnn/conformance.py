"""The ctrnn family's row in the conformance suite: a tiny network trained briefly on the
study's perception task (``stimuli/task_perception.yaml``, shortened)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from neurorec.families.base import Example
from neurorec.spec.load import validate_spec

TASK_FILE = Path(__file__).resolve().parents[3] / "stimuli" / "task_perception.yaml"


@cache
def perception_task():
    """The perception task with 300 ms trials (a short, real protocol)."""
    from neurorec.spec import load_stimulus_spec
    from neurorec.tasks import make_task

    return make_task(load_stimulus_spec(TASK_FILE, ["duration=0.3", "response_delay=0.1"]))


def ctrnn_example() -> Example:
    spec = validate_spec({"kind": "ctrnn", "n_units": 12, "sigma": 0.05,
                          "train": ["w_rec", "w_out", "b"],
                          "training": {"n_steps": 50, "batch_size": 8, "learning_rate": 0.02,
                                       "validate_every": 25, "validation_trials": 16,
                                       "checkpoint_every": 25}}, "<conformance>")
    from neurorec.families.ctrnn.estimator import TaskRNN

    def simulate(model, seed: int) -> np.ndarray:
        return model.simulate(perception_task(), n_trials=4, seed=seed)["rates"]

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

    return Example(make=lambda: TaskRNN(spec, seed=0),
                   fit=lambda model: model.fit(perception_task(), progress=False),
                   score=lambda model: model.score(perception_task()), simulate=simulate,
                   brian2=brian2, brian2_atol=1e-6)
