"""The GLM family's rows in the conformance checks: small fits on a real V1 session."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np

from neurorec.data import bin_trials
from neurorec.data.recording import BinnedTrials, TrialLayout
from neurorec.datasets import load
from neurorec.families.base import Example


@cache
def v1_small() -> tuple[BinnedTrials, BinnedTrials]:
    """V1 session 14, its first 6 units; (train, test) trials, 10 ms bins, seed 0."""
    data = bin_trials(load("v1_gratings:14"), 0.01, test_fraction=0.2, seed=0)
    data = dataclasses.replace(data, counts=data.counts[:, :, :6], unit_ids=data.unit_ids[:6])
    return data.subset(~data.is_test), data.subset(data.is_test)


def fewer_units(data: BinnedTrials) -> BinnedTrials:
    """``data`` without its last unit: wrong-shape data for a model fitted to all units."""
    return dataclasses.replace(data, counts=data.counts[:, :, :-1], unit_ids=data.unit_ids[:-1])


def sample_small(model, seed: int) -> np.ndarray:
    """(4, 20, 6) counts drawn for the first four held-out trials' conditions."""
    return model.sample(4, seed=seed, like=TrialLayout(v1_small()[1].condition, 20))


def binned_example(spec: dict, **fields) -> Example:
    """The Example of a spike-train family on :func:`v1_small` (bits/spike; chance 0: the
    null model of bits/spike, each unit's mean count, scores 0 by definition)."""
    return Example(spec=spec, data=v1_small, chance=0.0, wrong=fewer_units,
                   sample=sample_small, sample_shape=(4, 20, 6), **fields)


def brian2_drive(model) -> tuple[np.ndarray, np.ndarray]:
    """The one-step-ahead drive on three recorded held-out trials: log of the torch model's
    predicted rate (exp link) vs the Brian 2 network's drive."""
    from neurorec.families.glm.brian2 import drive_brian2

    test = v1_small()[1].subset(np.arange(len(v1_small()[1].condition)) < 3)
    return np.log(model.predict_rate(test)), drive_brian2(model, test.counts, test.condition)


_COMMON = {"data": {"bin_size": "10 ms"}, "stimulus": {"n_basis": 6},
           "history": {"n_basis": 3, "duration": "50 ms"}, "penalty": {"l2": 1e-4},
           "fit": {"max_iter": 8, "early_stopping": False}}


def glm_example() -> Example:
    return binned_example({"kind": "glm", **_COMMON,
                           "coupling": {"enabled": True, "n_basis": 2, "duration": "30 ms"}},
                          brian2=brian2_drive, brian2_atol=1e-10)


def rglm_example() -> Example:
    return binned_example({"kind": "rglm", **_COMMON, "recurrent": {"dim": 3}},
                          brian2=brian2_drive, brian2_atol=1e-10)
