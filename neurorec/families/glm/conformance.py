"""The GLM family's rows in the conformance suite: small fits on a real V1 session."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np

from neurorec.data import bin_trials
from neurorec.data.recording import BinnedTrials
from neurorec.datasets import load
from neurorec.families.base import Example
from neurorec.spec.load import validate_spec


@cache
def v1_small() -> tuple[BinnedTrials, BinnedTrials]:
    """V1 session 14, its first 6 units; (train, test) trials, 10 ms bins, seed 0."""
    data = bin_trials(load("v1_gratings:14"), 0.01, test_fraction=0.2, seed=0)
    data = dataclasses.replace(data, counts=data.counts[:, :, :6], unit_ids=data.unit_ids[:6])
    return data.subset(~data.is_test), data.subset(data.is_test)


def _example(spec_raw: dict) -> Example:
    spec = validate_spec(spec_raw, "<conformance>")
    from neurorec.families.base import model_for

    def fit(model):
        return model.fit(v1_small()[0], progress=False)

    def score(model):
        return model.score(v1_small()[1])

    def simulate(model, seed: int) -> np.ndarray:
        return model.sample(v1_small()[1].condition[:4], n_bins=20, seed=seed)

    def brian2(model) -> tuple[np.ndarray, np.ndarray]:
        """The one-step-ahead drive on recorded held-out counts: torch vs the Brian 2 net."""
        import torch

        from neurorec.families.glm.brian2 import drive_brian2

        test = v1_small()[1].subset(np.arange(len(v1_small()[1].condition)) < 3)
        with torch.no_grad():
            ours = model._drive(model._fitted_tensors(), model._design(test)).cpu().numpy()
        return ours, drive_brian2(model, test.counts, test.condition)

    return Example(make=lambda: model_for(spec, seed=0), fit=fit, score=score,
                   simulate=simulate, brian2=brian2, brian2_atol=1e-10)


_COMMON = {"data": {"bin_size": "10 ms"}, "stimulus": {"n_basis": 6},
           "history": {"n_basis": 3, "duration": "50 ms"}, "penalty": {"l2": 1e-4},
           "fit": {"max_iter": 40, "early_stopping": False}}


def glm_example() -> Example:
    return _example({"kind": "glm", **_COMMON, "coupling": {"enabled": True, "n_basis": 2,
                                                            "duration": "30 ms"}})


def rglm_example() -> Example:
    return _example({"kind": "rglm", **_COMMON, "recurrent": {"dim": 3}})
