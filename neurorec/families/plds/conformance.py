"""The PLDS row in the conformance suite: a small Laplace-EM fit on a real V1 session."""

from __future__ import annotations

import numpy as np

from neurorec.families.base import Example


def plds_example() -> Example:
    from neurorec.families.base import model_for
    from neurorec.families.glm.conformance import v1_small
    from neurorec.spec.load import validate_spec

    spec = validate_spec({"kind": "plds", "data": {"bin_size": "10 ms"},
                          "stimulus": {"n_basis": 6}, "latent": {"dim": 2},
                          "fit": {"max_iter": 5, "m_step_iter": 20}}, "<conformance>")

    def simulate(model, seed: int) -> np.ndarray:
        return model.sample(v1_small()[1].condition[:4], n_bins=20, seed=seed)

    return Example(make=lambda: model_for(spec, seed=0),
                   fit=lambda model: model.fit(v1_small()[0], progress=False),
                   score=lambda model: model.score(v1_small()[1]), simulate=simulate)
