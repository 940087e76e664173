"""The ctrnn_obs family's row in the conformance suite: a tiny network fitted briefly to the
V1 session the GLM rows use (:func:`neurorec.families.glm.conformance.v1_small`)."""

from __future__ import annotations

import numpy as np

from neurorec.families.base import Example
from neurorec.spec.load import validate_spec


def ctrnn_obs_example() -> Example:
    from neurorec.families.ctrnn_obs.model import CTRNNObs
    from neurorec.families.glm.conformance import v1_small

    spec = validate_spec({"kind": "ctrnn_obs", "data": {"bin_size": "10 ms"},
                          "network": {"n_units": 6, "tau": "20 ms", "dt": "10 ms"},
                          "input": {"onset": "200 ms"},
                          "training": {"n_steps": 40, "batch_size": 16, "validate_every": 10,
                                       "patience": 3}}, "<conformance>")

    def simulate(model, seed: int) -> np.ndarray:
        return model.sample(v1_small()[1].condition[:4], n_bins=20, seed=seed)

    return Example(make=lambda: CTRNNObs(spec, seed=0),
                   fit=lambda model: model.fit(v1_small()[0], progress=False),
                   score=lambda model: model.score(v1_small()[1]), simulate=simulate)
