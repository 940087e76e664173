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

    return Example(make=lambda: TaskRNN(spec, seed=0),
                   fit=lambda model: model.fit(perception_task(), progress=False),
                   score=lambda model: model.score(perception_task()), simulate=simulate)
